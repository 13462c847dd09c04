"""SIGTERM unwinds `amp-image test` and the bench like Ctrl-C, without a real VM or build.

A stand-in for qemu-system-x86_64 (first on PATH) and for `amp-image build`
waits to be stopped and notes how it was: SIGTERM from the harness's cleanup,
or the SIGKILL that PR_SET_PDEATHSIG sends when its parent just dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import AMP_IMAGE, ROOT
from helpers import STOP_SECONDS

STAND_IN = textwrap.dedent(f"""\
    #!{sys.executable}
    import os, signal, sys, time
    from pathlib import Path
    state = Path(os.environ["AMP_STAND_IN_STATE"])
    def stopped(signum, frame):
        (state / "signals").open("a").write(f"{{signum}}\\n")
        time.sleep(0.5)        # a real cleanup takes a moment
        (state / "cleaned").write_text("yes")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    (state / "pid").write_text(str(os.getpid()))
    time.sleep(600)
    """)


def _stand_in(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STAND_IN)
    path.chmod(0o755)
    return path


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {_output(proc)}"
        assert time.monotonic() < deadline, f"{path.name} never appeared: {_output(proc)}"
        time.sleep(0.2)


def _output(proc: subprocess.Popen) -> str:
    return Path(proc.args_log).read_text(errors="replace")[-2000:]  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen, state: Path) -> None:
    """After the test, pass or fail: nothing it started keeps running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    pid_file = state / "pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    proc.args_log = str(log)  # type: ignore[attr-defined]
    return proc


def _env(tmp_path: Path, bin_dir: Path, state: Path) -> dict:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    state.mkdir()
    # No AMP_IMAGE_EVENTS: a stand-in is no VM and no build for the test budget.
    host = {k: v for k, v in os.environ.items() if k != "AMP_IMAGE_EVENTS"}
    return {**host, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "TMPDIR": str(tmp), "AMP_STAND_IN_STATE": str(state)}


def _fake_image(tmp_path: Path) -> Path:
    """A tiny qcow2 with the record DIB leaves beside a built image (NAME.d)."""
    image = tmp_path / "fake.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    record = tmp_path / "fake.d" / "dib-manifests" / "amp-image"
    record.mkdir(parents=True)
    (record / "firewall").write_text("AMP_FIREWALL=nftables\n")
    (record / "sshd").write_text("AMP_SSHD=present\n")
    (record / "amphora-agent").write_text("AMPHORA_AGENT_VERSION=19.0.0\n")
    return image


def test_amp_image_test_cleans_up_on_sigterm(tmp_path):
    """SIGTERM while the harness waits for the VM's kernel: the VM is stopped by the
    harness (not by PDEATHSIG), and no work dir, PKI or overlay is left behind."""
    bin_dir = tmp_path / "bin"
    _stand_in(bin_dir / "qemu-system-x86_64")
    state = tmp_path / "state"
    env = _env(tmp_path, bin_dir, state)
    image = _fake_image(tmp_path)
    proc = _start([AMP_IMAGE, "test", "--accel", "tcg", "--boot", "bootloader", str(image)],
                  env, tmp_path / "amp-image.log")
    try:
        _wait_for(state / "pid", proc)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_SECONDS)
    finally:
        leftover = _alive(int((state / "pid").read_text())) if (state / "pid").exists() else False
        _stop(proc, state)
    assert proc.returncode != 0, _output(proc)
    assert not leftover, "the stand-in QEMU outlived amp-image test"
    assert (state / "signals").read_text().split() == [str(int(signal.SIGTERM))], \
        "QEMU was not stopped by the harness's cleanup"
    assert list((tmp_path / "tmp").iterdir()) == [], "amp-image test left files in TMPDIR"


def test_bench_stops_its_build_on_sigterm(tmp_path):
    """SIGTERM to the bench during a build: the build gets one SIGTERM and finishes its
    cleanup before the bench exits."""
    fake_build = _stand_in(tmp_path / "bin" / "amp-image")
    state = tmp_path / "state"
    env = _env(tmp_path, tmp_path / "bin", state)
    # The bench is a tool of the project (scripts/bench.py), loaded by its path.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bench as b; "
            "b.AMP_IMAGE = sys.argv[2]; sys.exit(b.cli(sys.argv[3:]))")
    proc = _start([sys.executable, "-c", code, str(ROOT / "scripts"), str(fake_build),
                   "--dir", str(tmp_path / "bench"), "--skip-cold"],
                  env, tmp_path / "bench.log")
    try:
        _wait_for(state / "pid", proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_SECONDS)
    finally:
        leftover = _alive(int((state / "pid").read_text())) if (state / "pid").exists() else False
        _stop(proc, state)
    assert proc.returncode == 130, _output(proc)
    assert "interrupted" in _output(proc)
    assert not leftover, "the build outlived the bench"
    assert (state / "signals").read_text().split() == [str(int(signal.SIGTERM))]
    assert (state / "cleaned").read_text() == "yes", "the bench did not wait for the build"
