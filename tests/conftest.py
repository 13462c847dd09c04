"""Shared fixtures: the real default --sriov image, built once per test run.

Set AMP_TEST_IMAGE to reuse an image built earlier in the same run (scripts/test
does); otherwise the first test that needs it builds it with amp-image (DIB).
AMP_TEST_QUICK=1 (scripts/test --quick) deselects every test that builds or boots
(budget.builds_or_boots) or needs the real test cloud (budget.needs_cloud).  The time
budget's plugin is budget.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amp_image.verify.octavia_source import tagged_repository

pytest_plugins = ["amp_image.verify.checks.plugin", "budget"]

ROOT = Path(__file__).resolve().parent.parent
AMP_IMAGE = str(Path(sys.executable).parent / "amp-image")
TEST_IMAGE_DIR = ROOT / "build" / "test-images"


def build_test_image(output: Path, *extra: str) -> Path:
    cmd = [AMP_IMAGE, "build", "--sriov", "-o", str(output), *extra]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(cmd)} failed (exit {result.returncode})"
    return output


def ca_bundle_args() -> list[str]:
    """--ca-bundle: the host's bundle plus a test-only CA (scripts/test-ca-bundle), so the
    image tests can check that the build staged it and left no trace of it.  The same
    bundle for every build of a run (the script keeps a valid one): the fault and stop
    builds then start from the agent layer the default build saved."""
    bundle = TEST_IMAGE_DIR / "ca-bundle.pem"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "test-ca-bundle"), str(bundle)],
                   check=True)
    return ["--ca-bundle", str(bundle)]


@pytest.fixture(scope="session")
def built_image() -> Path:
    existing = os.environ.get("AMP_TEST_IMAGE")
    if existing:
        path = Path(existing)
        assert path.is_file(), f"AMP_TEST_IMAGE={existing} does not exist"
        return path
    return build_test_image(TEST_IMAGE_DIR / "amphora-x64-haproxy.qcow2",
                            *ca_bundle_args())


GIT_AGENT_VERSION = "19.0.0"


@pytest.fixture(scope="session")
def test_cloud():
    """The real test cloud (scripts/test-cloud), up once for the tests that talk to a
    cloud and down after them: also after a failure, and on SIGTERM (which unwinds like
    Ctrl-C, so that pytest's teardown runs).  A cloud a developer brought up with
    `scripts/test-cloud up` is used as it is, and left up."""
    import signal

    from cloud_client import CloudDir, RealCloud, cloud_life, load_state

    where = CloudDir.from_env()
    if cloud_life.is_up(where):
        yield RealCloud(where, load_state(where))
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        state = cloud_life.up(where, cloud_life.DEFAULT_SERIES)
        yield RealCloud(where, state)
    finally:
        cloud_life.down(where)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def octavia_git_repo(tmp_path_factory) -> tuple[Path, str]:
    """A local git repository of octavia's released source (the PyPI sdist), committed
    and tagged (amp_image.verify.octavia_source).  Returns the repository and its
    commit."""
    return tagged_repository(GIT_AGENT_VERSION, tmp_path_factory.mktemp("octavia-git"))


@pytest.fixture(scope="session")
def amphora_image(built_image: Path) -> Path:
    return built_image


@pytest.fixture(scope="session")
def amphora_sriov() -> bool:
    """The suite boots with the emulated SR-IOV NIC and runs the SR-IOV scenario."""
    return True


def pytest_collection_modifyitems(config, items):
    """With AMP_TEST_QUICK=1 (scripts/test --quick): deselect every test that builds,
    boots or needs the test cloud, so they show as deselected, never as passed or
    skipped.  With
    AMP_TEST_LANE (scripts/test's lanes, lanes.py): only that lane's items; the others
    run in their own lane's pytest.

    Boot tests last: their VM lives for the rest of the session.  The conformance run
    (VMs of its own, gone when it ends) goes just before.  Tests marked both image and
    boot build and boot their own images in subprocesses (test_boot_variants.py): they
    go with the builds."""
    from budget import needs_cloud
    from lanes import LANE_ENV, LIGHT, split  # imports the budget plugin: after pytest_plugins

    if os.environ.get("AMP_TEST_QUICK") == "1":
        light, heavy = split(items, LIGHT)
        heavy += [item for item in light if needs_cloud(item)]
        light = [item for item in light if not needs_cloud(item)]
        if heavy:
            config.hook.pytest_deselected(items=heavy)
            items[:] = light
    lane = os.environ.get(LANE_ENV)
    if lane:
        items[:], elsewhere = split(items, lane)
        config.stash[ELSEWHERE] = len(elsewhere)

    def order(item) -> int:
        if item.get_closest_marker("boot") and not item.get_closest_marker("image"):
            return 2
        return 1 if item.get_closest_marker("conformance") else 0
    items.sort(key=order)


ELSEWHERE = pytest.StashKey[int]()


def pytest_report_collectionfinish(config, items):
    from lanes import LANE_ENV

    lane = os.environ.get(LANE_ENV)
    if lane:
        return (f"lane {lane}: {len(items)} items here, {config.stash.get(ELSEWHERE, 0)} "
                "in the other lanes (tests/lanes.py)")
    return None
