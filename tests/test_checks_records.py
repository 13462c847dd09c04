"""The booted checks follow what the image records about itself: the record reader,
and the not-applicable path for an image without sshd, with a stand-in for the VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from amp_image.image.records import VfDriver, parse_record, read_image_record

CHECKS = Path(__file__).resolve().parent.parent / "amp_image" / "verify" / "checks"


def _image_with_record(tmp_path: Path, **files: str) -> Path:
    image = tmp_path / "amp.qcow2"
    image.write_bytes(b"not read: the record beside it is")
    record = tmp_path / "amp.d" / "dib-manifests" / "amp-image"
    record.mkdir(parents=True)
    for name, text in files.items():
        (record / name.replace("_", "-")).write_text(text)
    return image


def test_record_of_a_default_image(tmp_path):
    image = _image_with_record(
        tmp_path, firewall="AMP_FIREWALL=nftables\n", sshd="AMP_SSHD=present\n",
        amphora_agent="AMPHORA_AGENT_VERSION=19.0.0\nAMPHORA_AGENT_SOURCE_TYPE=pypi\n",
        vf_drivers="iavf 6.12.1 /lib/modules/6.12.1/iavf.ko\n"
                   "iavf 6.12.2 /lib/modules/6.12.2/iavf.ko\n"
                   "mlx5_core 6.12.2 /lib/modules/6.12.2/mlx5_core.ko.xz\n")
    record = read_image_record(image)
    assert record.firewall == "nftables"
    assert record.has_sshd and record.sshd == "present"
    assert record.sriov
    assert record.vf_drivers == ["iavf", "mlx5_core"]
    assert record.vf_driver_files[2] == VfDriver("mlx5_core", "6.12.2",
                                                 "/lib/modules/6.12.2/mlx5_core.ko.xz")
    assert record.agent["AMPHORA_AGENT_VERSION"] == "19.0.0"
    assert not record.root_password and not record.root_password_ssh


def test_record_of_an_iptables_no_sriov_no_sshd_image(tmp_path):
    record = read_image_record(_image_with_record(
        tmp_path, firewall="AMP_FIREWALL=iptables\n", sshd="AMP_SSHD=absent\n"))
    assert record.firewall == "iptables"
    assert not record.has_sshd
    assert not record.sriov and record.vf_drivers == []


@pytest.mark.parametrize("ssh", ["no", "yes"])
def test_record_of_a_debug_image_with_a_root_password(tmp_path, ssh):
    record = read_image_record(_image_with_record(
        tmp_path, root_password=f"AMP_ROOT_PASSWORD=set\nAMP_ROOT_PASSWORD_SSH={ssh}\n"))
    assert record.root_password
    assert record.root_password_ssh is (ssh == "yes")


def test_an_image_older_than_the_sshd_record_has_sshd():
    assert parse_record(lambda name: None).has_sshd


# A stand-in for booted_amphora: no VM; the SSH port answers (or not) as told.
FAKE_BOOT = textwrap.dedent("""\
    import contextlib, os
    from types import SimpleNamespace
    import amp_image.verify.checks.plugin as plugin
    import amp_image.verify.checks.test_amphora as checks
    from amp_image.verify.boottest import BootReport

    checks.NO_SSHD_WATCH_S = 0

    @contextlib.contextmanager
    def booted_amphora(image, **kw):
        banner = os.environ["FAKE_SSH_BANNER"] == "yes"
        console = os.environ.get("FAKE_SERIAL", "")
        machine = SimpleNamespace(ssh_banner=lambda: banner, serial_text=lambda: console)
        yield SimpleNamespace(report=BootReport(image, "amp-1", ssh=kw["ssh"]),
                              machine=machine, amphora_id="amp-1")

    plugin.booted_amphora = booted_amphora
    """)


def _run_checks(tmp_path: Path, image: Path, banner: bool, keyword: str,
                serial: str = "") -> dict[str, tuple]:
    (tmp_path / "fakeboot.py").write_text(FAKE_BOOT)
    junit = tmp_path / "junit.xml"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "FAKE_SSH_BANNER": "yes" if banner else "no",
           "FAKE_SERIAL": serial}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(CHECKS / "test_amphora.py"), "-p", "fakeboot",
         "-p", "amp_image.verify.checks.plugin", "-p", "no:cacheprovider", "--rootdir", str(CHECKS),
         "--amp-image", str(image), "-k", keyword, "-ra", f"--junitxml={junit}",
         "--amp-report", str(tmp_path / "report.json")],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kids = {child.tag: child for child in case}
        for tag in ("skipped", "failure", "error"):
            if tag in kids:
                outcomes[case.get("name")] = (tag, kids[tag].get("message", ""))
                break
        else:
            outcomes[case.get("name")] = ("passed", "")
    return outcomes | {"__stdout__": (result.returncode, result.stdout)}


SSH_CHECKS = "package_installed or no_failed_units or firewall_as_recorded or vf_drivers"


def test_no_sshd_image_ssh_checks_are_not_applicable_not_passed(tmp_path):
    image = _image_with_record(tmp_path, firewall="AMP_FIREWALL=iptables\n",
                               sshd="AMP_SSHD=absent\n")
    outcomes = _run_checks(tmp_path, image, banner=False,
                           keyword=f"{SSH_CHECKS} or sshd_as_recorded or console_shows")
    rc, stdout = outcomes.pop("__stdout__")
    assert outcomes.pop("test_sshd_as_recorded") == ("passed", "")
    assert outcomes.pop("test_console_shows_no_failed_unit") == ("passed", "")
    report = json.loads((tmp_path / "report.json").read_text())["checks"]
    assert report.pop("test_sshd_as_recorded") == {"outcome": "passed"}
    assert report.pop("test_console_shows_no_failed_unit") == {"outcome": "passed"}
    assert set(report) == set(outcomes)
    assert {c["outcome"] for c in report.values()} == {"skipped"}
    assert all(c["reason"].startswith("not applicable: /etc/amp-image/sshd records "
                                      "AMP_SSHD=absent") for c in report.values()), report
    assert len(outcomes) > 5, stdout
    for name, (outcome, message) in outcomes.items():
        assert outcome == "skipped", (name, outcome, message)
        assert "/etc/amp-image/sshd records AMP_SSHD=absent" in message, (name, message)
    assert rc == 0, stdout
    assert f"2 passed, {len(outcomes)} skipped" in stdout
    assert f"not applicable    {len(outcomes)} checks skipped (not passed)" in stdout


def test_no_sshd_image_that_answers_ssh_fails(tmp_path):
    image = _image_with_record(tmp_path, firewall="AMP_FIREWALL=nftables\n",
                               sshd="AMP_SSHD=absent\n")
    outcomes = _run_checks(tmp_path, image, banner=True, keyword="sshd_as_recorded")
    rc, stdout = outcomes.pop("__stdout__")
    assert outcomes["test_sshd_as_recorded"][0] == "failure", stdout
    assert rc == 1


@pytest.mark.parametrize("sshd", ["AMP_SSHD=present\n", None])
def test_image_with_sshd_that_does_not_answer_ssh_fails(tmp_path, sshd):
    files = {"firewall": "AMP_FIREWALL=nftables\n"} | ({"sshd": sshd} if sshd else {})
    image = _image_with_record(tmp_path, **files)
    outcomes = _run_checks(tmp_path, image, banner=False, keyword="sshd_as_recorded")
    rc, stdout = outcomes.pop("__stdout__")
    assert outcomes["test_sshd_as_recorded"][0] == "failure", stdout


def test_a_unit_failing_at_boot_fails_the_console_check(tmp_path):
    image = _image_with_record(tmp_path, sshd="AMP_SSHD=absent\n")
    console = ("Starting \x1b[0;1;39mssh-keygen.service\x1b[0m...\n"
               "[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mssh-keygen.service"
               "\x1b[0m - OpenSSH Server Key Generation.\n")
    outcomes = _run_checks(tmp_path, image, banner=False, keyword="console_shows",
                           serial=console)
    rc, stdout = outcomes.pop("__stdout__")
    outcome, message = outcomes["test_console_shows_no_failed_unit"]
    assert outcome == "failure", stdout
    assert "[FAILED] Failed to start ssh-keygen.service" in message
