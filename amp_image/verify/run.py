"""``run(request)``: boot an image and check it, the one way ``amp-image test`` does.

The booted checks (verify/checks) run in this process's pytest; the conformance run
(verify/conformance) in its harness venv's Python, inside a network namespace of its
own (``unshare --net``).  The command line (cli/test.py) maps options to a
:class:`TestRequest` and exits with what :func:`run` returns."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amp_image import PACKAGE_DIR
from amp_image.builder import host
from amp_image.builder.process import stop_on_sigterm
from amp_image.errors import AmpImageError, PlanError
from amp_image.image.records import read_image_record, recorded_agent_version
from amp_image.verify.vmspec import Flavor

VERIFY_DIR = PACKAGE_DIR / "verify"
CHECKS_DIR = VERIFY_DIR / "checks"
CONFORMANCE_DIR = VERIFY_DIR / "conformance"


class UnusableImage(AmpImageError):
    """The image is no amphora image amp-image can read: nothing was booted."""


@dataclass(frozen=True)
class TestRequest:
    """One ``amp-image test``, named as its options are (``amp-image test --help``)."""

    __test__ = False  # a request, not a pytest test class

    image: str
    accel: str = "auto"
    boot: str = "auto"
    workdir: str | None = None
    report: str | None = None
    sriov: bool = False
    conformance: bool = False
    octavia_version: str | None = None
    active_standby: bool = False
    import_audit: str | None = None
    keyword: str | None = None
    flavor: str | None = None


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


def pytest_options(request: TestRequest, image: Path) -> list[str]:
    """What both runs give pytest: the plugin, the image and how to boot it."""
    args = ["-p", "no:cacheprovider", "-p", "amp_image.verify.checks.plugin",
            "--amp-image", str(image), "--amp-accel", request.accel, "--amp-boot", request.boot,
            "-v", "-ra"]
    if request.workdir:
        args += ["--amp-workdir", _absolute(request.workdir)]
    if request.keyword:
        args += ["-k", request.keyword]
    if request.flavor:
        args += ["--amp-flavor", request.flavor]
    return args


def checks_args(request: TestRequest, image: Path) -> list[str]:
    checks = [str(CHECKS_DIR / "test_amphora.py"), str(CHECKS_DIR / "test_amphora_access.py")]
    if request.sriov:
        checks += [str(CHECKS_DIR / "test_sriov.py"), "--amp-sriov"]
    args = [*checks, *pytest_options(request, image), "--rootdir", str(CHECKS_DIR)]
    if request.report:
        args += ["--amp-report", _absolute(request.report)]
    return args


def conformance_args(request: TestRequest, image: Path) -> list[str]:
    # The modules with VMs of their own first; the rest share one amphora (conftest.py).
    modules = ["test_sriov_driver.py"]
    if request.active_standby:
        modules.append("test_active_standby.py")
    modules += ["test_conformance.py", "test_controller_pki.py", "test_tls.py", "test_ipv6.py",
                "test_logging.py", "test_matrix.py"]
    args = [*(str(CONFORMANCE_DIR / m) for m in modules), *pytest_options(request, image),
            "--rootdir", str(CONFORMANCE_DIR), "-W", "ignore::DeprecationWarning"]
    if request.report:
        args += ["--conformance-report", _absolute(request.report)]
    return args


def _run_checks(request: TestRequest, image: Path) -> int:
    import pytest

    return int(pytest.main(checks_args(request, image)))


def _harness(request: TestRequest, image: Path,
             emit: Callable[[str], None]) -> tuple[str, Path]:
    """The octavia release to drive the amphora with, and its harness venv's Python."""
    from amp_image.verify.conformance import harness_venv

    version = request.octavia_version or recorded_agent_version(image)
    if not version:
        raise PlanError(f"{image} does not record its agent version; pass "
                        "--octavia-version")
    return version, harness_venv.ensure(version, emit=emit)


def _run_conformance(request: TestRequest, image: Path, emit: Callable[[str], None]) -> int:
    """pytest in the harness venv, inside a network namespace of its own."""
    from amp_image.verify.conformance import harness_venv

    version, python = _harness(request, image, emit)
    args = conformance_args(request, image)
    env = dict(os.environ, PYTHONPATH=harness_venv.pythonpath(version))
    emit(f"conformance: octavia {version}'s driver against {image.name}")
    with tempfile.TemporaryDirectory(prefix="amp-image-audit.") as listings:
        if request.import_audit:
            args += ["--import-audit-dir", listings]
        rc = subprocess.run(["unshare", "--net", "--", str(python), "-m",
                             "amp_image.verify.conformance.run", *args], env=env,
                            stdin=subprocess.DEVNULL).returncode
        if request.import_audit:
            _write_import_audit(image, Path(listings), Path(request.import_audit), emit)
    return rc


def _write_import_audit(image: Path, listings: Path, target: Path,
                        emit: Callable[[str], None]) -> None:
    from amp_image.verify.import_audit import write_audit

    result = write_audit(image, listings, target)
    unused = result["never_read"]
    emit(f"import audit: {len(unused)} of {len(result['distributions'])} distributions "
         f"never read ({result['never_read_bytes'] / 2**20:.1f} MiB), from "
         f"{len(result['listings'])} amphorae: {target}")


def run(request: TestRequest, emit: Callable[[str], None] = print) -> int:
    """Boot the image and run its checks (or the conformance run); pytest's exit code.
    Raises UnusableImage before any boot if the image is no amphora image, and an
    AmpImageError if the conformance harness cannot be made."""
    stop_on_sigterm()
    if request.flavor:
        Flavor.parse(request.flavor)  # a PlanError naming the form, before anything runs
    host.check_root()
    image = Path(request.image).resolve()
    try:
        read_image_record(image)  # before any boot: is it an amphora image at all?
    except AmpImageError as exc:
        raise UnusableImage(str(exc)) from None
    if request.conformance:
        return _run_conformance(request, image, emit)
    return _run_checks(request, image)
