"""pkg-map as DIB's package-installs reads it: bookworm's main archive packages the
tool as sosreport (4.0; its sos package is in bookworm-backports only), trixie as sos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import diskimage_builder
import pytest

ELEMENT = Path(__file__).resolve().parent.parent
PKG_MAP = Path(diskimage_builder.__file__).resolve().parent / "elements/pkg-map/bin/pkg-map"


@pytest.mark.parametrize("release,package", [("bookworm", "sosreport"), ("trixie", "sos")])
def test_the_package_of_each_release(release, package):
    result = subprocess.run([sys.executable, str(PKG_MAP), "--pkg-map", str(ELEMENT / "pkg-map"),
                             "--distro", "debian", "--release", release, "sos"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [package]
