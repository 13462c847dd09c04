"""amphora-finalise's scripts without a build, with the package tools stubbed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ELEMENT = Path(__file__).resolve().parent.parent


def run(script: str, tmp_path: Path, stubs: dict[str, str] | None = None,
        **env: str) -> subprocess.CompletedProcess:
    """One of the element's scripts; each stub is a shell body that also logs its
    command line to calls.log."""
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir(exist_ok=True)
    for name, body in (stubs or {}).items():
        path = stub_dir / name
        path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{tmp_path}/calls.log"\n{body}\n')
        path.chmod(0o755)
    return subprocess.run(["bash", str(ELEMENT / script)], capture_output=True, text=True,
                          env={"PATH": f"{stub_dir}:{os.environ['PATH']}", **env})


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


DPKG_STATUS = """\
gcc-14-base ii install ok installed
libgcc-s1 ii install ok installed
python3 ii install ok installed
python3-venv rc deinstall ok config-files
gcc-14 ii install ok installed
libpython3.13-dev ii install ok installed
make rc deinstall ok config-files
"""


def dpkg_query(status: str) -> str:
    """dpkg-query -W, answering both formats the element's scripts ask for."""
    rows = [line.split(" ", 2) for line in status.splitlines()]
    by_status = "\n".join(f"{abbrev} {name}" for name, abbrev, _ in rows)
    by_package = "\n".join(f"{name} {words}" for name, _, words in rows)
    return (f'case "$*" in\n  *Status-Abbrev*) printf "%s\\n" "{by_status}" ;;\n'
            f'  *) printf "%s\\n" "{by_package}" ;;\nesac')


def test_build_tools_left_fail_the_build(tmp_path):
    result = run("finalise.d/98-check-no-build-tools", tmp_path,
                 {"dpkg-query": dpkg_query(DPKG_STATUS)}, DISTRO_NAME="debian")
    assert result.returncode == 1
    # Installed compilers and headers only: not runtime libraries, not removed packages.
    assert result.stderr == \
        "amphora-base: build-only packages left in the image: gcc-14 libpython3.13-dev \n"


def test_no_build_tools_passes(tmp_path):
    status = "".join(line + "\n" for line in DPKG_STATUS.splitlines()
                     if not line.startswith(("gcc-14 ", "libpython3.13-dev")))
    result = run("finalise.d/98-check-no-build-tools", tmp_path,
                 {"dpkg-query": dpkg_query(status)}, DISTRO_NAME="debian")
    assert result.returncode == 0, result.stderr


def test_removed_packages_are_purged_with_what_they_pulled_in(tmp_path):
    stubs = {"apt-get": "", "dpkg": "", "dpkg-query": dpkg_query(DPKG_STATUS)}
    result = run("finalise.d/10-purge-removed-packages", tmp_path, stubs,
                 DISTRO_NAME="debian")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == [
        "apt-get -y autoremove --purge",
        "dpkg-query -W -f ${db:Status-Abbrev} ${binary:Package}\\n",
        "dpkg --purge python3-venv make",
    ]


@pytest.mark.parametrize("script", ["finalise.d/10-purge-removed-packages",
                                    "finalise.d/98-check-no-build-tools"])
def test_dpkg_steps_refuse_other_distributions(tmp_path, script):
    stubs = {name: "exit 0" for name in ("apt-get", "dpkg", "dpkg-query")}
    result = run(script, tmp_path, stubs, DISTRO_NAME="centos", DIB_AMP_SLIM="1")
    assert result.returncode == 1
    assert "centos" in result.stderr and calls(tmp_path) == []
