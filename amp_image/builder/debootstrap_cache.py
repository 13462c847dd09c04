"""The debootstrap tarball in the cache: checked before DIB unpacks it, never trusted blind.

DIB's debootstrap element writes ``debootstrap-DISTRO-RELEASE-ARCH.tar.gz`` in place
(``tar -czf``) and unpacks it in every later build.  A build killed while it was being
written, a full disk or a damaged file system leaves a truncated or corrupted tarball,
and every later build would fail on it (or unpack half a root).  So:

* after a build that held the package cache, amp-image records the tarball's size and
  SHA-256 beside it (``NAME.sha256``);
* before the next such build it checks the tarball against that record, or, if it is
  not the recorded one (or has none), reads its whole gzip stream once;
* a tarball that fails is set aside as ``NAME.corrupt`` (replacing an older one, both
  made by amp-image builds), and DIB bootstraps from the mirror and writes a new one.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from amp_image.builder.digests import sha256_file

CHUNK = 1 << 20


def tarball_path(cache_dir: Path, release: str, arch: str, distro: str = "debian") -> Path:
    return cache_dir / f"debootstrap-{distro}-{release}-{arch}.tar.gz"


def _record_path(tarball: Path) -> Path:
    return tarball.with_name(tarball.name + ".sha256")


def _record(tarball: Path) -> dict | None:
    try:
        return json.loads(_record_path(tarball).read_text())
    except (OSError, ValueError):
        return None


def _matches_record(tarball: Path) -> bool:
    record = _record(tarball)
    return bool(record) and record.get("size") == tarball.stat().st_size \
        and record.get("sha256") == sha256_file(tarball)


def damage(tarball: Path) -> str:
    """Why the tarball cannot be trusted, or '' if it can: it is the one recorded, or
    its whole gzip stream reads without error (gzip's CRC catches a changed byte, the
    missing end of the stream a truncation)."""
    if _matches_record(tarball):
        return ""
    try:
        # To the end of the stream: gzip checks its CRC and length only there.
        with gzip.open(tarball) as stream:
            while stream.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"unreadable: {exc}"
    return ""


def check(tarball: Path, emit: Callable[[str], None]) -> None:
    """Set a damaged tarball aside, so that DIB bootstraps afresh; record a sound one."""
    if not tarball.is_file():
        return
    why = damage(tarball)
    if not why:
        remember(tarball)
        return
    aside = tarball.with_name(tarball.name + ".corrupt")
    os.replace(tarball, aside)
    _record_path(tarball).unlink(missing_ok=True)
    emit(f"the debootstrap cache {tarball} is damaged ({why}): set aside as {aside.name}; "
         "this build bootstraps from the mirror and caches a new one")


def remember(tarball: Path) -> None:
    """Record the tarball's size and SHA-256 (after a build that used or wrote it)."""
    if not tarball.is_file():
        return
    record = _record(tarball)
    size = tarball.stat().st_size
    if record and record.get("size") == size and record.get("mtime_ns") == \
            tarball.stat().st_mtime_ns:
        return
    tmp = _record_path(tarball).with_suffix(".tmp")
    tmp.write_text(json.dumps({"size": size, "mtime_ns": tarball.stat().st_mtime_ns,
                               "sha256": sha256_file(tarball)}) + "\n")
    os.replace(tmp, _record_path(tarball))
