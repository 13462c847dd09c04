"""The mount/umount shims for a UEFI image on a host whose kernel has no vfat (issue 12:
arm64 here): DIB's mount of the EFI system partition becomes a bind mount of a staging
folder, and its umount writes that folder into the FAT file system with mtools.

Real: a loop device over a mkfs.vfat file, real bind mounts, real mtools (root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from amp_image.builder import dib, host, shims
from amp_image.builder.plan import BuildPlan
from tests.helpers import loop_devices, loop_devices_left

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root")


@pytest.fixture
def esp(tmp_path):
    """A 16 MiB FAT file system on a loop device, as DIB's mkfs.vfat leaves it."""
    backing = tmp_path / "esp.img"
    with open(backing, "wb") as f:
        f.truncate(16 * 2**20)
    subprocess.run(["mkfs.vfat", "-n", "MKFS_ESP", str(backing)], check=True,
                   capture_output=True)
    device = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    yield device
    subprocess.run(["losetup", "-d", device], check=True)


@pytest.fixture
def bin_dir(tmp_path):
    installed = shims.install_shims(tmp_path / "bin", device_mapper=True, vfat=False)
    assert set(shims.SHIMS_WITHOUT_VFAT) <= set(installed)
    return tmp_path / "bin"


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


def test_the_staged_esp_lands_in_the_fat_file_system(esp, bin_dir, tmp_path):
    before = loop_devices()
    mnt = tmp_path / "mnt" / "boot" / "efi"
    mnt.mkdir(parents=True)
    subprocess.run([str(bin_dir / "mount"), esp, str(mnt)], check=True)
    try:
        assert _mounted(mnt)
        (mnt / "EFI" / "BOOT").mkdir(parents=True)
        (mnt / "EFI" / "BOOT" / "BOOTAA64.EFI").write_bytes(b"MZ grub")
        (mnt / "EFI" / "debian").mkdir()
        (mnt / "EFI" / "debian" / "grub.cfg").write_text("configfile /boot/grub/grub.cfg\n")
    finally:
        subprocess.run([str(bin_dir / "umount"), str(mnt)], check=True)
    assert not _mounted(mnt) and list(mnt.iterdir()) == []
    assert not list((bin_dir / ".vfat-staging").iterdir())
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    listing = subprocess.run(["mdir", "-/", "-b", "-i", esp, "::/"], capture_output=True,
                             text=True, check=True, env=env).stdout.split()
    assert sorted(listing) == ["::/EFI/", "::/EFI/BOOT/", "::/EFI/BOOT/BOOTAA64.EFI",
                               "::/EFI/debian/", "::/EFI/debian/grub.cfg"]
    shown = subprocess.run(["mtype", "-i", esp, "::/EFI/debian/grub.cfg"],
                           capture_output=True, text=True, check=True, env=env).stdout
    assert shown == "configfile /boot/grub/grub.cfg\n"
    assert loop_devices_left(before) == set()


def test_other_mounts_pass_through(bin_dir, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("x")
    subprocess.run([str(bin_dir / "mount"), "--bind", str(src), str(dst)], check=True)
    assert (dst / "f").read_text() == "x"
    subprocess.run([str(bin_dir / "umount"), str(dst)], check=True)
    assert not _mounted(dst)


def test_a_failed_copy_fails_the_unmount(esp, bin_dir, tmp_path):
    """A file larger than the FAT file system: mcopy fails, so DIB's umount (and the
    build) fails instead of leaving an image that cannot boot."""
    mnt = tmp_path / "efi"
    mnt.mkdir()
    subprocess.run([str(bin_dir / "mount"), esp, str(mnt)], check=True)
    with open(mnt / "huge", "wb") as f:
        f.truncate(32 * 2**20)
    done = subprocess.run([str(bin_dir / "umount"), str(mnt)], capture_output=True,
                          text=True)
    assert done.returncode != 0
    assert "Disk full" in done.stderr, done.stderr  # mcopy's own error
    # Still mounted, so DIB's retry hits the same error; its failure cleanup unmounts.
    assert _mounted(mnt)
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize(("arch", "kernel_vfat", "shimmed"), [
    ("arm64", False, True), ("arm64", True, False), ("amd64", False, False)])
def test_the_shims_are_for_uefi_images_on_hosts_without_vfat(arch, kernel_vfat, shimmed,
                                                              monkeypatch):
    monkeypatch.setattr(dib.host, "kernel_mounts_vfat", lambda: kernel_vfat)
    plan = BuildPlan.__new__(BuildPlan)
    object.__setattr__(plan, "env", {"ARCH": arch})
    assert plan.uefi == (arch == "arm64")
    assert dib.needs_vfat_shims(plan) == shimmed


def test_missing_mtools_is_one_line(monkeypatch):
    monkeypatch.setattr(host, "kernel_mounts_vfat", lambda: False)
    monkeypatch.setattr(host.shutil, "which", lambda name: None)
    with pytest.raises(host.HostError, match=r"no vfat\) and mtools is missing; run "
                                             r"scripts/setup-host --arm64"):
        host.check_vfat_tools()
