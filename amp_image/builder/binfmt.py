"""Building a foreign architecture's image: its binaries run through qemu-user.

DIB runs the image's own programs in a chroot (dpkg, pip, update-initramfs, grub).
For an arm64 image on an amd64 host the kernel hands them to qemu-aarch64 through a
binfmt_misc handler. amp-image registers that handler for one build only, under a name
of its own with a lock held while it lives, and removes it afterwards (and mounts
binfmt_misc only if it has to, unmounting it again when nobody else's handler is there).
The F flag makes the kernel open the emulator at registration, so it also runs inside
the chroot, where no qemu-aarch64 exists.
"""

from __future__ import annotations

import fcntl
import platform
import secrets
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from amp_image.builder import host
from amp_image.errors import HostError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
HANDLER_PREFIX = "amp-image-"
# Each build holds a lock named after its handler while the handler is registered.
LOCK_DIR = Path("/run/amp-image/binfmt")
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
    """The static qemu-user binary that runs arch's programs on this host (static: with
    the F flag the kernel runs it inside the chroot, where no dynamic loader of the
    host's exists)."""
    foreign = FOREIGN_ARCHES.get(arch)
    if foreign is None:
        raise HostError(f"this {host_arch()} host cannot build {arch} images (amp-image "
                        f"emulates {', '.join(FOREIGN_ARCHES)} only); build on a {arch} host")
    for name in (f"qemu-{foreign.qemu_name}", f"qemu-{foreign.qemu_name}-static"):
        found = shutil.which(name)
        if found and not needs_loader(Path(found)):
            return Path(found)
    raise HostError(f"no static qemu-{foreign.qemu_name} found, needed to build {arch} "
                    "images here; run scripts/setup-host --arm64 (as root)")


def needs_loader(binary: Path) -> bool:
    """Whether an ELF binary names a program interpreter (PT_INTERP): a dynamic one."""
    with open(binary, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit ELF only
            return True
        order = "<" if header[5] == 1 else ">"
        phoff, = struct.unpack_from(order + "Q", header, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return any(struct.unpack_from(order + "I", table, i * phentsize)[0] == pt_interp
               for i in range(phnum))


def check_emulation(arch: str, binfmt_dir: Path = BINFMT_MISC) -> None:
    """Before a build: can this host run arch's binaries (or mount binfmt_misc to)?"""
    if not is_foreign(arch):
        return
    emulator(arch)
    if (binfmt_dir / "register").exists():
        return
    if not host.kernel_has_filesystem("binfmt_misc", "binfmt_misc.ko*"):
        raise HostError(f"this kernel has no binfmt_misc, needed to run {arch} programs "
                        f"during the build; build on a {arch} host or one with binfmt_misc")


def registration(name: str, foreign: ForeignArch, interpreter: Path) -> str:
    """The line binfmt_misc's register file takes (Documentation/admin-guide/binfmt-misc)."""
    def escaped(data: bytes) -> str:
        return "".join(f"\\x{b:02x}" for b in data)
    # O and C: the emulator gets the binary as a file and setuid programs keep their
    # credentials; F: the emulator is opened now, so it works inside the chroot.
    return f":{name}:M::{escaped(foreign.magic)}:{escaped(foreign.mask)}:{interpreter}:OCF"


def _lock_path(name: str) -> Path:
    return LOCK_DIR / f"{name}.lock"


def remove_stale_handlers(binfmt_dir: Path = BINFMT_MISC) -> list[str]:
    """Handlers amp-image builds were killed before removing: each live build holds a
    lock named after its handler, so a free lock marks a dead one.  A handler without a
    lock here (another container's, sharing this kernel) is left alone."""
    removed = []
    for entry in binfmt_dir.glob(f"{HANDLER_PREFIX}*"):
        lock = _lock_path(entry.name)
        try:
            with open(lock) as held:  # no lock file here: not ours to judge
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                entry.write_text("-1")
                lock.unlink()
        except (BlockingIOError, FileNotFoundError):
            continue  # a live build's, or gone meanwhile
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
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    mounted_here = _mount_binfmt_misc(binfmt_dir)
    name = f"{HANDLER_PREFIX}{FOREIGN_ARCHES[arch].qemu_name}-{secrets.token_hex(4)}"
    try:
        remove_stale_handlers(binfmt_dir)
        with open(_lock_path(name), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _register(binfmt_dir, registration(name, FOREIGN_ARCHES[arch], interpreter))
            try:
                yield name
            finally:
                with suppress(OSError):
                    (binfmt_dir / name).write_text("-1")
                with suppress(OSError):
                    _lock_path(name).unlink()
    finally:
        # Since Linux 6.7 unmounting binfmt_misc's last mount drops every handler:
        # only when none but amp-image's own was there.
        if mounted_here and not _other_handlers(binfmt_dir):
            subprocess.run(["umount", str(binfmt_dir)], check=False)


def _register(binfmt_dir: Path, line: str) -> None:
    try:
        (binfmt_dir / "register").write_text(line)
    except OSError as exc:
        raise HostError(f"binfmt_misc refused the qemu-user handler ({exc.strerror}); "
                        "rerun as root in a privileged container, or build on a host of "
                        "the image's architecture") from None


def _other_handlers(binfmt_dir: Path) -> list[str]:
    return [p.name for p in binfmt_dir.iterdir() if p.name not in ("register", "status")]


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
