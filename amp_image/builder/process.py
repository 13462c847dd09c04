"""DIB's process tree: started in a session of its own, its output read on a thread,
and stopped whole.

A build interrupted by SIGTERM or Ctrl-C must stop in seconds and leave nothing
running.  Three things make that hold:

* DIB's output is read on a thread for as long as anything writes it, so a chatty
  step (apt, pip) never blocks on a full pipe while DIB unwinds;
* DIB runs in a session of its own, and amp-image is a child subreaper for the
  build: a process that DIB's shells leave behind (a daemon started in the chroot,
  the child of a killed shell) is re-parented to amp-image, not to init, so every
  process the build started can be found as a descendant and signalled;
* stopping signals the whole tree (SIGTERM, then SIGKILL after a grace period) and
  waits until no process of it is left before the caller releases mounts and loops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from amp_image.poll import PollTimeout, poll_until

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
# DIB's own EXIT trap unmounts what it can in this time; what it leaves, the
# caller's release_leftovers() takes.  Both graces together stay well inside the
# 15 s an interrupted build may take to exit.
TERM_GRACE_S = 5.0
KILL_GRACE_S = 3.0
READER_GRACE_S = 2.0


def set_child_subreaper(on: bool) -> bool:
    """Orphans of this process's descendants become its children while on (prctl(2));
    returns whether it was on before."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = ctypes.c_int(0)
    if (libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0) != 0
            or libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    return bool(was.value)


def _parents() -> dict[int, tuple[int, str]]:
    """Every process's parent and state, from /proc/PID/stat."""
    found: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        fields = text.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            found[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return found


def subtree(roots: set[int], states: dict[int, tuple[int, str]]
            ) -> tuple[set[int], set[int]]:
    """The live processes of the trees under roots (roots included), and the dead ones
    not yet reaped (zombies)."""
    children: dict[int, list[int]] = {}
    for child, (parent, _) in states.items():
        children.setdefault(parent, []).append(child)
    live: set[int] = set()
    zombies: set[int] = set()
    todo = [pid for pid in roots if pid in states]
    while todo:
        pid = todo.pop()
        (zombies if states[pid][1] == "Z" else live).add(pid)
        todo.extend(children.get(pid, []))
    return live, zombies


def children_of(pid: int, states: dict[int, tuple[int, str]]) -> set[int]:
    return {child for child, (parent, _) in states.items() if parent == pid}


def _reap(zombies: set[int], keep: int) -> None:
    """Collect the exit of orphans re-parented here (never the process Popen owns)."""
    for pid in zombies - {keep}:
        with suppress(ChildProcessError):  # not our child: its own parent reaps it
            os.waitpid(pid, os.WNOHANG)


def _signal_all(pids: set[int], group: int, signum: int) -> None:
    """The process group DIB leads, and each process of the tree (some leave the group)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (CI timeouts, systemd, kill) unwinds like Ctrl-C: every cleanup runs."""
    signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A second Ctrl-C or SIGTERM while a build is stopped and cleaned up must not cut
    that short (main thread only, as signal.signal is)."""
    held = {signum: signal.signal(signum, signal.SIG_IGN)
            for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)


class ProcessTree:
    """One command (DIB) and everything it starts, its output fed line by line."""

    def __init__(self, cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                 on_line: Callable[[str], None]) -> None:
        self._was_subreaper = set_child_subreaper(True)
        # This process's other children (a VM of the caller's, say) are none of the build's.
        self._others = children_of(os.getpid(), _parents())
        try:
            self.proc = subprocess.Popen(
                list(cmd), env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                errors="replace", start_new_session=True)
        except BaseException:
            set_child_subreaper(self._was_subreaper)
            raise
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout, on_line),
                                        name="dib-output", daemon=True)
        self._reader.start()

    @staticmethod
    def _read(stream: IO[str], on_line: Callable[[str], None]) -> None:
        for line in stream:
            on_line(line)

    def members(self) -> tuple[set[int], set[int]]:
        """The build's live processes and its unreaped dead ones: DIB's tree, and the
        trees of orphans re-parented here since it started."""
        states = _parents()
        return subtree(children_of(os.getpid(), states) - self._others, states)

    def wait(self) -> int:
        """DIB's exit status, once its output is read; any process it left is stopped."""
        rc = self.proc.wait()
        # Whatever DIB left running may hold its output open: stopped first, then the
        # rest of the output is read to its end.
        self._stop_leftovers()
        self._reader.join(timeout=30)
        self._done()
        return rc

    def stop(self) -> float:
        """SIGTERM to the whole tree, SIGKILL to what outlives the grace period; returns
        once no process of it is left (or the graces are spent), in seconds."""
        start = time.monotonic()
        for signum, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
            live, _ = self.members()
            _signal_all(live, self.proc.pid, signum)
            if self._wait_gone(grace):
                break
        self._reader.join(timeout=READER_GRACE_S)
        self._done()
        return time.monotonic() - start

    def _done(self) -> None:
        """Orphans go to init again, as before the build (a test run's long-lived pytest
        would otherwise collect every orphan of its other tests)."""
        set_child_subreaper(self._was_subreaper)

    def _gone(self) -> bool:
        self.proc.poll()
        live, zombies = self.members()
        _reap(zombies, keep=self.proc.pid)
        return self.proc.returncode is not None and not live

    def _wait_gone(self, grace: float) -> bool:
        try:
            return poll_until(self._gone, timeout=grace, interval=0.1)
        except PollTimeout:
            return False

    def _stop_leftovers(self) -> None:
        live, zombies = self.members()
        _reap(zombies, keep=self.proc.pid)
        if live:
            self.stop()
