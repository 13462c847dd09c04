"""Stopping DIB's process tree, with real processes (bash, sleep) standing in for DIB:
the stop is prompt while the tree floods its output, reaches processes that left DIB's
process group or were orphaned, and leaves the caller's other children alone."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from amp_image.builder import process
from amp_image.builder.process import ProcessTree


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return state != "Z"


def _tree(tmp_path: Path, script: str) -> tuple[ProcessTree, list[str]]:
    lines: list[str] = []
    body = tmp_path / "fake-dib"
    body.write_text("#!/bin/bash\n" + textwrap.dedent(script))
    body.chmod(0o755)
    tree = ProcessTree([str(body)], env=dict(os.environ), cwd=tmp_path, on_line=lines.append)
    return tree, lines


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_a_chatty_tree_that_ignores_sigterm_stops_in_seconds(tmp_path):
    """Output keeps being read while the tree unwinds (a full pipe blocked DIB for two
    minutes before, issue 28), and what ignores SIGTERM gets SIGKILL."""
    tree, lines = _tree(tmp_path, f"""\
        trap '' TERM
        setsid bash -c 'trap "" TERM; echo $$ > {tmp_path}/escaped; exec sleep 600' &
        touch {tmp_path}/started
        while true; do echo "Unpacking a package of many lines"; done
        """)
    _wait_for(tmp_path / "escaped")
    _wait_for(tmp_path / "started")
    escaped = int((tmp_path / "escaped").read_text())
    seconds = tree.stop()
    assert seconds < process.TERM_GRACE_S + process.KILL_GRACE_S + 1
    assert tree.proc.returncode is not None
    assert not _alive(escaped), "a process that left DIB's process group survived"
    assert len(lines) > 1000


def test_an_orphaned_daemon_is_found_and_stopped(tmp_path):
    """A daemon that double-forks (gpg-agent in a chroot, say) is re-parented to the
    build's process, not to init, and stopped with the tree once DIB has exited."""
    tree, _ = _tree(tmp_path, f"""\
        ( setsid sleep 600 & echo $! > {tmp_path}/daemon ) &
        wait
        """)
    _wait_for(tmp_path / "daemon")
    daemon = int((tmp_path / "daemon").read_text())
    assert tree.wait() == 0
    assert not _alive(daemon), "the orphaned daemon outlived the build"


def test_the_callers_other_children_are_left_alone(tmp_path):
    other = subprocess.Popen(["sleep", "600"])
    try:
        tree, _ = _tree(tmp_path, "sleep 600\n")
        time.sleep(0.5)
        tree.stop()
        assert tree.proc.returncode is not None
        assert other.poll() is None, "the stop signalled a process the build did not start"
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("exit_code", [0, 3])
def test_wait_returns_dibs_exit_status_after_its_last_line(tmp_path, exit_code):
    tree, lines = _tree(tmp_path, f"echo one\necho two\nexit {exit_code}\n")
    assert tree.wait() == exit_code
    assert lines == ["one\n", "two\n"]


def test_a_command_that_cannot_start_leaves_no_subreaper(tmp_path):
    before = process.set_child_subreaper(False)
    try:
        with pytest.raises(FileNotFoundError):
            ProcessTree([str(tmp_path / "no-such-dib")], env=dict(os.environ), cwd=tmp_path,
                        on_line=print)
        assert process.set_child_subreaper(False) is False
    finally:
        process.set_child_subreaper(before)
