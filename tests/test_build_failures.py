"""Real builds that fail or are interrupted leave nothing behind.

These run disk-image-create for real (warm caches from the suite's main build
make them quick): one fails inside the chroot on a VF driver the kernel lacks,
one is interrupted with Ctrl-C while the image's partitions are mapped and mounted.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from conftest import AMP_IMAGE
from helpers import leftovers

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
    # Only the build log stays beside where the image would have been.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work", "x.qcow2.log"]
    assert leftovers(work) == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_build_cleans_up(built_image, tmp_path, stop):
    work, output = tmp_path / "work", tmp_path / "x.qcow2"
    proc = subprocess.Popen(
        [AMP_IMAGE, "build", "--sriov", "-o", str(output), "--work-dir", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        # In finalise.d the image's partitions are mapped and mounted.
        if "finalise.d/" in line or time.monotonic() > deadline:
            break
    assert leftovers(work), "expected the build to have its file system mounted"
    proc.send_signal(stop)
    proc.stdout.read()
    assert proc.wait(timeout=300) != 0
    assert not output.exists()
    assert leftovers(work) == []
