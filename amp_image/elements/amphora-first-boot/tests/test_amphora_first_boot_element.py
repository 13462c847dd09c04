"""amphora-first-boot's scripts without a build: run against a scratch root
(AMP_IMAGE_ROOT)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ELEMENT = Path(__file__).resolve().parent.parent


def run(script: str, root: Path) -> subprocess.CompletedProcess:
    """One of the element's scripts on a scratch root, as DIB runs it in the chroot."""
    return subprocess.run(["bash", str(ELEMENT / script)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "AMP_IMAGE_ROOT": str(root)})


def test_the_builds_iscsi_name_and_ldconfig_cache_go(tmp_path):
    root = tmp_path / "root"
    (root / "etc/iscsi").mkdir(parents=True)
    (root / "var/cache/ldconfig").mkdir(parents=True)
    (root / "etc/iscsi/initiatorname.iscsi").write_text(
        "InitiatorName=iqn.1993-08.org.debian:01:9d0cea5a380\n")
    (root / "var/cache/ldconfig/aux-cache").write_bytes(b"\0")
    result = run("finalise.d/92-no-per-build-state", root)
    assert result.returncode == 0, result.stderr
    name = (root / "etc/iscsi/initiatorname.iscsi").read_text()
    assert "GenerateName=yes" in name and "InitiatorName=" not in name
    assert not (root / "var/cache/ldconfig/aux-cache").exists()


def test_without_open_iscsi_there_is_no_name_to_write(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    result = run("finalise.d/92-no-per-build-state", root)
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/iscsi").exists()


def test_first_boot_update_stamps_carry_the_time_of_usr(tmp_path):
    root = tmp_path / "root"
    for d in ("usr", "etc", "var"):
        (root / d).mkdir(parents=True)
    os.utime(root / "usr", ns=(1_764_000_000_123_456_789, 1_764_000_000_123_456_789))
    result = run("finalise.d/93-first-boot-updates-done", root)
    assert result.returncode == 0, result.stderr
    for d in ("etc", "var"):
        stamp = root / d / ".updated"
        assert stamp.stat().st_mtime_ns == 1_764_000_000_123_456_789
        assert "TIMESTAMP_NSEC=1764000000123456789\n" in stamp.read_text()
