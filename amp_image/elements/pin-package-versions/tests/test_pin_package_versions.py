"""Both scripts on a scratch root (TARGET_ROOT, AMP_IMAGE_ROOT), with sudo and dpkg-query stubbed:
the pins as apt reads them, and the check after the install."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ELEMENT = Path(__file__).resolve().parent.parent
PINS = "haproxy 3.0.11-1+deb13u1\nlibssl3t64 3.5.4-1~deb13u1\nopenssl 3.5.4-1~deb13u1\n"


def run(script: str, tmp_path: Path, pins: str | None, installed: str = "") -> tuple:
    root, stub = tmp_path / "root", tmp_path / "stub"
    root.mkdir(exist_ok=True)
    stub.mkdir(exist_ok=True)
    (stub / "sudo").write_text('#!/bin/bash\nexec "$@"\n')
    # dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n'
    (stub / "dpkg-query").write_text(f"#!/bin/bash\nprintf '%s' '{installed}'\n")
    for tool in ("sudo", "dpkg-query"):
        (stub / tool).chmod(0o755)
    # root.d runs outside the chroot (TARGET_ROOT), post-install.d in it (AMP_IMAGE_ROOT
    # stands in for /).
    env = {"PATH": f"{stub}:{os.environ['PATH']}", "AMP_IMAGE_ROOT": str(root),
           "TARGET_ROOT": str(root), "DISTRO_NAME": "debian"}
    if pins is not None:
        (tmp_path / "pins").write_text(pins)
        env["DIB_AMP_PACKAGE_PINS"] = str(tmp_path / "pins")
    result = subprocess.run(["bash", str(ELEMENT / script)], capture_output=True, text=True,
                            env=env)
    prefs = root / "etc/apt/preferences.d/amp-image-pins"
    return result, prefs.read_text() if prefs.exists() else None


def pin(tmp_path: Path, pins: str | None = PINS) -> tuple:
    return run("root.d/70-pin-package-versions", tmp_path, pins)


def check(tmp_path: Path, installed: str) -> tuple:
    return run("post-install.d/90-check-package-pins", tmp_path, None, installed)


def test_each_package_pinned_at_its_version(tmp_path):
    result, prefs = pin(tmp_path)
    assert result.returncode == 0, result.stderr
    assert prefs.split("\n\n")[0] == ("Package: haproxy\nPin: version 3.0.11-1+deb13u1\n"
                                      "Pin-Priority: 1001")
    assert prefs.count("Pin-Priority: 1001") == 3
    assert "3 packages pinned" in result.stdout


def test_nothing_without_a_list(tmp_path):
    result, prefs = pin(tmp_path, None)
    assert result.returncode == 0 and prefs is None


def test_an_empty_list_is_an_error(tmp_path):
    result, prefs = pin(tmp_path, "")
    assert result.returncode == 1 and "no package list" in result.stderr


def test_all_at_their_versions_then_the_pins_go(tmp_path):
    pin(tmp_path)
    installed = ("ii haproxy 3.0.11-1+deb13u1\nii libssl3t64 3.5.4-1~deb13u1\n"
                 "ii openssl 3.5.4-1~deb13u1\nii tcpdump 4.99.5-2\n")
    result, prefs = check(tmp_path, installed)
    assert result.returncode == 0, result.stderr
    assert prefs is None  # the image upgrades like any other


def test_a_version_the_archive_lost_is_named(tmp_path):
    """apt took the archive's newer openssl: the pinned one is gone from it."""
    pin(tmp_path)
    installed = ("ii haproxy 3.0.11-1+deb13u1\nii libssl3t64 3.5.4-1~deb13u1\n"
                 "ii openssl 3.5.5-1~deb13u1\nrc gone 1.0\n")
    result, prefs = check(tmp_path, installed)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "pin-package-versions: not at the recorded version (the archive no longer has it):"
        " openssl (recorded 3.5.4-1~deb13u1, installed 3.5.5-1~deb13u1)")
    assert prefs is not None


def test_removed_packages_do_not_count(tmp_path):
    """A package in dpkg's database but not installed (rc) is not checked."""
    pin(tmp_path, "haproxy 3.0.11-1\n")
    result, _ = check(tmp_path, "rc haproxy 3.0.10-1\n")
    assert result.returncode == 0, result.stderr
