"""pytest plugin: boots the image under test once per session for the amphora checks.

Used by ``amp-image test IMAGE`` and by the project's test suite (which
builds the image first and passes it with ``--amp-image``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from amp_image.boottest import booted_amphora

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
def amphora(request: pytest.FixtureRequest, amphora_image: Path, amphora_sriov: bool):
    config = request.config
    workdir = config.getoption("--amp-workdir")
    with booted_amphora(amphora_image,
                        workdir=Path(workdir) if workdir else None,
                        accel=config.getoption("--amp-accel"),
                        boot=config.getoption("--amp-boot"),
                        sriov=amphora_sriov) as booted:
        config.stash[REPORT_KEY]["report"] = booted.report
        yield booted


@pytest.fixture(scope="session")
def amphora_host(amphora):
    return amphora.testinfra_host()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    report = config.stash[REPORT_KEY].get("report")
    if report is None:
        return
    terminalreporter.section("amphora boot report")
    for line in report.lines():
        terminalreporter.write_line(line)
    target = config.getoption("--amp-report")
    if target:
        import dataclasses
        import json

        data = dataclasses.asdict(report)
        data["image"] = str(report.image)
        Path(target).write_text(json.dumps(data, indent=2) + "\n")
