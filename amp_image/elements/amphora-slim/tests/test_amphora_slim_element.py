"""amphora-slim's dpkg path excludes without a build: its guards, which run before it
writes anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "pre-install.d" / "05-dpkg-path-excludes"


def run(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env})


@pytest.mark.parametrize("slim", [{"DIB_AMP_SLIM": "1"}, {}], ids=["slim", "by default"])
def test_dpkg_path_excludes_refuse_other_distributions(slim):
    result = run(DISTRO_NAME="centos", **slim)
    assert result.returncode == 1
    assert result.stderr == ("amphora-base: dpkg path excludes need a dpkg-based "
                             "distribution, not centos\n")


def test_a_full_image_keeps_everything():
    assert run(DISTRO_NAME="centos", DIB_AMP_SLIM="0").returncode == 0
