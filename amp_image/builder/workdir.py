"""The build's work dir: its lock (with what a dead build left released), the
secret and pin files DIB's elements read for one build, and the finished image and
manifests moved out of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from amp_image.builder import locks
from amp_image.builder.environment import PACKAGE_PINS_FILE, ROOT_PASSWORD_HASH_FILE
from amp_image.builder.leftovers import release_leftovers
from amp_image.builder.plan import BuildPlan


def publish_image(src: Path, dest: Path) -> None:
    """Move the finished image into place atomically: never a half-written output."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        os.replace(src, dest)
        return
    except OSError:
        pass
    try:
        shutil.copyfile(src, partial)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    src.unlink()


def move_manifests(src: Path, dest: Path) -> Path | None:
    if not src.is_dir():
        return None
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(src), dest)
    return dest


@contextmanager
def claim_work_dir(work_dir: Path, *, wait: bool = True,
                   emit: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the work dir's lock; release what a dead build left there first.

    Another build's mounts are never touched: while it runs it holds the lock,
    and this waits for it (or fails at once without wait).
    """
    with locks.work_dir_lock(work_dir, wait=wait, emit=emit):
        # The lock was free, so whoever left something here is gone
        # (SIGKILL, power loss): release it now.
        for action in release_leftovers(work_dir):
            emit(f"cleanup of an earlier build: {action}")
        remove_secrets(work_dir)
        yield


def remove_secrets(work_dir: Path) -> None:
    """The root password hash file and the copy DIB staged for the element, if any."""
    shutil.rmtree(work_dir / Path(ROOT_PASSWORD_HASH_FILE).parent, ignore_errors=True)
    for staged in (work_dir / "tmp").glob("dib_build.*/hooks/root-passwd/hash"):
        staged.unlink(missing_ok=True)


@contextmanager
def root_password_file(plan: BuildPlan) -> Iterator[None]:
    """The root password's hash where the root-passwd element reads it (mode 0600, in a
    0700 folder), for this build only."""
    opts = plan.options
    if not opts.root_password_hash:
        yield
        return
    path = opts.work_dir / ROOT_PASSWORD_HASH_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(opts.root_password_hash + "\n")
    try:
        yield
    finally:
        remove_secrets(opts.work_dir)


@contextmanager
def package_pins_file(plan: BuildPlan) -> Iterator[None]:
    """The NAME VERSION list pin-package-versions reads, for this build only."""
    pins = plan.options.package_pins
    if not pins:
        yield
        return
    path = plan.options.work_dir / PACKAGE_PINS_FILE
    path.write_text("".join(f"{name} {version}\n" for name, version in pins))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
