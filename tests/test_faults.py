"""Fault injection, for real: each fault gives a one-line error naming the cause and the
fix, a non-zero exit, no image at the output path, no mount, loop device, process or
lock left behind, and the build right after it in the same work dir passes.

The builds share one work dir, a tmpfs of its own (so that it can be made full), and
run in order:

* the faults found before the build starts (preflight: the Debian mirror, the package
  index behind a dead proxy, an agent release PyPI lacks, a constraints file that is
  not one, a git source or ref that does not exist; a missing or read-only output
  folder) and images that are not images (``test``, ``publish``);
* faults inside the build: constraints pip cannot meet (the agent's install hook),
  the work dir full;
* each of the build faults twice, from scratch (--no-cache) and after the layer cache
  restored the default build's layers, with the cause's words asserted each time;
* ``kill -9`` of the whole build (its process group, DIB and chroot included) in each
  DIB phase: root.d, install.d, finalise.d and the qcow2 conversion.  Each next build
  is the rebuild after the kill before it: it must release what the killed one left
  and get further than where that one died;
* the last build completes.

Each fault's row (error line, seconds to fail, leftovers, rebuild) goes to
build/faults.json, for the record.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, ROOT, ca_bundle_args
from helpers import leftovers, lock_is_free, loop_devices, loop_devices_left

from amp_image.builder.constraints import DEFAULT_AGENT_VERSION, vendored_for

pytestmark = pytest.mark.image

REPORT = ROOT / "build" / "faults.json"
ROWS: list[dict] = []
# DIB's output under --verbose, where each phase's first script (or the conversion)
# starts; not the "Copying hooks .../install.d/..." lines before the build.
PHASES = {"root.d": "dib-run-parts Running /", "install.d": "dib-run-parts Running /",
          "finalise.d": "dib-run-parts Running /",
          "conversion": "Converting image using qemu-img convert"}


def entered(phase: str, line: str) -> bool:
    return PHASES[phase] in line and (phase == "conversion" or f"/{phase}/" in line)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work dir on a tmpfs of its own."""
    work = tmp_path_factory.mktemp("faults") / "work"
    work.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g,mode=0755", "amp-faults",
                    str(work)], check=True)
    yield work
    subprocess.run(["umount", "--lazy", str(work)], check=False)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(ROWS, indent=1) + "\n")


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults-out") / "amp.qcow2"


def left_in(work: Path) -> list[str]:
    """leftovers() but the work dir's own tmpfs."""
    return [line for line in leftovers(work) if line.split()[4:5] != [str(work)]]


