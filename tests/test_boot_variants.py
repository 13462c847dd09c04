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
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AMP_IMAGE, GIT_AGENT_VERSION, ROOT, TEST_IMAGE_DIR

from amp_image.image.imagefs import mounted_image
from amp_image.image.records import read_record
from amp_image.poll import poll_until

pytestmark = [pytest.mark.image, pytest.mark.boot]

GIT_VARIANT = "vf-drivers-git-agent"
VARIANTS = {
    "iptables-no-sriov": ["--iptables", "--no-sriov", "--root-password-ssh"],
    GIT_VARIANT: ["--vf-drivers", "mlx5_core,iavf"],
    # Built with upstream's script and flags: -n (no sshd), -r PASSWORD.
    "no-sshd": ["-n"],
}
# Started together, in work dirs of their own sharing the cache; both debug images
# with a root password (AMP_ROOT_PASSWORD for one, diskimage-create.sh -r for the other).
TOGETHER = ("iptables-no-sriov", "no-sshd")
VARIANT_FLAVOR = "2,1024,3"
ROOT_PASSWORD = f"amp-test-{secrets.token_urlsafe(12)}"
VF_CHECKS = {"test_vf_drivers_recorded_for_the_running_kernel", "test_every_vf_driver_loads"}
ROOT_PASSWORD_CHECKS = {"test_root_logs_in_on_the_serial_console",
                        "test_root_password_over_ssh_as_recorded"}
# The checks that need no SSH: the agent's API, the serial console and what the host sees.
HOST_SIDE = {
    "test_console_shows_no_failed_unit", "test_sshd_as_recorded", "test_agent_info",
    "test_agent_details", "test_agent_handshake_probe_gets_an_answer",
    "test_agent_refuses_client_without_certificate",
    "test_agent_refuses_certificate_from_another_ca",
    "test_agent_certificate_names_the_amphora", "test_root_logs_in_on_the_serial_console",
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


@dataclass
class Build:
    name: str
    image: Path
    work_dir: Path | None
    proc: subprocess.Popen
    log: Path

    def wait(self) -> subprocess.CompletedProcess:
        self.proc.wait(timeout=3600)
        out = self.log.read_text(errors="replace")
        result = subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, out)
        assert result.returncode == 0, f"build {self.name} failed:\n{out[-3000:]}"
        return result


def start_build(name: str, extra: list[str], logs: Path, work_dir: Path | None = None) -> Build:
    image = TEST_IMAGE_DIR / f"variant-{name}.qcow2"
    where = ["--work-dir", str(work_dir)] if work_dir else []
    env = dict(os.environ)
    if name == "no-sshd":
        # diskimage-create.sh hands -r on in the environment; this suite's venv is the one
        # under test, already set up.
        cmd = [str(ROOT / "diskimage-create.sh"), *VARIANTS[name], "-r", ROOT_PASSWORD,
               *(["-w", str(work_dir)] if work_dir else []), "-o", str(image)]
        env.update(AMP_VENV=str(Path(sys.executable).parent.parent), AMP_IMAGE_SKIP_SETUP="1")
    else:
        cmd = [AMP_IMAGE, "build", "-o", str(image), *where, *VARIANTS[name], *extra]
        if name in TOGETHER:
            env["AMP_ROOT_PASSWORD"] = ROOT_PASSWORD
    log = logs / f"build-{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    return Build(name, image, work_dir, proc, log)


def check_image(name: str, build: subprocess.CompletedProcess, image: Path,
               workdir: Path) -> Variant:
    report = workdir / "report.json"
    # Two vCPUs: these boots prove what each variant's image holds; the seed's flavor
    # (1 vCPU) is the default build's, in the booted checks and the conformance run.
    test = subprocess.run([AMP_IMAGE, "test", str(image), "--report", str(report),
                           "--flavor", VARIANT_FLAVOR],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=3600, env={**os.environ, "AMP_ROOT_PASSWORD": ROOT_PASSWORD})
    assert report.is_file(), f"amp-image test {name} wrote no report:\n{test.stdout[-4000:]}"
    return Variant(name, image, test, json.loads(report.read_text()), build)


def lock_held_by(work_dir: Path, pid: int) -> bool:
    lock = work_dir / ".amp-image.lock"
    return lock.exists() and lock.read_text().strip() == str(pid)


@dataclass
class Together:
    """Two real builds started together, and a third refused on one's work dir."""

    builds: dict[str, subprocess.CompletedProcess]
    sizes: dict[str, int]
    refused: subprocess.CompletedProcess
    holder_pid: int
    refused_output: Path


