"""amphora-grub's scripts without a build: run against a scratch root
(AMP_IMAGE_ROOT) with GRUB's tools stubbed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ELEMENT = Path(__file__).resolve().parent.parent

GRUB_CFG = """\
menuentry 'Debian GNU/Linux' --class debian {
\tinsmod ext2
\tsearch --no-floppy --fs-uuid --set=root 0b9e-uuid
\tloopback loop1 /loop0
\tset root=(loop1)
\tlinux /boot/vmlinuz-6.12.57+deb13-amd64 root=UUID=0b9e-uuid ro
}
"""


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


@pytest.mark.parametrize("where", ["boot/grub/grub.cfg", "boot/efi/EFI/debian/grub.cfg"])
def test_grub_loses_the_build_hosts_loop_devices(tmp_path, where):
    """In GRUB's own config and in the copy on a UEFI image's EFI system partition."""
    cfg = tmp_path / "root" / where
    cfg.parent.mkdir(parents=True)
    cfg.write_text(GRUB_CFG)
    result = run("finalise.d/51-grub-drop-build-loop-devices", tmp_path,
                 AMP_IMAGE_ROOT=str(tmp_path / "root"))
    assert result.returncode == 0, result.stderr
    kept = cfg.read_text()
    assert "loop" not in kept
    assert kept == GRUB_CFG.replace("\tloopback loop1 /loop0\n", "").replace(
        "\tset root=(loop1)\n", "")


def test_grub_reference_to_a_loop_device_left_fails_the_build(tmp_path):
    cfg = tmp_path / "root/boot/grub/grub.cfg"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(GRUB_CFG.replace("set root=(loop1)", "set root=(loop1,msdos1)"))
    result = run("finalise.d/51-grub-drop-build-loop-devices", tmp_path,
                 AMP_IMAGE_ROOT=str(tmp_path / "root"))
    assert result.returncode == 1
    assert result.stderr == \
        "amphora-base: /boot/grub/grub.cfg still refers to build-host loop devices\n"


# --- finalise.d/49: GRUB's EFI image on a staged EFI partition (no vfat on the host) ---

STAGED_ESP = {"ARCH": "arm64", "DIB_AMP_ESP_STAGED": "1", "DIB_BLOCK_DEVICE": "efi",
              "DIB_ROOT_LABEL": "cloudimg-rootfs", "EFI_BOOT_DIR": "EFI/debian"}


def _grub_stubs(root: Path, tmp_path: Path) -> dict[str, str]:
    """install-packages notes whether EFI/debian existed (the package's postinst runs
    grub-install when it does); grub-mkimage keeps its early config and writes its -o."""
    return {
        "install-packages": f'[ -d "{root}/boot/efi/EFI/debian" ] && echo "EFI/debian existed"'
                            f' >> "{tmp_path}/calls.log"; true',
        "grub-mkimage": f'while [ $# -gt 0 ]; do case $1 in -c) cp "$2" "{tmp_path}/early.cfg";'
                        ' shift 2;; -o) echo image > "$2"; shift 2;; *) shift;; esac; done',
    }


def test_staged_esp_gets_grubs_removable_efi_image(tmp_path):
    root = tmp_path / "root"
    modules = root / "usr/lib/grub/arm64-efi"
    modules.mkdir(parents=True)
    (modules / "normal.mod").write_text("mod")
    result = run("finalise.d/49-efi-grub-on-a-staged-esp", tmp_path, _grub_stubs(root, tmp_path),
                 AMP_IMAGE_ROOT=str(root), **STAGED_ESP)
    assert result.returncode == 0, result.stderr
    made = calls(tmp_path)
    assert made[0] == "install-packages -m bootloader grub-efi-arm64"
    assert made[1].startswith(f"grub-mkimage -O arm64-efi -d {modules} -c ")
    assert made[1].endswith(f"-p /boot/grub -o {root}/boot/efi/EFI/BOOT/BOOTAA64.EFI "
                            "part_gpt part_msdos ext2 search search_label normal configfile")
    assert "EFI/debian existed" not in made
    assert (root / "boot/efi/EFI/BOOT/BOOTAA64.EFI").read_text() == "image\n"
    assert (root / "boot/grub/arm64-efi/normal.mod").read_text() == "mod"
    assert (root / "boot/efi/EFI/debian").is_dir()  # 50-bootloader skips grub-install
    assert (tmp_path / "early.cfg").read_text() == (
        "search --no-floppy --set=root --label cloudimg-rootfs\n"
        "set prefix=($root)/boot/grub\n")


@pytest.mark.parametrize("unset", ["DIB_AMP_ESP_STAGED", "DIB_BLOCK_DEVICE"])
def test_a_mounted_esp_is_left_to_grub_install(tmp_path, unset):
    env = {k: v for k, v in STAGED_ESP.items() if k != unset}
    result = run("finalise.d/49-efi-grub-on-a-staged-esp", tmp_path,
                 _grub_stubs(tmp_path / "root", tmp_path), AMP_IMAGE_ROOT=str(tmp_path / "root"),
                 **env)
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == [] and not (tmp_path / "root").exists()


@pytest.mark.parametrize(("given", "kept"), [({}, "0"), ({"DIB_AMP_ESP_STAGED": "1"}, "1")])
def test_the_esp_is_mounted_unless_amp_image_says_it_is_staged(tmp_path, given, kept):
    """A plain DIB build gets the default amp-image builds with on a host that mounts
    vfat, and the hook then leaves the EFI partition to grub-install."""
    defaults = ELEMENT / "environment.d" / "16-amphora-grub.bash"
    hook = ELEMENT / "finalise.d" / "49-efi-grub-on-a-staged-esp"
    env = {k: v for k, v in STAGED_ESP.items() if k != "DIB_AMP_ESP_STAGED"}
    result = subprocess.run(
        ["bash", "-c", f'. "{defaults}" && echo "$DIB_AMP_ESP_STAGED" && '
                 f'{{ [ "$DIB_AMP_ESP_STAGED" = 1 ] || bash "{hook}"; }}'],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env, **given,
                                             "AMP_IMAGE_ROOT": str(tmp_path / "root")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [kept]
    assert not (tmp_path / "root").exists()  # not staged: the hook made nothing
