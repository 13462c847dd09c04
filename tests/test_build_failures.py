"""Real builds that fail or are interrupted leave nothing behind.

These run disk-image-create for real (warm caches from the suite's main build
make them quick): one fails inside the chroot on a VF driver the kernel lacks,
others are stopped with SIGTERM or Ctrl-C in each DIB phase (root.d, the package
installs, the agent's pip install, finalise.d with the image's partitions mapped and
mounted) and must exit in seconds leaving nothing; the seconds of each go to
build/signal-stops.json.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, ROOT, ca_bundle_args
from helpers import (
    STOP_SECONDS,
    leftovers,
    lock_is_free,
    loop_devices,
    loop_devices_left,
    with_default_sigint,
)

from amp_image.builder.constraints import DEFAULT_AGENT_VERSION, vendored_for

pytestmark = pytest.mark.image


def test_missing_vf_driver_fails_the_build_naming_it(built_image, tmp_path):
    work, output = tmp_path / "work", tmp_path / "x.qcow2"
    result = subprocess.run(
        [AMP_IMAGE, "build", "--sriov", "--vf-drivers", "iavf,no_such_vf_driver",
         "-o", str(output), "--work-dir", str(work)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1200)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("amp-image: error: disk-image-create failed")
    assert "no_such_vf_driver" in error
    assert not output.exists()
    # Only the build log stays beside where the image would have been: this build's own
    # (x.qcow2.<UTC time>.log), the one the error names, and x.qcow2.log linking it.
    log = (tmp_path / "x.qcow2.log").resolve()
    assert re.fullmatch(r"x\.qcow2\.\d{8}T\d{6}Z\.log", log.name), log.name
    assert f"see {log}" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["work", "x.qcow2.log",
                                                                 log.name])
    assert leftovers(work) == []


@dataclass(frozen=True)
class Stop:
    """Where a build is stopped: the DIB script whose start is waited for, how long
    after it the signal goes, and the options that make the build run that script (a
    build from the suite's warm layers would skip it)."""
    marker: str
    after_s: float
    options: tuple[str, ...] = ()


# The constraints of the default series, with a comment added: the agent's layer key
# changes, the packages layer is restored and the agent's pip install runs.
AGENT_CONSTRAINTS = "agent-constraints.txt"
STOPS = {
    "root.d": Stop("root.d/08-debootstrap", 3, ("--no-cache",)),
    # The chattiest step: apt and dpkg (issue 28: amp-image stopped reading and hung).
    "package-installs": Stop("install.d/01-package-installs", 15, ("--no-cache",)),
    "agent-pip-install": Stop("install.d/75-amphora-agent-install", 8,
                              ("--constraints", AGENT_CONSTRAINTS)),
    # In finalise.d the image's partitions are mapped and mounted.
    "finalise.d": Stop("finalise.d/", 0),
}
CASES = [(phase, signum) for phase in STOPS for signum in (signal.SIGINT, signal.SIGTERM)]
ROWS: list[dict] = []
REPORT = ROOT / "build" / "signal-stops.json"


@pytest.fixture(scope="module")
def stop_work(tmp_path_factory, built_image) -> Path:
    """One work dir for every stopped build: each next build must get past whatever
    the stop before it left; the last test builds an image there."""
    work = tmp_path_factory.mktemp("stops") / "work"
    yield work
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(ROWS, indent=1) + "\n")


def agent_constraints(folder: Path) -> Path:
    vendored = vendored_for(DEFAULT_AGENT_VERSION)
    copy = folder / AGENT_CONSTRAINTS
    copy.write_text(vendored.read_text() + "# a copy, for the signal tests\n")
    return copy


@pytest.mark.parametrize(("phase", "signum"), CASES,
                         ids=[f"{phase}-{signal.Signals(s).name}" for phase, s in CASES])
def test_interrupted_build_stops_in_seconds_and_cleans_up(stop_work, tmp_path, phase, signum):
    """SIGTERM or Ctrl-C in each DIB phase: amp-image exits within STOP_SECONDS, with
    nothing mounted, no loop device, no process and no lock left."""
    stop = STOPS[phase]
    output = tmp_path / "x.qcow2"
    options = [str(agent_constraints(tmp_path)) if o == AGENT_CONSTRAINTS else o
               for o in stop.options]
    loops_before = loop_devices()
    proc = subprocess.Popen(
        [AMP_IMAGE, "build", "--sriov", "-o", str(output), "--work-dir", str(stop_work),
         "--verbose", *ca_bundle_args(), *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=with_default_sigint)
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 900
    for line in proc.stdout:
        seen.append(line)
        if "dib-run-parts Running /" in line and f"/{stop.marker}" in line:
            break
        assert time.monotonic() < deadline, f"{stop.marker} not reached:\n{''.join(seen[-40:])}"
    else:
        pytest.fail(f"the build ended before {stop.marker}:\n{''.join(seen[-40:])}")
    # Keep reading while the script runs, as a terminal would: a stop must not depend on it.
    drain = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
    drain.start()
    time.sleep(stop.after_s)
    assert proc.poll() is None, f"the build ended in {stop.marker}:\n{''.join(seen[-40:])}"
    assert leftovers(stop_work), "expected the build to have its chroot mounted"
    signalled = time.monotonic()
    proc.send_signal(signum)
    try:
        proc.wait(timeout=STOP_SECONDS)
    finally:
        seconds = time.monotonic() - signalled
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    drain.join(timeout=5)
    left = leftovers(stop_work) + sorted(loop_devices_left(loops_before))
    ROWS.append({"phase": phase, "signal": signal.Signals(signum).name,
                 "seconds_to_exit": round(seconds, 1), "exit": proc.returncode,
                 "leftovers": len(left), "last_line": seen[-1].strip() if seen else ""})
    assert seconds < STOP_SECONDS, f"{seconds:.1f} s to exit after the signal"
    assert proc.returncode == 130, "".join(seen[-40:])
    assert "amp-image: error: interrupted; build cleaned up" in "".join(seen[-5:])
    assert not output.exists()
    assert left == []
    assert lock_is_free(stop_work)


def test_the_next_build_in_that_work_dir_passes(stop_work, tmp_path):
    output = tmp_path / "after-stops.qcow2"
    result = subprocess.run([AMP_IMAGE, "build", "--sriov", "-o", str(output),
                             "--work-dir", str(stop_work), *ca_bundle_args()],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert output.is_file()
    assert leftovers(stop_work) == []
