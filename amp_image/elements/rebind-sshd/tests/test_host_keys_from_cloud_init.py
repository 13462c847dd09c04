"""post-install.d/85-ssh-host-keys-from-cloud-init on a scratch root
(AMP_IMAGE_ROOT) with systemctl stubbed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "post-install.d/85-ssh-host-keys-from-cloud-init"
CLOUD_CFG = """\
cloud_init_modules:
 - seed_random
 - bootcmd
 - write_files
 - set_hostname
 - update_etc_hosts
 - users_groups
 - ssh
"""


def run(tmp_path: Path, cloud_cfg: str, keygen_unit: bool,
        units: tuple[str, ...] = ("ssh-keygen.service",), **env: str):
    root, stub = tmp_path / "root", tmp_path / "stub"
    (root / "etc/cloud").mkdir(parents=True)
    (root / "etc/cloud/cloud.cfg").write_text(cloud_cfg)
    for name in units if keygen_unit else ():
        unit = root / "usr/lib/systemd/system" / name
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text("[Unit]\n")
    stub.mkdir()
    (stub / "systemctl").write_text(f'#!/bin/bash\necho "$*" >> "{tmp_path}/systemctl.log"\n')
    (stub / "systemctl").chmod(0o755)
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                            env={"PATH": f"{stub}:{os.environ['PATH']}",
                                 "AMP_IMAGE_ROOT": str(root), **env})
    log = tmp_path / "systemctl.log"
    return result, log.read_text().splitlines() if log.exists() else []


def test_dibs_keygen_unit_is_masked_when_cloud_init_makes_the_keys(tmp_path):
    result, calls = run(tmp_path, CLOUD_CFG, keygen_unit=True)
    assert result.returncode == 0, result.stderr
    assert calls == ["disable ssh-keygen.service", "mask ssh-keygen.service"]


def test_debians_first_boot_keygen_is_masked_too(tmp_path):
    result, calls = run(tmp_path, CLOUD_CFG, keygen_unit=True,
                        units=("ssh-keygen.service", "sshd-keygen.service"))
    assert result.returncode == 0, result.stderr
    assert calls == ["disable ssh-keygen.service", "mask ssh-keygen.service",
                     "disable sshd-keygen.service", "mask sshd-keygen.service"]


def test_nothing_to_mask_without_the_unit(tmp_path):
    result, calls = run(tmp_path, CLOUD_CFG, keygen_unit=False)
    assert (result.returncode, calls) == (0, [])


def test_no_ssh_module_fails_the_build(tmp_path):
    result, calls = run(tmp_path, CLOUD_CFG.replace(" - ssh\n", " - ssh_authkey_fingerprints\n"),
                        keygen_unit=True)
    assert result.returncode == 1 and calls == []
    assert "cloud-init's ssh module is not in /etc/cloud/cloud.cfg" in result.stderr


def test_other_init_systems_are_left_alone(tmp_path):
    result, calls = run(tmp_path, "", keygen_unit=True, DIB_INIT_SYSTEM="openrc")
    assert (result.returncode, calls) == (0, [])
