"""static/usr/local/bin/certs-ramfs with the block-device tools stubbed: the
RAM disk is encrypted under a throw-away key and mounted at the agent's
base_cert_dir."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "static/usr/local/bin/certs-ramfs"
TOOLS = ("modprobe", "cryptsetup", "mkfs.ext2", "mount", "umount")


def certs_ramfs(tmp_path: Path, action: str, conf: str, mounted: bool):
    stub = tmp_path / "stub"
    stub.mkdir()
    log = tmp_path / "calls.log"
    for tool in TOOLS:
        (stub / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> "{log}"\n')
    (stub / "mountpoint").write_text(f"#!/bin/bash\nexit {0 if mounted else 1}\n")
    for tool in (*TOOLS, "mountpoint"):
        (stub / tool).chmod(0o755)
    (tmp_path / "amphora-agent.conf").write_text(conf)
    result = subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True,
                            env={"PATH": f"{stub}:{os.environ['PATH']}",
                                 "CERTS_RAMFS_CONF": str(tmp_path / "amphora-agent.conf")})
    return result, log.read_text().splitlines() if log.exists() else []


def test_start_formats_and_mounts_at_base_cert_dir(tmp_path):
    certs = tmp_path / "octavia/certs"
    result, calls = certs_ramfs(tmp_path, "start", mounted=False, conf=(
        "[DEFAULT]\ndebug = False\n[haproxy_amphora]\n"
        f"base_path = /var/lib/octavia\nbase_cert_dir  =  {certs}\n"))
    assert result.returncode == 0, result.stderr
    key = re.search(r"--key-file (\S+) luksFormat", calls[1]).group(1)
    assert calls == [
        "modprobe brd rd_nr=1 rd_size=32768 max_part=0",
        "cryptsetup --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
        f"--key-file {key} luksFormat /dev/ram0",
        f"cryptsetup --key-file {key} open /dev/ram0 certfs-ramfs",
        "mkfs.ext2 -q /dev/mapper/certfs-ramfs",
        f"mount -o nodev,nosuid,noexec /dev/mapper/certfs-ramfs {certs}",
    ]
    assert key.startswith("/run/certs-ramfs.") and not Path(key).exists()
    assert certs.is_dir() and oct(certs.stat().st_mode & 0o777) == "0o700"


def test_prepare_formats_without_mounting(tmp_path):
    result, calls = certs_ramfs(tmp_path, "prepare", mounted=False, conf="")
    assert result.returncode == 0, result.stderr
    assert [call.split()[0] for call in calls] == [
        "modprobe", "cryptsetup", "cryptsetup", "mkfs.ext2"]
    assert "luksFormat /dev/ram0" in calls[1] and calls[2].endswith("open /dev/ram0 certfs-ramfs")


def test_start_twice_leaves_the_mounted_disk_alone(tmp_path):
    result, calls = certs_ramfs(tmp_path, "start", mounted=True,
                                conf=f"[haproxy_amphora]\nbase_cert_dir = {tmp_path}/c\n")
    assert (result.returncode, calls) == (0, [])


def test_stop_at_the_default_cert_dir(tmp_path):
    result, calls = certs_ramfs(tmp_path, "stop", mounted=True, conf="[DEFAULT]\n")
    assert result.returncode == 0, result.stderr
    assert calls == ["umount /var/lib/octavia/certs", "cryptsetup close certfs-ramfs"]


def test_usage(tmp_path):
    result, calls = certs_ramfs(tmp_path, "restart", mounted=False, conf="")
    assert (result.returncode, calls) == (2, [])
    assert result.stderr.endswith("usage: " + str(SCRIPT) + " prepare|start|stop\n")
