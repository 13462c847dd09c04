"""The ``openstack-config`` command: the OpenStack steps (flavors, aggregate) for amphorae."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from amp_image.builder.constraints import DEFAULT_AGENT_VERSION
from amp_image.cli.common import fail
from amp_image.cloud import audit
from amp_image.cloud import connection as cloud
from amp_image.cloud.apply import apply, needed_services
from amp_image.cloud.commands import render_script
from amp_image.cloud.flavor_data import parse_flavor_data
from amp_image.cloud.options import AmphoraFlavorOptions, OpenStackConfigError
from amp_image.cloud.validation import validate, warnings
from amp_image.errors import AmpImageError
from amp_image.image.python_version import parse_python_version
from amp_image.verify.certs.check import check_client
from amp_image.verify.certs.handshake import STRICT_PYTHON


def certificate_files(controller_cert: str | None, ca: str | None,
                      do_check: bool) -> tuple[Path, Path] | None:
    if not (controller_cert or ca):
        return None
    if not do_check:
        raise OpenStackConfigError("--controller-cert and --ca are for --check; add --check")
    if not (controller_cert and ca):
        raise OpenStackConfigError("--controller-cert and --ca go together; give both")
    files = Path(controller_cert).expanduser(), Path(ca).expanduser()
    for option, path in zip(("--controller-cert", "--ca"), files, strict=True):
        if not path.is_file():
            raise OpenStackConfigError(f"{option} {path}: no such file")
    return files


def certificate_finding(state: audit.CloudState, client_cert: Path, ca: Path
                        ) -> audit.Finding:
    """Does the newest tagged image's agent accept the controller's client certificate?
    (check-certs, on that agent's Python; the strictest when the image does not say.)"""
    text = audit.agent_python(state)
    python = parse_python_version(text) if text else STRICT_PYTHON
    label = ".".join(map(str, python)) + (", the image's" if text else ", unknown: assumed")
    what = f"controller certificate {client_cert.name}"
    result = check_client(ca, client_cert, None, agent_python=python)
    if not result.accepted:
        return audit.Finding(audit.WRONG, what, f"refused by the agent (Python {label})",
                             result.fix)
    return audit.Finding(audit.OK, what, f"accepted by the agent (Python {label})")


@click.command("openstack-config")
@click.option("--sriov", is_flag=True, help="SR-IOV amphorae: host aggregate, matching compute "
                                            "flavor properties, Octavia flavor.")
@click.option("--host", "hosts", multiple=True, help="SR-IOV compute host (repeatable).")
@click.option("--vip-network", "vip_networks", multiple=True,
              help="Per-network properties: a VIP network the hosts offer as SR-IOV VFs.")
@click.option("--member-network", "member_networks", multiple=True,
              help="Per-network properties: a member network offered as SR-IOV VFs.")
@click.option("--aggregate", default="", help="Host aggregate name [amphora-sriov].")
@click.option("--compute-flavor", default="", help="Compute flavor name [amphora-sriov, or "
                                                   "amphora without --sriov].")
@click.option("--compute-flavor-id", default="", help="Compute flavor ID [the name].")
@click.option("--ram", type=int, default=1024, show_default=True, help="MB.")
@click.option("--disk", type=int, default=3, show_default=True, help="GB.")
@click.option("--vcpus", type=int, default=1, show_default=True)
@click.option("--project", default="", help="Give this project (Octavia's) access to the "
                                            "private flavor.")
@click.option("--flavor-profile", default="", help="Octavia flavor profile name "
                                                   "[<flavor>-profile].")
@click.option("--lb-flavor", default="", help="Octavia flavor name [the compute flavor's].")
@click.option("--description", default="", help="Octavia flavor description.")
@click.option("--sriov-vip", is_flag=True, help="Put the VIP on an SR-IOV VF (flavor data "
                                                "sriov_vip).")
@click.option("--allow-member-sriov", is_flag=True, help="Let users request SR-IOV member ports "
                                                         "(octavia 16.x, 2025.1, and newer).")
@click.option("--octavia-version", default=DEFAULT_AGENT_VERSION, show_default=True,
              help="The controller's octavia release: what its amphora provider accepts "
                   "(SR-IOV VIPs from 14.x, SR-IOV members from 16.x).")
@click.option("--topology", default="", help="SINGLE or ACTIVE_STANDBY (loadbalancer_topology).")
@click.option("--image-tag", default="", help="Glance tag of the amphora image (amp_image_tag).")
@click.option("--flavor-data", default="", help="More amphora flavor data, as a JSON object.")
@click.option("--apply", "do_apply", is_flag=True, help="Create it all with openstacksdk "
                                                        "instead of printing the commands.")
@click.option("--check", "do_check", is_flag=True,
              help="Read only: audit the cloud against these options, one line per finding "
                   "with its fix; exit 1 when something is missing or wrong.")
@click.option("--controller-cert", metavar="CERT.pem",
              help="With --check: the controller's client certificate and key ([haproxy_amphora] "
                   "client_cert), checked against the tagged image's agent.")
@click.option("--ca", metavar="CA.pem", help="With --check and --controller-cert: the CA the "
                                             "amphorae trust for clients ([controller_worker] "
                                             "client_ca).")
@click.option("--cloud", "cloud_name", help="clouds.yaml cloud for --apply and --check "
                                            "(default: $OS_CLOUD).")
def openstack_config(flavor_data, do_apply, do_check, controller_cert, ca, cloud_name,
                     **kw) -> None:
    """Print (or --apply) the OpenStack steps for amphora load balancers."""
    try:
        extra = parse_flavor_data(flavor_data) if flavor_data else {}
        opts = AmphoraFlavorOptions(
            **{k: tuple(v) if isinstance(v, tuple) else v for k, v in kw.items()},
            extra_flavor_data=extra)
        validate(opts)
        for warning in warnings(opts):
            click.echo(f"amp-image: warning: {warning}", err=True)
        if do_apply and do_check:
            raise OpenStackConfigError("--apply and --check exclude each other; give one")
        certs = certificate_files(controller_cert, ca, do_check)
        if do_check:
            conn = cloud.connect(cloud_name)
            cloud.check_catalog(conn, needed_services(opts) | {"image": "Glance"})
            apply_fix = shlex.join(["amp-image", *(
                "--apply" if arg == "--check" else arg for arg in sys.argv[1:])])
            state = audit.read_cloud(opts, conn)
            found = audit.findings(opts, state, apply_fix)
            if certs:
                found.append(certificate_finding(state, *certs))
            click.echo(audit.table(found), nl=False)
            if any(finding.status != audit.OK for finding in found):
                sys.exit(1)
            return
        if not do_apply:
            click.echo(render_script(opts), nl=False)
            return
        conn = cloud.connect(cloud_name)
        apply(opts, conn, emit=click.echo)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except Exception as exc:
        if do_check:
            fail(f"openstack-config --check failed: {cloud.one_line(exc)}", 1)
        if not do_apply:
            raise
        fail(f"openstack-config --apply failed: {cloud.one_line(exc)}; what is done is "
             "listed above, and re-running --apply completes the rest", 1)