def build(work: Path, output: Path, *args: str, env: dict | None = None,
          cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([AMP_IMAGE, "build", "--work-dir", str(work), "-o", str(output),
                             *ca_bundle_args(), *args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=1800,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    return result, time.monotonic() - start


def assert_failed_cleanly(fault: str, result: subprocess.CompletedProcess, seconds: float,
                          work: Path, output: Path, *words: str, code: int = 1,
                          mode: str = "") -> None:
    """One error line naming the cause and the fix, the exit code, nothing left."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("amp-image: error: "), result.stderr
    assert all(w in lines[0] for w in words), (words, lines[0])
    left = left_in(work)
    ROWS.append({"fault": fault, "mode": mode, "layer": layer_line(result.stdout),
                 "error": lines[0], "seconds": round(seconds, 1),
                 "leftovers": len(left), "rebuild": "see the last build"})
    assert not output.exists(), f"{output} was written"
    assert left == [] and lock_is_free(work), left


def layer_line(stdout: str) -> str:
    """What the layer cache did, as the build said it ("" if it got no further)."""
    return next((line for line in stdout.splitlines() if line.startswith("layer cache:")), "")


# Each fault twice: a build from scratch, and one where the layer cache restores the
# default build's layers (the usual case on a CI machine or an operator's build host,
# where the layer cache's own "<element>: ..." notes once masked the cause).
MODES = {"from scratch": ("--no-cache",), "after a restored layer": ()}
both_modes = pytest.mark.parametrize("mode", list(MODES))


@both_modes
def test_debian_mirror_unreachable(work, output, mode):
    mirror = f"http://127.0.0.1:{closed_port()}/debian"
    result, seconds = build(work, output, *MODES[mode], "--mirror", mirror)
    assert_failed_cleanly("Debian mirror unreachable", result, seconds, work, output,
                          "the Debian mirror is unreachable", mirror, "--mirror", mode=mode)


@both_modes
def test_package_index_behind_a_dead_proxy(work, output, mode):
    proxy = f"http://127.0.0.1:{closed_port()}"
    result, seconds = build(work, output, *MODES[mode],
                            env={"https_proxy": proxy, "HTTPS_PROXY": proxy})
    assert_failed_cleanly("package index unreachable (dead https_proxy)", result, seconds,
                          work, output, "the Python package index is unreachable", proxy,
                          "fix or unset https_proxy", mode=mode)


@both_modes
def test_agent_release_that_does_not_exist(work, output, mode):
    result, seconds = build(work, output, *MODES[mode], "--agent-version", "19.0.77")
    assert_failed_cleanly("agent version not on PyPI", result, seconds, work, output,
                          "octavia 19.0.77 is not on PyPI", "--agent-version", mode=mode)


@both_modes
def test_constraints_file_that_is_not_one(work, output, mode):
    result, seconds = build(work, output, *MODES[mode], "--constraints", "/etc/passwd")
    assert_failed_cleanly("constraints file that does not parse", result, seconds, work,
                          output, "--constraints /etc/passwd", "root:x:0:0", mode=mode)


@both_modes
def test_constraints_that_pip_cannot_meet(work, output, mode, tmp_path):
    """Constraints that parse but pin a release that does not exist: pip fails in the
    agent's install hook, inside the build.  After a restored layer, the packages layer
    is restored (the constraints feed only the agent's) and the hooks it holds are
    skipped with notes that once were taken for the cause."""
    constraints = tmp_path / "constraints.txt"
    pins = vendored_for(DEFAULT_AGENT_VERSION).read_text().splitlines()
    constraints.write_text("\n".join(
        "pyroute2===0.0.1" if line.startswith("pyroute2===") else line for line in pins)
        + "\n")
    result, seconds = build(work, output, *MODES[mode], "--constraints", str(constraints))
    if mode == "after a restored layer":
        assert "restored 'packages'" in layer_line(result.stdout), result.stdout[-3000:]
    assert_failed_cleanly("constraints pip cannot meet (in the build)", result, seconds,
                          work, output, "install.d/75-amphora-agent-install failed: ERROR",
                          "pyroute2", mode=mode)


@both_modes
def test_git_source_that_does_not_exist(work, output, mode, tmp_path):
    missing = tmp_path / "no-such-repo"
    result, seconds = build(work, output, *MODES[mode], "--agent-source",
                            f"git+file://{missing}")
    assert_failed_cleanly("git source that does not exist", result, seconds, work, output,
                          "cannot read git repository", str(missing), mode=mode)


@both_modes
def test_git_ref_that_does_not_exist(work, output, mode, octavia_git_repo):
    repo, _ = octavia_git_repo
    result, seconds = build(work, output, *MODES[mode], "--agent-source",
                            f"git+file://{repo}@no-such-tag")
    assert_failed_cleanly("git ref that does not exist", result, seconds, work, output,
                          "has no branch or tag 'no-such-tag'", mode=mode)


def test_missing_output_folder(work, tmp_path):
    missing = tmp_path / "no-such-folder" / "amp.qcow2"
    result, seconds = build(work, missing)
    assert_failed_cleanly("missing output folder", result, seconds, work, missing,
                          "does not exist", "create it or choose another -o")
    assert not missing.parent.exists()


def test_read_only_output_folder(work, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "amp-ro", str(folder)],
                   check=True)
    try:
        result, seconds = build(work, folder / "amp.qcow2")
        assert_failed_cleanly("read-only output folder", result, seconds, work,
                              folder / "amp.qcow2", f"cannot write to {folder}",
                              "choose another -o")
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("verb", ["test", "publish"])
def test_a_file_that_is_not_an_image(work, tmp_path, verb):
    fake = tmp_path / "amphora.qcow2"
    fake.write_text("not an image\n")
    dest = tmp_path / "published"
    args = [str(fake)] + (["--dest", str(dest)] if verb == "publish" else [])
    start = time.monotonic()
    result = subprocess.run([AMP_IMAGE, verb, *args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300)
    seconds = time.monotonic() - start
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert lines and lines[-1] == (f"amp-image: error: {fake} is not a disk image amp-image "
                                   "can read (no file system in it); pass a qcow2 or raw "
                                   "image that amp-image build made"), result.stderr
    assert len(lines) == 1, result.stderr
    assert not dest.exists()
    assert fake.read_text() == "not an image\n"
    assert leftovers(tmp_path) == []
    ROWS.append({"fault": f"not an image ({verb})", "error": lines[-1],
                 "seconds": round(seconds, 1), "leftovers": 0, "rebuild": "n/a"})


@both_modes
def test_work_dir_full(work, output, mode):
    """The chroot in the work dir (--no-tmpfs), the work dir made 64 MiB: debootstrap's
    tarball, or the restored layer, no longer fits."""
    subprocess.run(["mount", "-o", "remount,size=64m", str(work)], check=True)
    try:
        result, seconds = build(work, output, *MODES[mode], "--no-tmpfs")
    finally:
        subprocess.run(["mount", "-o", "remount,size=8g", str(work)], check=True)
    assert_failed_cleanly("work dir full", result, seconds, work, output,
                          "no space left on device", "--work-dir", mode=mode)


def kill_in(phase: str, work: Path, output: Path) -> dict:
    """Start a build, kill -9 its whole process group when DIB enters phase."""
    start = time.monotonic()
    proc = subprocess.Popen([AMP_IMAGE, "build", "--verbose", "--work-dir", str(work), "-o",
                             str(output), *ca_bundle_args()], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    said: list[str] = []
    for line in proc.stdout:
        said.append(line)
        if entered(phase, line):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.stdout.read()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(said[-40:])
    return {"phase": phase, "seconds": time.monotonic() - start, "output": "".join(said),
            "left": left_in(work)}


def test_kill_9_in_each_phase_then_rebuild(work, output):
    """Each build is the rebuild after the kill before it; the last one completes.  (The
    truncated debootstrap tarball is in test_layer_builds.py, which bootstraps anyway.)"""
    loops_before = loop_devices()
    killed: list[dict] = []
    for phase in PHASES:
        kill = kill_in(phase, work, output)
        if killed:
            # The rebuild released what the build killed before it had left.
            earlier = killed[-1]["left"]
            assert not set(earlier) & set(kill["left"]), earlier
            if earlier:
                assert "cleanup of an earlier build" in kill["output"], kill["output"][-3000:]
        assert not output.exists(), f"a partial image at {output} after kill -9 in {phase}"
        assert lock_is_free(work)
        killed.append(kill)

    result, seconds = build(work, output)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert output.is_file()
    assert left_in(work) == [] and lock_is_free(work)
    assert loop_devices_left(loops_before) == set(), "loop devices left after the rebuilds"
    for kill in killed:
        ROWS.append({"fault": f"kill -9 in {kill['phase']}", "error": "(killed: no message)",
                     "seconds": round(kill["seconds"], 1),
                     "leftovers": f"{len(kill['left'])} at the kill, 0 after the rebuild",
                     "rebuild": "passed (the next build got further)"})
    ROWS.append({"fault": "rebuild after the last kill", "error": "(none: it passed)",
                 "seconds": round(seconds, 1), "leftovers": 0, "rebuild": "passed"})
