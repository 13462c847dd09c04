"""The ``test`` command: boot an image in QEMU and run the checks (or the conformance suite)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from amp_image import PACKAGE_DIR
from amp_image.builder import host
from amp_image.builder.process import stop_on_sigterm
from amp_image.cli.common import fail
from amp_image.errors import AmpImageError, PlanError
from amp_image.image.records import read_image_record

VERIFY_DIR = PACKAGE_DIR / "verify"


@click.command("test")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
              show_default=True, help="auto probes KVM by booting and falls back to TCG.")
@click.option("--boot", type=click.Choice(["auto", "bootloader", "direct"]), default="auto",
              show_default=True, help="auto boots through the image's bootloader and falls "
                                      "back to direct kernel boot only if that stalls.")
@click.option("--workdir", help="Keep the VM's files (serial log, PKI, config drive) here.")
@click.option("--report", help="Write the boot report (or, with --conformance, each "
                               "scenario's outcome and duration) as JSON to this file.")
@click.option("--sriov", is_flag=True, help="Also run the SR-IOV scenario: an emulated igb "
                                            "NIC's VFs as VIP and member ports, firewall rules "
                                            "and real traffic, and a reboot.")
@click.option("--conformance", is_flag=True,
              help="Drive the amphora with Octavia's own controller driver (the octavia "
                   "release of the image's agent, in a harness venv) through every listener, "
                   "health monitor and lifecycle scenario, with real traffic.")
@click.option("--octavia-version", help="With --conformance: the octavia release to drive the "
                                        "amphora with (default: the image's agent version).")
@click.option("--active-standby", is_flag=True,
              help="With --conformance: also the ACTIVE_STANDBY scenario (two amphorae, "
                   "VRRP, a failover; two more TCG boots, about 12 minutes here).")
@click.option("--import-audit", help="With --conformance: write which of the agent venv's "
                                     "distributions the amphorae read under the scenarios "
                                     "(JSON) to this file.")
@click.option("-k", "keyword", help="Only run checks matching this pytest expression.")
def test_image(image, accel, boot, workdir, report, sriov, conformance, octavia_version,
               active_standby, import_audit, keyword) -> None:
    """Boot IMAGE in QEMU with a config drive and check it over SSH and the agent API."""
    stop_on_sigterm()
    host.check_root()
    image_path = Path(image).resolve()
    try:
        read_image_record(image_path)  # before any boot: is it an amphora image at all?
    except AmpImageError as exc:
        fail(str(exc), 2)
    common = ["-p", "no:cacheprovider", "-p", "amp_image.verify.checks.plugin",
              "--amp-image", str(image_path), "--amp-accel", accel, "--amp-boot", boot,
              "-v", "-ra"]
    if workdir:
        common += ["--amp-workdir", str(Path(workdir).resolve())]
    if keyword:
        common += ["-k", keyword]
    if conformance:
        sys.exit(_run_conformance(image_path, octavia_version, common, report,
                                  active_standby, import_audit))
    import pytest

    checks_dir = VERIFY_DIR / "checks"
    checks = [str(checks_dir / "test_amphora.py")]
    if sriov:
        checks += [str(checks_dir / "test_sriov.py"), "--amp-sriov"]
    args = [*checks, *common, "--rootdir", str(checks_dir)]
    if report:
        args += ["--amp-report", str(Path(report).resolve())]
    sys.exit(pytest.main(args))


def _run_conformance(image: Path, octavia_version: str | None, common: list[str],
                     report: str | None, active_standby: bool = False,
                     import_audit: str | None = None) -> int:
    """pytest in the harness venv, inside a network namespace of its own."""
    from amp_image.image.records import recorded_agent_version
    from amp_image.verify.conformance import harness_venv

    try:
        version = octavia_version or recorded_agent_version(image)
        if not version:
            raise PlanError(f"{image} does not record its agent version; pass "
                            "--octavia-version")
        python = harness_venv.ensure(version, emit=click.echo)
    except AmpImageError as exc:
        fail(str(exc), 1)
    suite = VERIFY_DIR / "conformance"
    modules = ["test_conformance.py", "test_sriov_driver.py"]
    if active_standby:
        modules.append("test_active_standby.py")
    args = [*(str(suite / m) for m in modules), *common, "--rootdir", str(suite),
            "-W", "ignore::DeprecationWarning"]
    if report:
        args += ["--conformance-report", str(Path(report).resolve())]
    env = dict(os.environ, PYTHONPATH=harness_venv.pythonpath(version))
    click.echo(f"conformance: octavia {version}'s driver against {image.name}")
    with tempfile.TemporaryDirectory(prefix="amp-image-audit.") as listings:
        if import_audit:
            args += ["--import-audit-dir", listings]
        rc = subprocess.run(["unshare", "--net", "--", str(python), "-m",
                             "amp_image.verify.conformance.run", *args], env=env,
                            stdin=subprocess.DEVNULL).returncode
        if import_audit:
            _write_import_audit(image, Path(listings), Path(import_audit))
    return rc


def _write_import_audit(image: Path, listings: Path, target: Path) -> None:
    from amp_image.verify.import_audit import write_audit

    result = write_audit(image, listings, target)
    unused = result["never_read"]
    click.echo(f"import audit: {len(unused)} of {len(result['distributions'])} distributions "
               f"never read ({result['never_read_bytes'] / 2**20:.1f} MiB), from "
               f"{len(result['listings'])} amphorae: {target}")
