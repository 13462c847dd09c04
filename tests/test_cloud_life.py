"""The test cloud's own life (scripts/testcloud): a killed `up` is cleaned by `down`,
and a SIGTERM stops `up` with everything it started.  Each runs a cloud of its own in a
temporary folder (sharing the session cloud's venvs), stopped while it starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cloud_client import ROOT, CloudDir, RealCloud, cloud_life

pytestmark = pytest.mark.cloud


def start_up(test_cloud: RealCloud, root: Path) -> subprocess.Popen:
    """`scripts/test-cloud up` (without set-up) in root, once MariaDB and RabbitMQ run
    and Keystone is being set up."""
    root.mkdir()
    (root / "venvs").symlink_to(test_cloud.where.venvs)
    env = {**os.environ, "AMP_TEST_CLOUD_DIR": str(root), "PYTHONPATH": str(ROOT / "scripts")}
    up = subprocess.Popen([sys.executable, "-m", "testcloud", "up"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True)
    for line in up.stdout:
        if line.rstrip().endswith("Keystone"):
            break
    else:
        pytest.fail(f"up ended before Keystone (exit {up.wait()})")
    return up


def running(where: CloudDir) -> list[int]:
    return [pid for pid in cloud_life.daemons.marked(where) if cloud_life.daemons.alive(pid)]


def test_down_after_a_killed_up_removes_everything(test_cloud, tmp_path):
    where = CloudDir(tmp_path / "cloud")
    up = start_up(test_cloud, where.root)
    os.killpg(up.pid, signal.SIGKILL)
    up.wait()
    assert len(running(where)) >= 2, "MariaDB and RabbitMQ should have been running"
    stopped = cloud_life.down(where)
    assert stopped and running(where) == []
    assert not where.run.exists()
    assert (where.root / "venvs").is_symlink()  # the venvs stay


def test_sigterm_stops_up_and_everything_it_started(test_cloud, tmp_path):
    where = CloudDir(tmp_path / "cloud")
    up = start_up(test_cloud, where.root)
    assert running(where)
    started = time.monotonic()
    up.send_signal(signal.SIGTERM)
    assert up.wait(timeout=60) == 143
    seconds = time.monotonic() - started
    assert running(where) == [], "a process of the stopped cloud is still running"
    assert not where.run.exists()
    print(f"up stopped in {seconds:.1f} s")
