"""The work dir and package cache locks, between real processes.

Each holder is a separate Python process that takes a lock the way a build does
(workdir.claim_work_dir, locks.package_cache) and sleeps; killing it with SIGKILL
is how a build dies when nothing can clean up.  The mounts are real tmpfs
mounts under the work dir, standing for a running build's chroot mounts.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from amp_image.builder import dib_env, locks, workdir
from amp_image.builder.options import BuildOptions, HostContext
from amp_image.builder.plan import make_plan

AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")

HOLD = """
import sys, time
from pathlib import Path
from amp_image.builder import dib_env, locks, workdir

kind, path = sys.argv[1], Path(sys.argv[2])
if kind == "work":
    held = workdir.claim_work_dir(path, wait=True, emit=lambda line: print(line, flush=True))
else:
    held = locks.package_cache(path)
with held as other:
    print(f"HELD {other or ''}".strip(), flush=True)
    time.sleep(300)
"""


class Holder:
    """A process holding (or waiting for) a lock; its output lines, as they come."""

    def __init__(self, kind: str, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, kind, str(path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 30) -> str:
        return self.lines.get(timeout=timeout)

    def nothing_more(self, seconds: float) -> bool:
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected output: {line}")

    def kill(self) -> None:
        """kill -9: no cleanup of any kind runs in the holder."""
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(kind: str, path: Path) -> Holder:
        started.append(Holder(kind, path))
        return started[-1]

    yield start
    for holder in started:
        if holder.proc.poll() is None:
            holder.kill()


@pytest.fixture
def mounts():
    """Real tmpfs mounts (as root), unmounted at the end whatever happened."""
    made: list[Path] = []

    def mount(where: Path) -> Path:
        where.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "amp-lock-test", str(where)], check=True)
        made.append(where)
        return where

    yield mount
    for where in made:
        if os.path.ismount(where):
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_second_build_waits_naming_the_pid_and_leaves_the_mounts(holders, mounts, tmp_path):
    work = tmp_path / "work"
    first = holders("work", work)
    assert first.next_line() == "HELD"
    chroot = mounts(work / "tmp" / "dib_build.x" / "mnt")
    second = holders("work", work)
    assert second.next_line() == (f"work dir {work} is in use by amp-image PID "
                                  f"{first.proc.pid}; waiting for it to finish (--no-wait "
                                  "fails instead)")
    assert second.nothing_more(2)
    assert os.path.ismount(chroot)
    first.kill()
    # Its owner is dead: the waiting build gets the lock and releases what was left.
    assert second.next_line() == f"cleanup of an earlier build: umount {chroot}"
    assert second.next_line() == "HELD"
    assert not os.path.ismount(chroot)


def test_no_wait_fails_at_once_with_one_line(holders, mounts, tmp_path):
    """The real CLI against a real holder.  Were the lock not honoured, the build would
    stop at once anyway: its only element does not exist."""
    work = tmp_path / "work"
    first = holders("work", work)
    assert first.next_line() == "HELD"
    chroot = mounts(work / "tmp" / "dib_build.x" / "mnt")
    result = subprocess.run(
        [AMP_IMAGE, "build", "--no-wait", "--work-dir", str(work), "-o",
         str(tmp_path / "amp.qcow2"), "--replace-elements", "amp-image-no-such-element",
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"amp-image: error: work dir {work} is in use by amp-image PID {first.proc.pid}; "
        "wait for it, or use another --work-dir"]
    assert os.path.ismount(chroot)
    assert not (tmp_path / "amp.qcow2").exists()


def test_lock_is_free_once_its_holder_is_killed(holders, tmp_path):
    work = tmp_path / "work"
    first = holders("work", work)
    assert first.next_line() == "HELD"
    with pytest.raises(locks.LockBusy, match=f"PID {first.proc.pid};"), \
            workdir.claim_work_dir(work, wait=False):
        pass
    first.kill()
    said: list[str] = []
    with workdir.claim_work_dir(work, wait=False, emit=said.append):
        assert (work / locks.WORK_DIR_LOCK).read_text() == f"{os.getpid()}\n"
    assert said == []


def test_different_work_dirs_do_not_wait_for_each_other(holders, tmp_path):
    first = holders("work", tmp_path / "one")
    assert first.next_line() == "HELD"
    second = holders("work", tmp_path / "two")
    assert second.next_line(timeout=10) == "HELD"


def test_package_cache_goes_to_one_build_the_other_does_without(holders, tmp_path):
    cache = tmp_path / "cache"
    first = holders("cache", cache)
    assert first.next_line() == "HELD"  # it has the package cache
    with locks.package_cache(cache) as other:
        assert other == str(first.proc.pid)
    plan = make_plan(BuildOptions(cache_dir=cache), HostContext(), Path("/elements"))
    shared = dib_env.dib_environment(plan, tmp_path / "bin", {"PATH": "/usr/bin"})
    own = dib_env.dib_environment(plan, tmp_path / "bin", {"PATH": "/usr/bin"},
                              package_cache=False)
    assert shared["DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"] == "1"
    assert "DIB_APT_LOCAL_CACHE" not in shared
    assert "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE" not in own
    assert own["DIB_DEBOOTSTRAP_CACHE"] == own["DIB_APT_LOCAL_CACHE"] == "0"
    assert own["DIB_IMAGE_CACHE"] == str(cache)  # the pip cache is still shared
    first.kill()
    with locks.package_cache(cache) as other:
        assert other == ""


def test_conformance_harness_venv_is_made_by_one_process_at_a_time(tmp_path, monkeypatch):
    """harness_venv.ensure takes the venv's lock: while another process holds it (here
    a real process holding the same lock file), ensure waits, says for which PID, and
    then finds the venv made and installs nothing (the venv is a stand-in: a python
    and the stamp its inputs give, so no pip runs)."""
    from amp_image.verify.conformance import harness_venv

    monkeypatch.setattr(harness_venv, "CACHE", tmp_path)
    venv = harness_venv.venv_dir("19.0.0")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    constraints_file = harness_venv.constraints.vendored_for("19.0.0")
    (venv / ".amp-image-stamp").write_text(harness_venv._stamp("19.0.0", constraints_file))
    lock_path = venv.with_name(venv.name + ".lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pathlib import Path\nfrom amp_image.builder import locks\n"
         "lock = locks.acquire(Path(sys.argv[1]), what='x', wait=False, busy_hint='', "
         "emit=print)\nprint('HELD', flush=True)\ntime.sleep(300)", str(lock_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        said: queue.Queue = queue.Queue()
        done: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=lambda: done.put(harness_venv.ensure("19.0.0", emit=said.put)))
        worker.start()
        message = said.get(timeout=30)
        assert message == (f"the conformance harness venv {venv} is in use by amp-image PID "
                           f"{holder.pid}; waiting for it to finish"), message
        assert done.empty()
    finally:
        holder.kill()
        holder.wait()
    assert done.get(timeout=30) == venv / "bin" / "python"
    worker.join(timeout=30)
    assert (venv / "amp-image-package" / "amp_image").is_symlink()
