"""Building a foreign architecture's image: its binaries run through qemu-user.

DIB runs the image's own programs in a chroot (dpkg, pip, update-initramfs, grub).
For an arm64 image on an amd64 host the kernel hands them to qemu-aarch64 through a
binfmt_misc handler. amp-image registers that handler for one build only, under a name
carrying its PID, and removes it afterwards (and mounts binfmt_misc only if it has to,
unmounting it again). The F flag makes the kernel open the emulator at registration,
so it also runs inside the chroot, where no qemu-aarch64 exists.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amp_image.errors import HostError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
HANDLER_PREFIX = "amp-image-"
# The kernel's architecture names (uname -m) and Debian's.
HOST_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class ForeignArch:
    qemu_name: str   # qemu-<name>, uname -m inside the guest
    # An ELF header's first 20 bytes for this machine, and the bits that matter
    # (QEMU's scripts/qemu-binfmt-conf.sh).
    magic: bytes
    mask: bytes


FOREIGN_ARCHES = {
    "arm64": ForeignArch(
        "aarch64",
        magic=b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        mask=b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
}


def host_arch() -> str:
    machine = platform.machine()
    return HOST_ARCHES.get(machine, machine)


def is_foreign(arch: str) -> bool:
    return arch != host_arch()


def emulator(arch: str) -> Path:
    """The static qemu-user binary that runs arch's programs on this host."""
    foreign = FOREIGN_ARCHES.get(arch)
    if foreign is None:
        raise HostError(f"this {host_arch()} host cannot build {arch} images (amp-image "
                        f"emulates {', '.join(FOREIGN_ARCHES)} only); build on a {arch} host")
    for name in (f"qemu-{foreign.qemu_name}", f"qemu-{foreign.qemu_name}-static"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise HostError(f"qemu-{foreign.qemu_name} not found, needed to build {arch} images "
                    "here; run scripts/setup-host --arm64 (as root)")


def check_emulation(arch: str, binfmt_dir: Path = BINFMT_MISC) -> None:
    """Before a build: can this host run arch's binaries (or mount binfmt_misc to)?"""
    if not is_foreign(arch):
        return
    emulator(arch)
    if (binfmt_dir / "register").exists():
        return
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        raise HostError(f"this kernel has no binfmt_misc, needed to run {arch} programs "
                        f"during the build; build on a {arch} host or one with binfmt_misc")


def registration(name: str, foreign: ForeignArch, interpreter: Path) -> str:
    """The line binfmt_misc's register file takes (Documentation/admin-guide/binfmt-misc)."""
    def escaped(data: bytes) -> str:
        return "".join(f"\\x{b:02x}" for b in data)
    # O and C: the emulator gets the binary as a file and setuid programs keep their
    # credentials; F: the emulator is opened now, so it works inside the chroot.
    return f":{name}:M::{escaped(foreign.magic)}:{escaped(foreign.mask)}:{interpreter}:OCF"


def handler_name(arch: str, pid: int) -> str:
    return f"{HANDLER_PREFIX}{FOREIGN_ARCHES[arch].qemu_name}-{pid}"


def remove_stale_handlers(binfmt_dir: Path = BINFMT_MISC) -> list[str]:
    """Handlers an amp-image build killed before it could remove them (its PID is gone)."""
    removed = []
    for entry in binfmt_dir.glob(f"{HANDLER_PREFIX}*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            entry.write_text("-1")
            removed.append(entry.name)
    return removed


@contextmanager
def foreign_binaries(arch: str, binfmt_dir: Path = BINFMT_MISC) -> Iterator[str | None]:
    """Run arch's binaries through qemu-user while the block runs; yields the handler's
    name (None when the host runs them natively)."""
    if not is_foreign(arch):
        yield None
        return
    interpreter = emulator(arch)
    mounted_here = _mount_binfmt_misc(binfmt_dir)
    name = handler_name(arch, os.getpid())
    try:
        remove_stale_handlers(binfmt_dir)
        (binfmt_dir / "register").write_text(
            registration(name, FOREIGN_ARCHES[arch], interpreter))
        try:
            yield name
        finally:
            (binfmt_dir / name).write_text("-1")
    finally:
        if mounted_here:
            subprocess.run(["umount", str(binfmt_dir)], check=False)


def _mount_binfmt_misc(binfmt_dir: Path) -> bool:
    if (binfmt_dir / "register").exists():
        return False
    done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["mount failed"])[-1]
        raise HostError(f"cannot mount binfmt_misc on {binfmt_dir} ({reason}), needed to run "
                        "foreign programs during the build; rerun as root in a privileged "
                        "container, or build on a host of the image's architecture")
    return True
