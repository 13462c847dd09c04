"""static/usr/local/sbin/amphora-growroot with findmnt, growpart and resize2fs stubbed
(each stub logs its arguments), on a scratch /sys (AMP_IMAGE_SYS): which partition of
which disk it grows, and when it resizes the file system.  The real growth is a booted
check (amp_image/verify/checks: the root file system fills the flavor's disk)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "static/usr/local/sbin/amphora-growroot"


def grow(tmp_path: Path, growpart_rc: int, partition: bool = True):
    sys_dir, stub, log = tmp_path / "sys", tmp_path / "stub", tmp_path / "calls"
    disk = sys_dir / "devices/pci0000:00/0000:00:04.0/virtio2/block/vda"
    (disk / "vda1").mkdir(parents=True)
    if partition:
        (disk / "vda1/partition").write_text("1\n")
    (sys_dir / "class/block").mkdir(parents=True)
    (sys_dir / "class/block/vda1").symlink_to(disk / "vda1")
    stub.mkdir()
    for tool, body in {"findmnt": "echo /dev/vda1", "growpart": f"exit {growpart_rc}",
                       "resize2fs": "exit 0"}.items():
        (stub / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> {log}\n{body}\n')
        (stub / tool).chmod(0o755)
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                            env={"PATH": f"{stub}:{os.environ['PATH']}",
                                 "AMP_IMAGE_SYS": str(sys_dir)})
    calls = log.read_text().splitlines() if log.exists() else []
    return result, [c for c in calls if not c.startswith("findmnt")]


def test_a_grown_partition_gets_its_file_system_resized(tmp_path):
    result, calls = grow(tmp_path, 0)
    assert result.returncode == 0, result.stderr
    assert calls == ["growpart /dev/vda 1", "resize2fs /dev/vda1"]


def test_a_partition_that_fills_its_disk_is_left_alone(tmp_path):
    result, calls = grow(tmp_path, 1)
    assert result.returncode == 0, result.stderr
    assert calls == ["growpart /dev/vda 1"]
    assert "already fills the disk" in result.stdout


@pytest.mark.parametrize("rc", [2, 3])
def test_a_growpart_failure_fails_the_unit_without_a_resize(tmp_path, rc):
    result, calls = grow(tmp_path, rc)
    assert result.returncode == rc
    assert calls == ["growpart /dev/vda 1"]


def test_a_root_that_is_no_partition_is_not_touched(tmp_path):
    result, calls = grow(tmp_path, 0, partition=False)
    assert result.returncode == 0, result.stderr
    assert calls == []
