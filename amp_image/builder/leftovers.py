"""What a failed or killed build leaves behind: mounts under the work dir, loop
devices backed by its files, and their partition mappings, released."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

MAPPER_DIR = Path("/dev/mapper")


def _mounts_under(root: Path) -> list[str]:
    """Mount points below root, deepest first (findmnt's JSON: escapes already undone)."""
    prefix = str(root.resolve()) + "/"
    result = subprocess.run(["findmnt", "--json", "--list", "--output", "TARGET"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return []
    targets = [fs["target"] for fs in json.loads(result.stdout)["filesystems"]]
    return sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True)


def _loops_backed_by(paths: Iterable[str]) -> list[str]:
    wanted = tuple(paths)
    loops = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            source = backing.read_text().strip()
        except OSError:
            continue
        if source.startswith(wanted):
            loops.append("/dev/" + backing.parent.parent.name)
    return loops


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:  # the tool is not installed
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


def _attempt(cmd: list[str]) -> str:
    """Run a cleanup command; say what was done (or why it was not)."""
    result = _run(cmd)
    if result.returncode == 0:
        return " ".join(cmd)
    reason = " ".join(result.stderr.split()) or f"exit {result.returncode}"
    return f"{' '.join(cmd)} failed: {reason}"


def release_partitions(loop: str) -> list[str]:
    """Remove the partition mappings of a disk loop device, as DIB's block-device code does.

    The kpartx shim (hosts without device-mapper) links /dev/mapper/loopNpM to
    offset loop devices: the links go here, the loops with the others.  Real
    device-mapper mappings are removed with ``kpartx -d /dev/loopN`` (kpartx(8)),
    and any left over with ``dmsetup remove loopNpM`` (dmsetup(8)): unlinking
    their nodes would keep the mappings, and the loop device busy.
    """
    entries = sorted(MAPPER_DIR.glob(Path(loop).name + "p*"))
    links = [entry for entry in entries if entry.is_symlink()]
    for link in links:
        link.unlink(missing_ok=True)
    mappings = [entry for entry in entries if entry not in links]
    if not mappings:
        return []
    released = [_attempt(["kpartx", "-d", loop])]
    for mapping in mappings:
        if mapping.exists():
            released.append(_attempt(["dmsetup", "remove", mapping.name]))
    return released


def release_leftovers(work_dir: Path) -> list[str]:
    """Unmount and detach whatever a failed build left under work_dir.

    Only under claim_work_dir (the lock held): a running build's mounts are
    never touched.
    """
    # Loops first: once the tmpfs holding DIB's image file is lazily unmounted, the
    # kernel names the loop's backing file relative to that detached mount
    # ("/image0.raw"), and nothing would tie it to this work dir any more.
    disk_loops = _loops_backed_by([str(work_dir.resolve()) + "/"])
    # Partition loops (the kpartx shim) are backed by the disk loop device.
    part_loops = _loops_backed_by(disk_loops) if disk_loops else []
    released = []
    for mount_point in _mounts_under(work_dir):
        if _run(["umount", "-l", mount_point]).returncode == 0:
            released.append(f"umount {mount_point}")
    for loop in part_loops + disk_loops:
        released += release_partitions(loop)
        if _run(["losetup", "-d", loop]).returncode == 0:
            released.append(f"losetup -d {loop}")
    return released
