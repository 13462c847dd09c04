"""Read an image's root file system offline: a read-only loop mount, always undone.

Works without device-mapper and without loop partition scanning: the image
is converted to a sparse raw file and its root partition is mapped with an
offset loop device.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from amp_image.errors import AmpImageError
from amp_image.image import qemuimg


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


@contextmanager
def mounted_image(image: Path, workdir: Path | None = None) -> Iterator[Path]:
    """Yield the image's root file system, mounted read-only."""
    image = image.resolve()
    if not image.is_file():
        raise AmpImageError(f"{image}: no such image")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="amp-image-fs.", dir=workdir)))
        fmt = qemuimg.image_format(image)
        raw = image
        if fmt != "raw":
            raw = tmp / "image.raw"
            run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)])
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
        fstype = run(["blkid", "-o", "value", "-s", "TYPE", loop]).strip()
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