def build_together(tmp_path_factory) -> tuple[Together, dict[str, Path]]:
    logs = tmp_path_factory.mktemp("together")
    started = [start_build(n, [], logs, tmp_path_factory.mktemp(f"work-{n}")) for n in TOGETHER]
    first = started[0]
    try:
        poll_until(lambda: lock_held_by(first.work_dir, first.proc.pid)
                   or first.proc.poll() is not None, timeout=120, interval=0.5)
        # Were the lock not honoured, this build would stop at once anyway: its only
        # element does not exist.
        refused_output = logs / "refused.qcow2"
        refused = subprocess.run(
            [AMP_IMAGE, "build", "--no-wait", "--work-dir", str(first.work_dir), "-o",
             str(refused_output), "--replace-elements", "amp-image-no-such-element"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        builds = {b.name: b.wait() for b in started}
    finally:
        for b in started:
            if b.proc.poll() is None:
                b.proc.terminate()
                b.proc.wait(timeout=300)
    sizes = {b.name: b.image.stat().st_size for b in started}
    images = {b.name: b.image for b in started}
    return Together(builds, sizes, refused, first.proc.pid, refused_output), images


@pytest.fixture(scope="session")
def variants(request, tmp_path_factory) -> Callable[[str], Variant]:
    """Each variant built and tested once, whichever test asks first (the two in
    TOGETHER are built at the same time)."""
    done: dict[str, Variant] = {}

    def get(name: str) -> Variant:
        if name in done:
            return done[name]
        if name in TOGETHER:
            together, images = build_together(tmp_path_factory)
            request.config.stash[TOGETHER_KEY] = together
            for n in TOGETHER:
                done[n] = check_image(n, together.builds[n], images[n],
                                     tmp_path_factory.mktemp(n))
        else:
            repo, _ = request.getfixturevalue("octavia_git_repo")
            extra = ["--agent-source", f"git+file://{repo}@{GIT_AGENT_VERSION}"]
            build = start_build(name, extra, tmp_path_factory.mktemp(name))
            done[name] = check_image(name, build.wait(), build.image,
                                    tmp_path_factory.mktemp(name))
        return done[name]
    return get


@pytest.fixture(scope="session")
def together(request, variants) -> Together:
    variants(TOGETHER[0])
    return request.config.stash[TOGETHER_KEY]


TOGETHER_KEY = pytest.StashKey[Together]()


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
        assert (record.root_password, record.root_password_ssh) == (True, True)
        assert passed >= ROOT_PASSWORD_CHECKS
        assert skipped == VF_CHECKS | {"test_no_root_password"}, checks
        assert all("vf-drivers" in checks[n]["reason"] for n in VF_CHECKS), checks
        assert "root-password" in checks["test_no_root_password"]["reason"]
    elif variant.name == GIT_VARIANT:
        assert set(record.vf_drivers) == {"mlx5_core", "iavf"}
        assert (record.firewall, record.sshd) == ("nftables", "present")
        assert not record.root_password
        assert passed >= VF_CHECKS | {"test_no_root_password"}
        assert skipped == ROOT_PASSWORD_CHECKS, checks
    else:
        assert record.sshd == "absent"
        assert (record.root_password, record.root_password_ssh) == (True, False)
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


def test_two_builds_started_together(together):
    """Two real builds in work dirs of their own, started together: both succeed; one
    gets the package cache and the other does without, to an image of the same size
    (its downloaded packages are cleaned before the free space is zeroed); a third
    build on the first's work dir is refused at once, naming its PID."""
    said = [b.stdout for b in together.builds.values()]
    assert sum("is in use by amp-image PID" in out for out in said) == 1, said
    small, large = sorted(together.sizes.values())
    assert (large - small) / large < 0.10, together.sizes
    refused = together.refused
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr.splitlines()[-1].endswith(
        f"is in use by amp-image PID {together.holder_pid}; wait for it, or use another "
        "--work-dir"), refused.stderr
    assert not together.refused_output.exists()


def _files_holding(secret: bytes, top: Path) -> list[str]:
    """The files at or under top whose bytes hold secret."""
    found = []
    for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
        if path.is_file() and not path.is_symlink():
            try:
                if secret in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("name", TOGETHER)
def test_root_password_is_nowhere_in_plaintext(variants, name):
    """The password a debug image was built with: not in the build's output or log, not
    in DIB's manifests beside the image, not in amp-image test's output, and nowhere in
    the image, whose /etc/shadow holds only its SHA-512 crypt hash."""
    variant = variants(name)
    secret = ROOT_PASSWORD.encode()
    outputs = {"build output": variant.build.stdout, "test output": variant.output(),
               "test report": json.dumps(variant.report)}
    assert [where for where, text in outputs.items() if ROOT_PASSWORD in text] == []
    # IMAGE.log links the build's own log (IMAGE.<UTC time>.log): the file is read.
    beside = [variant.image.with_name(variant.image.name + ".log").resolve(),
              variant.image.with_name(variant.image.stem + ".d")]
    assert all(p.exists() for p in beside), beside
    assert [f for p in beside for f in _files_holding(secret, p)] == []
    with mounted_image(variant.image) as root:
        shadow = (root / "etc/shadow").read_text()
        assert shadow.startswith("root:$6$"), shadow.splitlines()[0][:12]
        assert _files_holding(secret, root) == []
