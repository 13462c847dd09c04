"""pytest plugin: boots the image under test once per session for the amphora checks.

Used by ``amp-image test IMAGE`` and by the project's test suite (which
builds the image first and passes it with ``--amp-image``).

The checks follow what the image records about itself in /etc/amp-image
(``amp_image.image.records``).  An image without sshd (``AMP_SSHD=absent``) boots
without SSH readiness; every check that needs SSH is then skipped as not
applicable, naming the record, and the summary counts it apart from the
passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amp_image.errors import PlanError
from amp_image.image.records import (
    RECORD_DIR,
    SSHD_RECORD,
    ImageRecord,
    parse_record,
    read_image_record,
)
from amp_image.verify.boottest import booted_amphora
from amp_image.verify.vmspec import SEED_FLAVOR, Flavor

REPORT_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amp-image")
    group.addoption("--amp-image", help="Image to boot for the amphora checks.")
    group.addoption("--amp-accel", default="auto", help="auto, kvm or tcg.")
    group.addoption("--amp-boot", default="auto", help="auto, bootloader or direct.")
    group.addoption("--amp-workdir", help="Keep VM files (serial log, PKI) here.")
    group.addoption("--amp-report", help="Write the boot report (JSON) here.")
    group.addoption("--amp-sriov", action="store_true",
                    help="Add an emulated SR-IOV NIC (igb) for the SR-IOV scenario.")
    group.addoption("--amp-flavor", default=SEED_FLAVOR.as_option(),
                    help="The VM's VCPUS,RAM_MB,DISK_GB (default: the seed's flavor).")


def flavor_option(config: pytest.Config) -> Flavor:
    try:
        return Flavor.parse(config.getoption("--amp-flavor"))
    except PlanError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT_KEY] = {}


def image_under_test(config: pytest.Config) -> Path:
    value = config.getoption("--amp-image")
    if not value:
        raise pytest.UsageError("--amp-image IMAGE is required for the amphora checks")
    return Path(value)


@pytest.fixture(scope="session")
def amphora_image(request: pytest.FixtureRequest) -> Path:
    """The image under test; a test suite may override this fixture (e.g. to build it)."""
    return image_under_test(request.config)


@pytest.fixture(scope="session")
def amphora_sriov(request: pytest.FixtureRequest) -> bool:
    """Boot with the emulated SR-IOV NIC; a test suite may override this fixture."""
    return bool(request.config.getoption("--amp-sriov"))


@pytest.fixture(scope="session")
def amphora_record(amphora_image: Path) -> ImageRecord:
    """What the image under test records about itself, read before it boots (from DIB's
    copy beside it, NAME.d, or a read-only mount of the image)."""
    return read_image_record(amphora_image)


@pytest.fixture(scope="session")
def amphora(request: pytest.FixtureRequest, amphora_image: Path, amphora_sriov: bool,
            amphora_record: ImageRecord):
    config = request.config
    workdir = config.getoption("--amp-workdir")
    with booted_amphora(amphora_image,
                        workdir=Path(workdir) if workdir else None,
                        accel=config.getoption("--amp-accel"),
                        boot=config.getoption("--amp-boot"),
                        sriov=amphora_sriov, flavor=flavor_option(config),
                        ssh=amphora_record.has_sshd) as booted:
        config.stash[REPORT_KEY]["report"] = booted.report
        yield booted


NO_SSHD = (f"not applicable: {SSHD_RECORD} records AMP_SSHD=absent (built with "
           "-n/--no-sshd), so this amphora is reached only through the agent's API")


@pytest.fixture(scope="session")
def amphora_host(amphora):
    if not amphora.report.ssh:
        pytest.skip(NO_SSHD)
    return amphora.testinfra_host()


@pytest.fixture(scope="session")
def image_record(amphora_host) -> ImageRecord:
    """The booted amphora's own record (/etc/amp-image), read over SSH."""
    def read(name: str) -> str | None:
        record = amphora_host.file(f"{RECORD_DIR}/{name}")
        return record.content_string if record.exists else None

    return parse_record(read)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Each check's outcome for the JSON report: passed, failed, or skipped with its
    reason (a skipped check is not applicable to the image, never a pass)."""
    rep = (yield).get_result()
    checks = item.config.stash[REPORT_KEY].setdefault("checks", {})
    name = item.nodeid.split("::", 1)[-1]
    if rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        checks[name] = {"outcome": "skipped", "reason": reason.removeprefix("Skipped: ")}
    elif rep.failed:
        checks[name] = {"outcome": "failed" if rep.when == "call" else f"error in {rep.when}"}
    elif rep.when == "call":
        checks[name] = {"outcome": "passed"}


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    report = config.stash[REPORT_KEY].get("report")
    if report is None:
        return
    terminalreporter.section("amphora boot report")
    for line in report.lines():
        terminalreporter.write_line(line)
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.when != "teardown"]
    if skipped:
        terminalreporter.write_line(f"not applicable    {len(skipped)} checks skipped (not "
                                    "passed) for what the image records; see the reasons above")
    target = config.getoption("--amp-report")
    if target:
        import dataclasses
        import json

        data = dataclasses.asdict(report)
        data["image"] = str(report.image)
        data["checks"] = config.stash[REPORT_KEY].get("checks", {})
        Path(target).write_text(json.dumps(data, indent=2) + "\n")
