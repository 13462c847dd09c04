"""Read an image's root file system offline: a read-only loop mount, always undone.

Works without device-mapper, nbd and loop partition scanning: a qcow2 image is
exported read-only as a raw file over FUSE by qemu-storage-daemon (no copy), or,
where FUSE is missing, converted to a sparse raw file; its root partition is
then mapped with an offset loop device.

Each view lives in a folder of its own (``amp-image-fs.*``) holding a lock for as
long as its owner runs.  An owner killed outright (``kill -9``) leaves the export,
the loop device and the mount behind; the next view made in the same place finds
the folder's lock free and releases them, as a build does with its work dir.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from amp_image.builder.leftovers import release_leftovers
from amp_image.errors import AmpImageError
from amp_image.image import qemuimg
from amp_image.poll import PollTimeout, poll_until


def run(cmd: list[str], **kw) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise AmpImageError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result.stdout


def partitions(raw: Path) -> list[tuple[int, int, int]]:
    """(number, start sector, sectors) of each partition; empty for a bare file system."""
    out = subprocess.run(["partx", "-g", "-o", "NR,START,SECTORS", str(raw)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return [tuple(int(x) for x in line.split()) for line in out.stdout.splitlines()
            if line.strip()]


def raw_view(image: Path, target: Path, stack: ExitStack) -> Path:
    """The image's disk as a raw file at target: exported read-only over FUSE while
    stack lasts, else a converted copy."""
    if shutil.which("qemu-storage-daemon") and os.path.exists("/dev/fuse"):
        try:
            return _fuse_export(image, target, stack)
        except AmpImageError:
            pass  # a kernel or container without FUSE mounts: copy instead
    run(["qemu-img", "convert", "-O", "raw", str(image), str(target)])
    return target


def _fuse_export(image: Path, target: Path, stack: ExitStack) -> Path:
    target.touch()
    info = qemuimg.info(image)
    size, fmt = info["virtual-size"], info["format"]
    # Its messages go to a file: a pipe nobody reads while it runs could fill and stall it.
    log = stack.enter_context(open(target.with_suffix(".log"), "w+b"))  # noqa: SIM115
    daemon = subprocess.Popen(
        ["qemu-storage-daemon",
         "--blockdev", f"driver=file,filename={image},node-name=file,read-only=on",
         "--blockdev", f"driver={fmt},file=file,node-name=disk,read-only=on",
         "--export", f"type=fuse,id=raw,node-name=disk,mountpoint={target},writable=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    stack.callback(_stop_export, daemon, target)

    def exported() -> bool:
        if daemon.poll() is not None:
            log.seek(0)
            raise AmpImageError(f"qemu-storage-daemon could not export {image}: "
                                f"{log.read().decode().strip()}")
        return target.stat().st_size == size

    try:
        poll_until(exported, timeout=30, interval=0.1)
    except PollTimeout:
        # Stopped now, not with the stack: the caller falls back to a copy at target.
        _stop_export(daemon, target)
        raise AmpImageError(f"qemu-storage-daemon did not export {image}") from None
    return target


def _stop_export(daemon: subprocess.Popen, target: Path) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    # A daemon that died without unmounting leaves the mount point behind.
    subprocess.run(["umount", str(target)], capture_output=True)


VIEW_PREFIX = "amp-image-fs."
VIEW_LOCK = ".amp-image-view.lock"


def _owned_folder(parent: Path | None, stack: ExitStack) -> Path:
    """A new view folder, its lock held until stack closes.  The lock file is locked
    under another name and then renamed, so no one sees it free while it is new."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=VIEW_PREFIX,
                                                                  dir=parent)))
    staged = folder / f"{VIEW_LOCK}.new"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    stack.callback(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    staged.rename(folder / VIEW_LOCK)
    return folder


def _lock_is_free(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _processes_naming(folder: Path) -> list[int]:
    """Processes whose command line names a path in folder (a left qemu-storage-daemon)."""
    needle = (str(folder) + "/").encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def release_stale_views(parent: Path | None = None) -> list[str]:
    """Release what views in parent (the temporary folder by default) whose owner is
    gone left behind: the loop device, the mounts, the export's daemon, the folder."""
    parent = Path(parent or tempfile.gettempdir())
    released: list[str] = []
    for folder in sorted(parent.glob(VIEW_PREFIX + "*")):
        if not _lock_is_free(folder / VIEW_LOCK):
            continue  # in use, or not a view amp-image made
        released += release_leftovers(folder)
        for pid in _processes_naming(folder):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                released.append(f"kill {pid}")
        try:
            poll_until(lambda f=folder: not _processes_naming(f), timeout=10, interval=0.1)
        except PollTimeout:
            released.append(f"{folder} kept: a process naming it outlived SIGKILL")
            continue
        subprocess.run(["umount", "-l", str(folder / "image.raw")], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        released.append(f"rm -r {folder}")
    return released


@contextmanager
def mounted_image(image: Path, workdir: Path | None = None) -> Iterator[Path]:
    """Yield the image's root file system, mounted read-only."""
    image = image.resolve()
    if not image.is_file():
        raise AmpImageError(f"{image}: no such image")
    for action in release_stale_views(workdir):
        print(f"amp-image: released what an earlier, killed amp-image left: {action}",
              file=sys.stderr)
    with ExitStack() as stack:
        tmp = _owned_folder(workdir, stack)
        raw = image
        if qemuimg.image_format(image) != "raw":
            raw = raw_view(image, tmp / "image.raw", stack)
        parts = partitions(raw)
        # DIB's MBR layout has one root partition; with EFI it is the largest.
        offset, size = (0, raw.stat().st_size)
        if parts:
            _, start, sectors = max(parts, key=lambda p: p[2])
            offset, size = start * 512, sectors * 512
        loop = run(["losetup", "--show", "-f", "-r", "--offset", str(offset),
                    "--sizelimit", str(size), str(raw)]).strip()
        stack.callback(subprocess.run, ["losetup", "-d", loop], capture_output=True)
        mnt = tmp / "root"
        mnt.mkdir()
        probe = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", loop],
                               capture_output=True, text=True)
        fstype = probe.stdout.strip()
        if probe.returncode != 0 or not fstype:
            raise AmpImageError(f"{image} is not a disk image amp-image can read (no file "
                                "system in it); pass a qcow2 or raw image that amp-image "
                                "build made")
        options = "ro,noload" if fstype.startswith("ext") else "ro"
        run(["mount", "-o", options, loop, str(mnt)])
        stack.callback(subprocess.run, ["umount", str(mnt)], capture_output=True)
        yield mnt


def copy_boot_files(root: Path, dest: Path) -> tuple[Path, Path, str]:
    """The image's newest kernel, its initramfs and GRUB's kernel command line."""
    kernels = sorted(root.glob("boot/vmlinuz-*"))
    if not kernels:
        raise AmpImageError("no kernel in the image's /boot")
    kernel = kernels[-1]
    version = kernel.name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel, dest / kernel.name)
    shutil.copyfile(initrd, dest / initrd.name)
    return dest / kernel.name, dest / initrd.name, grub_cmdline(root, version)


def grub_cmdline(root: Path, version: str) -> str:
    cfg = root / "boot/grub/grub.cfg"
    for line in cfg.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "linux" and words[1].endswith(version):
            return " ".join(words[2:])
    raise AmpImageError(f"no linux line for {version} in the image's grub.cfg")
