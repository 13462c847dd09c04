"""The ``test`` command: options -> TestRequest -> verify.run (boot an image in QEMU and
run the checks, or the conformance suite) -> its exit code."""

from __future__ import annotations

import sys

import click

from amp_image.cli.common import fail
from amp_image.errors import AmpImageError
from amp_image.verify.run import TestRequest, UnusableImage, run


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
@click.option("--flavor", metavar="VCPUS,RAM_MB,DISK_GB",
              help="The VM's vCPUs, RAM and root disk, as `openstack flavor create --vcpus "
                   "--ram --disk` takes them (default: the seed's 1,1024,3; DISK_GB 0 boots "
                   "the image's own size).")
@click.option("-k", "keyword", help="Only run checks matching this pytest expression.")
def test_image(**kw) -> None:
    """Boot IMAGE in QEMU with a config drive and check it over SSH and the agent API."""
    try:
        sys.exit(run(TestRequest(**kw), emit=click.echo))
    except UnusableImage as exc:
        fail(str(exc), 2)
    except AmpImageError as exc:
        fail(str(exc), 1)
