"""Offline mounts of a real (tiny) qcow2 image: exported over FUSE without a copy, or
converted where FUSE is missing; either way read-only and nothing left behind.
Needs root (loop devices and mounts), as the suite runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from amp_image.image import imagefs


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tiny_qcow2(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    raw = work / "disk.raw"
    sh("truncate", "-s", "64M", str(raw))
    subprocess.run(["sfdisk", "--quiet", str(raw)], input="2048,,L\n", text=True,
                   check=True, capture_output=True)
    part = work / "part.raw"
    sh("truncate", "-s", f"{64 * 2**20 - 2048 * 512}", str(part))
    root = work / "root"
    (root / "etc/amp-image").mkdir(parents=True)
    (root / "etc/amp-image/marker").write_text("tiny\n")
    sh("mkfs.ext4", "-q", "-d", str(root), str(part))
    sh("dd", f"if={part}", f"of={raw}", "bs=512", "seek=2048", "conv=notrunc", "status=none")
    image = work / "tiny.qcow2"
    sh("qemu-img", "convert", "-O", "qcow2", str(raw), str(image))
    return image


def leftovers(tmp: Path) -> list[str]:
    loops = subprocess.run(["losetup", "-j", str(tmp)], capture_output=True, text=True).stdout
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(tmp) in line]
    return [*loops.splitlines(), *mounts, *(p.name for p in tmp.iterdir())]


def test_fuse_export_reads_the_image_without_a_copy(tiny_qcow2, tmp_path, monkeypatch):
    copies = []
    real_run = imagefs.run

    def run(cmd: list[str], **kw) -> str:
        if cmd[:2] == ["qemu-img", "convert"]:
            copies.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(imagefs, "run", run)
    with imagefs.mounted_image(tiny_qcow2, workdir=tmp_path) as root:
        assert (root / "etc/amp-image/marker").read_text() == "tiny\n"
        raw = next(tmp_path.glob("amp-image-fs.*/image.raw"))
        assert raw.stat().st_size == 64 * 2**20
    assert copies == [], "the image was copied"
    assert leftovers(tmp_path) == []


def test_without_fuse_the_image_is_converted(tiny_qcow2, tmp_path, monkeypatch):
    monkeypatch.setattr(imagefs.shutil, "which", lambda name: None)
    with imagefs.mounted_image(tiny_qcow2, workdir=tmp_path) as root:
        assert (root / "etc/amp-image/marker").read_text() == "tiny\n"
    assert leftovers(tmp_path) == []
