"""Locks that keep concurrent builds apart: one build per work dir, one user of the
Debian package cache at a time.

Each lock is ``fcntl.flock`` on a lock file inside the folder it protects, with
the holder's PID written in it (for the messages).  The kernel drops a flock
when its holder dies, however it dies (``kill -9`` included): a free lock means
its last owner is gone, so what is left under a work dir whose lock we hold is
leftovers, safe to release.  The lock's file descriptor is not inherited by
DIB, so a stray process started by a build cannot keep it.

The work dir (``--work-dir``): a build holds its lock from before it releases
any leftovers until its image is in place.  A second build on the same work dir
waits for it, saying for which PID, or fails at once with ``--no-wait``.

The cache (``--cache-dir``, DIB_IMAGE_CACHE) is shared by builds in different
work dirs; what DIB writes there decides the scheme, per cache item:

* the debootstrap tarball (``debootstrap-debian-RELEASE-ARCH.tar.gz``) is
  written in place by ``tar -czf`` when it is missing, and read by every later
  build: a build reading it while another writes it would unpack half a file;
* the apt archives (``apt/debian``) are bind-mounted into the chroot as
  ``/var/cache/apt/archives``, and apt takes ``archives/lock`` without waiting:
  a second build's apt-get would fail with "Could not get lock";
* the pip cache (``pip``) is bind-mounted too; pip writes its cache entries to
  temporary files and renames them into place, so concurrent builds share it
  safely as it is.

So the first two are one item, "the package cache", with a lock of its own
(``.amp-image-packages.lock``) that a build takes without waiting.  The build
that gets it uses the tarball and the apt archives as before.  A build running
beside it does not wait: it bootstraps from the mirror and keeps its downloaded
packages to itself (DIB_DEBOOTSTRAP_CACHE=0, no DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE,
DIB_APT_LOCAL_CACHE=0): slower, never in the other's way.  Both share the pip
cache.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amp_image.errors import AmpImageError, HostError
from amp_image.poll import PollTimeout, poll_until

WORK_DIR_LOCK = ".amp-image.lock"
PACKAGE_CACHE_LOCK = ".amp-image-packages.lock"


class LockBusy(AmpImageError):
    """Another amp-image build holds the lock, and we were told not to wait."""


@dataclass
class Lock:
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise HostError(f"cannot create the lock file {path}: {exc.strerror}; choose a "
                        "folder you can write to") from None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(path: Path, tries: int = 20) -> str:
    """The PID written in a held lock file ('unknown' if it cannot be told).

    A new holder writes its PID just after taking the lock; until then the
    file may hold nothing, or its dead predecessor's PID: read again shortly.
    """
    def read() -> str:
        try:
            return path.read_text().strip()
        except OSError:
            return ""

    try:
        return poll_until(read, timeout=tries * 0.05, interval=0.05,
                          until=lambda text: text.isdigit() and _alive(int(text)))
    except PollTimeout:
        return "unknown"


def try_acquire(path: Path) -> Lock | None:
    """The lock if it is free now, else None."""
    fd = _open(path)
    if not _try_flock(fd):
        os.close(fd)
        return None
    _write_pid(fd)
    return Lock(path, fd)


def acquire(path: Path, *, what: str, wait: bool, busy_hint: str,
            emit: Callable[[str], None], waiting_hint: str = "") -> Lock:
    """Take the lock; if another process holds it, wait (saying so, with waiting_hint)
    or raise LockBusy (with busy_hint)."""
    fd = _open(path)
    if not _try_flock(fd):
        pid = holder(path)
        if not wait:
            os.close(fd)
            raise LockBusy(f"{what} is in use by amp-image PID {pid}; {busy_hint}")
        emit(f"{what} is in use by amp-image PID {pid}; waiting for it to finish"
             + (f" ({waiting_hint})" if waiting_hint else ""))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
    _write_pid(fd)
    return Lock(path, fd)


@contextmanager
def work_dir_lock(work_dir: Path, *, wait: bool,
                  emit: Callable[[str], None]) -> Iterator[Lock]:
    lock = acquire(work_dir / WORK_DIR_LOCK, what=f"work dir {work_dir}", wait=wait,
                   busy_hint="wait for it, or use another --work-dir", emit=emit,
                   waiting_hint="--no-wait fails instead")
    try:
        yield lock
    finally:
        lock.release()


@contextmanager
def package_cache(cache_dir: Path) -> Iterator[str]:
    """Yield '' with the package cache ours for the build, else the PID that has it."""
    lock = try_acquire(cache_dir / PACKAGE_CACHE_LOCK)
    if lock is None:
        yield holder(cache_dir / PACKAGE_CACHE_LOCK)
        return
    try:
        yield ""
    finally:
        lock.release()
