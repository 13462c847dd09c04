"""Small helpers shared by the test modules."""

import fcntl
import signal
import subprocess
from pathlib import Path

from amp_image.poll import PollTimeout, poll_until

# How long amp-image may take to exit after SIGTERM or Ctrl-C, in any phase (issue 28).
STOP_SECONDS = 15


def with_default_sigint() -> None:
    """preexec_fn for a child that a test stops with SIGINT: a suite started in the
    background (`./scripts/test &`, nohup, some CI runners) inherits SIGINT ignored, and
    so would the child, which then never sees the Ctrl-C it is sent."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def leftovers(work: Path) -> list[str]:
    """Mounts, loop devices and processes that still refer to the work dir."""
    found = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if str(work) in line]
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"],
                           capture_output=True, text=True).stdout
    found += [line for line in loops.splitlines() if str(work) in line]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(work) in args:
            found.append(f"process {cmdline.parent.name}: {args[:200]}")
    return found


def loop_devices() -> set[str]:
    """Every attached loop device with its backing file: a loop whose file sat on a
    mount since unmounted names it relative to that mount, so leftovers() cannot
    tie it to a work dir; compare these sets before and after instead
    (loop_devices_left)."""
    listing = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"],
                             capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()) for line in listing.splitlines()}


def loop_devices_left(before: set[str], settle_s: float = 30.0) -> set[str]:
    """The loop devices attached since before that stay attached for settle_s: the
    suite's other lanes (tests/lanes.py) attach some for seconds (a build's
    finalise, a direct kernel boot's copy of the image's kernel), while one a test
    leaked stays."""
    try:
        return poll_until(lambda: loop_devices() - before, until=lambda new: not new,
                          timeout=settle_s)
    except PollTimeout as timeout:
        return timeout.last


def no_cloud_env(tmp_path: Path) -> dict[str, str | None]:
    """No OS_CLOUD, no openrc, and a clouds.yaml search path that finds nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"OS_CLOUD": None, "OS_AUTH_URL": None,
            "OS_CLIENT_CONFIG_FILE": str(empty / "clouds.yaml"),
            "HOME": str(empty), "XDG_CONFIG_HOME": str(empty)}


def lock_is_free(work: Path) -> bool:
    lock = work / ".amp-image.lock"
    if not lock.exists():
        return True
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True
