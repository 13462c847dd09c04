"""The default --sriov image, booted in QEMU: the amphora checks and the SR-IOV scenario.

The checks are the ones `amp-image test` runs; here they run against the image
this test run built (the `amphora_image` fixture in conftest.py), in one VM
booted for the whole module by the `amphora` fixture.
"""

import subprocess

import pytest
from conftest import AMP_IMAGE

from amp_image.builder.element_defaults import default_vf_drivers
from amp_image.verify.checks.test_amphora import *  # noqa: F403  (collected as this module's tests)
from amp_image.verify.checks.test_amphora_access import *  # noqa: F403  (in this order)
from amp_image.verify.checks.test_sriov import *  # noqa: F403  (the SR-IOV scenario, after the checks)

pytestmark = pytest.mark.boot


def test_the_record_is_the_default_builds(amphora_record):
    """This suite's image is a default --sriov build: the checks that follow the record
    must all apply to it (none skipped as not applicable)."""
    assert amphora_record.sshd == "present"
    assert amphora_record.firewall == "nftables"
    assert amphora_record.vf_drivers == list(default_vf_drivers())


def test_boot_report(amphora):
    report = amphora.report
    assert report.boot_path.startswith("image bootloader"), report.notes
    assert 0 < report.ssh_banner_s < report.agent_ready_s
    assert report.accel in ("kvm", "tcg")


def test_amp_image_test_command_rejects_a_missing_image(tmp_path):
    result = subprocess.run([AMP_IMAGE, "test", str(tmp_path / "none.qcow2")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "does not exist" in result.stderr
