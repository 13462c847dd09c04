"""Images other than the default, built and booted: `amp-image test` checks what each
one records about itself (/etc/amp-image) instead of assuming the default build.

One real build and one boot per variant (slow).  The VF-driver variant also takes its
agent from a git repository (--agent-source git+file://...@TAG), so the git source
path is built, booted and checked in the same build.  Each `amp-image test` runs as a
subprocess, its VM gone when it ends, so these run before the suite's own
long-lived boot VM (see conftest.py).  The per-check outcomes come from the
report that `amp-image test --report` writes: a check skipped as not applicable
is never taken for a pass.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, GIT_AGENT_VERSION, TEST_IMAGE_DIR

from amp_image.image.imagefs import mounted_image
from amp_image.image.records import read_record

pytestmark = [pytest.mark.image, pytest.mark.boot]

GIT_VARIANT = "vf-drivers-git-agent"
VARIANTS = {
    "iptables-no-sriov": ["--iptables", "--no-sriov"],
    GIT_VARIANT: ["--vf-drivers", "mlx5_core,iavf"],
    "no-sshd": ["--no-sshd"],
}
VF_CHECKS = {"test_vf_drivers_recorded_for_the_running_kernel", "test_every_vf_driver_loads"}
# The checks that need no SSH: the agent's API and what the host sees.
HOST_SIDE = {
    "test_console_shows_no_failed_unit", "test_sshd_as_recorded", "test_agent_info",
    "test_agent_details", "test_agent_handshake_probe_gets_an_answer",
    "test_agent_refuses_client_without_certificate",
    "test_agent_refuses_certificate_from_another_ca",
    "test_agent_certificate_names_the_amphora",
}


class Variant:
    def __init__(self, name: str, image: Path, test: subprocess.CompletedProcess,
                 report: dict, build: subprocess.CompletedProcess) -> None:
        self.name, self.image, self.test, self.report = name, image, test, report
        self.build = build
        self.record = read_record(image.with_name(image.stem + ".d"))
        self.checks: dict[str, dict] = report.get("checks", {})

    def names(self, outcome: str) -> set[str]:
        return {n for n, c in self.checks.items() if c["outcome"] == outcome}

    def output(self) -> str:
        return (self.test.stdout + self.test.stderr)[-6000:]


def build_and_test(name: str, extra: list[str], workdir: Path) -> Variant:
    image = TEST_IMAGE_DIR / f"variant-{name}.qcow2"
    build = subprocess.run([AMP_IMAGE, "build", "-o", str(image), *VARIANTS[name], *extra],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=3600)
    assert build.returncode == 0, f"build {name} failed:\n{build.stderr[-3000:]}"
    report = workdir / "report.json"
    test = subprocess.run([AMP_IMAGE, "test", str(image), "--report", str(report)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=3600)
    assert report.is_file(), f"amp-image test {name} wrote no report:\n{test.stdout[-4000:]}"
    return Variant(name, image, test, json.loads(report.read_text()), build)


@pytest.fixture(scope="session")
def variants(request, tmp_path_factory) -> Callable[[str], Variant]:
    """Each variant built and tested once, whichever test asks first."""
    done: dict[str, Variant] = {}

    def get(name: str) -> Variant:
        if name not in done:
            extra = []
            if name == GIT_VARIANT:
                repo, _ = request.getfixturevalue("octavia_git_repo")
                extra = ["--agent-source", f"git+file://{repo}@{GIT_AGENT_VERSION}"]
            done[name] = build_and_test(name, extra, tmp_path_factory.mktemp(name))
        return done[name]
    return get


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, variants) -> Variant:
    return variants(request.param)


def test_amp_image_test_passes(variant):
    failed = {n: c for n, c in variant.checks.items() if c["outcome"] != "passed"
              and c["outcome"] != "skipped"}
    assert not failed, f"{variant.name}: {failed}\n{variant.output()}"
    assert variant.test.returncode == 0, variant.output()
    assert len(variant.checks) > 40, variant.checks


def test_checks_follow_the_record(variant):
    record, checks = variant.record, variant.checks
    passed, skipped = variant.names("passed"), variant.names("skipped")
    if variant.name == "iptables-no-sriov":
        assert (record.firewall, record.sriov, record.sshd) == ("iptables", False, "present")
        assert {"test_firewall_as_recorded", "test_firewall_package_as_recorded",
                "test_system_running", "test_no_failed_units"} <= passed
        assert skipped == VF_CHECKS, checks
        assert all("vf-drivers" in checks[n]["reason"] for n in skipped), checks
    elif variant.name == GIT_VARIANT:
        assert set(record.vf_drivers) == {"mlx5_core", "iavf"}
        assert (record.firewall, record.sshd) == ("nftables", "present")
        assert passed >= VF_CHECKS
        assert skipped == set(), checks
    else:
        assert record.sshd == "absent"
        assert variant.report["ssh"] is False and variant.report["ssh_banner_s"] == 0
        assert passed >= HOST_SIDE, checks
        assert skipped == set(checks) - HOST_SIDE, checks
        assert all(checks[n]["reason"].startswith("not applicable: /etc/amp-image/sshd")
                   for n in skipped), checks
        assert "not applicable" in variant.test.stdout


def test_agent_from_a_git_repository(variants, octavia_git_repo, built_image):
    """--agent-source git+file://REPO@TAG: the agent built from the tag's commit, with git
    only for the build; amp-image diff against the default image names the new source."""
    git_variant = variants(GIT_VARIANT)
    _, commit = octavia_git_repo
    assert "from git" in git_variant.build.stdout
    with mounted_image(git_variant.image) as root:
        record = (root / "etc/amp-image/amphora-agent").read_text()
        site = next((root / "opt/amphora-agent-venv/lib").glob("python3*/site-packages"))
        dists = [p.name for p in site.glob("octavia-*.dist-info")]
        git_left = (root / "usr/bin/git").exists()
    assert "AMPHORA_AGENT_SOURCE_TYPE=git" in record
    assert f"AMPHORA_AGENT_GIT_REF={commit}" in record
    assert f"AMPHORA_AGENT_VERSION={GIT_AGENT_VERSION}" in record
    assert dists == [f"octavia-{GIT_AGENT_VERSION}.dist-info"]
    assert not git_left, "git (build-only for pbr) was left in the image"

    result = subprocess.run([AMP_IMAGE, "diff", str(built_image), str(git_variant.image),
                             "--json"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    diff = json.loads(result.stdout)
    assert diff["old"]["kind"] == diff["new"]["kind"] == "image"
    assert diff["agent"]["old"]["source_type"] == "pypi"
    assert diff["agent"]["new"]["source_type"] == "git"
    assert diff["agent"]["new"]["git_ref"] == commit
    assert diff["packages"]["old_count"] > 100 and diff["haproxy"]["new"]
    table = subprocess.run([AMP_IMAGE, "diff", str(built_image), str(git_variant.image)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=600)
    assert table.returncode == 0 and f"(git) @{commit[:12]}" in table.stdout
