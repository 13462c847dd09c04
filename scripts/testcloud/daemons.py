"""The cloud's processes: started in sessions of their own, marked in their environment
(layout.MARKER_ENV), waited for, and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from amp_image.poll import PollTimeout, poll_until
from testcloud.layout import MARKER_ENV, CloudDir


class DaemonError(Exception):
    pass


def environment(cloud: CloudDir, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OS_", "PIP_", "PYTHON"))}
    env.update({MARKER_ENV: str(cloud.root), "PYTHONWARNINGS": "ignore"})
    env.update(extra or {})
    return env


def start(cloud: CloudDir, name: str, argv: list[str],
          extra_env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start one daemon, its output in logs/NAME.out; its PID in run/pids/NAME."""
    cloud.logs.mkdir(parents=True, exist_ok=True)
    with open(cloud.logs / f"{name}.out", "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env=environment(cloud, extra_env),
                                   cwd=cwd or cloud.run)
    pids = cloud.run / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / name).write_text(f"{process.pid}\n")
    return process.pid


def run(cloud: CloudDir, what: str, argv: list[str],
        extra_env: Mapping[str, str] | None = None) -> None:
    """One set-up command (a db sync, a bootstrap), its output in logs/set-up.log."""
    cloud.logs.mkdir(parents=True, exist_ok=True)
    with open(cloud.logs / "set-up.log", "ab") as log:
        log.write(f"== {what}: {' '.join(argv)}\n".encode())
        log.flush()
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=environment(cloud, extra_env),
                                cwd=cloud.run)
    if result.returncode != 0:
        raise DaemonError(f"{what} failed (exit {result.returncode}); see "
                          f"{cloud.logs / 'set-up.log'}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (401 and 300 are answers)
    except OSError:
        return False


def wait_for(cloud: CloudDir, name: str, check, timeout: float = 120) -> None:
    """Poll check() until it is true; fail at once if the daemon NAME has died."""
    pid = int((cloud.run / "pids" / name).read_text())

    def ready() -> bool:
        if not alive(pid):
            raise DaemonError(f"{name} exited while starting; see its log in {cloud.logs}")
        return check()

    try:
        poll_until(ready, timeout=timeout, interval=0.5)
    except PollTimeout:
        raise DaemonError(f"{name} did not answer within {timeout:g} s; see its log in "
                          f"{cloud.logs}") from None


def sessions(cloud: CloudDir) -> set[int]:
    """The sessions the daemons were started in (each its own: its PID)."""
    try:
        return {int(pid.read_text()) for pid in (cloud.run / "pids").iterdir()}
    except FileNotFoundError:
        return set()


def marked(cloud: CloudDir) -> list[int]:
    """Every process of the cloud: in a daemon's session, or carrying the marker in its
    environment (what leaves its session, like epmd; gunicorn's proctitle overwrites
    its environment, but it stays in its session)."""
    needle = f"{MARKER_ENV}={cloud.root}".encode()
    ours = sessions(cloud)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if session in ours or needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_all(cloud: CloudDir, grace: float = 15) -> list[int]:
    """SIGTERM every marked process, SIGKILL what is left after grace seconds; return
    the PIDs that were running."""
    pids = [pid for pid in marked(cloud) if alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    with contextlib.suppress(PollTimeout):
        poll_until(lambda: not any(alive(pid) for pid in pids), timeout=grace, interval=0.2)
    for pid in marked(cloud):
        _signal(pid, signal.SIGKILL)
    try:
        poll_until(lambda: not [pid for pid in marked(cloud) if alive(pid)],
                   timeout=10, interval=0.2)
    except PollTimeout:
        raise DaemonError(f"processes of the test cloud survived SIGKILL: "
                          f"{marked(cloud)}") from None
    return pids


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
