"""PATH shims for DIB: sudo (as root), kpartx, dmsetup and fstrim on hosts without
device-mapper (partitions through offset loop devices), and mount and umount for a
UEFI image on hosts whose kernel has no vfat (the EFI system partition written with
mtools), from hostbin/."""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

SHIMS_ALWAYS = ("sudo",)
SHIMS_WITHOUT_DM = ("kpartx", "dmsetup", "fstrim")
SHIMS_WITHOUT_VFAT = ("mount", "umount")


def install_shims(bin_dir: Path, device_mapper: bool, vfat: bool = True) -> list[str]:
    """vfat: the host mounts FAT file systems itself (or the image has none)."""
    names = list(SHIMS_ALWAYS) if os.geteuid() == 0 else []
    if not device_mapper:
        names += SHIMS_WITHOUT_DM
    if not vfat:
        names += SHIMS_WITHOUT_VFAT
    if bin_dir.exists():
        shutil.rmtree(bin_dir)
    bin_dir.mkdir(parents=True)
    shim_src = resources.files("amp_image") / "hostbin"
    for name in names:
        target = bin_dir / name
        target.write_bytes((shim_src / name).read_bytes())
        target.chmod(0o755)
    return names
