"""Validating ``openstack-config``'s options: the first problem, with its fix, and the
warnings for what is valid but probably not meant (pure)."""

from __future__ import annotations

import re

from amp_image.builder import constraints
from amp_image.cloud.flavor_data import AMPHORA_FLAVOR_KEYS, flavor_data
from amp_image.cloud.options import AmphoraFlavorOptions, OpenStackConfigError, release_label

HOSTNAME = re.compile(r"(?=.{1,255}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
# Network labels become metadata keys '<label>-sriov' (Nova: [A-Za-z0-9-_:. ], no ':'
# in a scoped key); kept shell-safe.
NETWORK_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
# Nova's flavor ID pattern.
FLAVOR_ID = re.compile(r"(?! )[A-Za-z0-9. _-]{1,255}(?<! )")
MIN_DISK_GB = 2


def _check_name(what: str, value: str) -> None:
    if not value.strip() or len(value) > 255 or not value.isprintable():
        raise OpenStackConfigError(f"{what} '{value}': give 1 to 255 printable characters")


def _check_sriov(opts: AmphoraFlavorOptions) -> None:
    if not opts.hosts:
        raise OpenStackConfigError(
            "no SR-IOV compute hosts; pass --host HOST for each (as in 'openstack compute "
            "service list')"
        )
    for host in opts.hosts:
        if not HOSTNAME.fullmatch(host):
            raise OpenStackConfigError(f"--host '{host}' is not a host name")
    for net in (*opts.vip_networks, *opts.member_networks):
        if not NETWORK_LABEL.fullmatch(net):
            raise OpenStackConfigError(
                f"network '{net}': use letters, digits, '.', '_' or '-' (it becomes the "
                f"property {net}-sriov)"
            )
    if opts.per_network and opts.sriov_vip and not opts.vip_networks:
        raise OpenStackConfigError(
            "--sriov-vip with per-network properties needs the VIP network; pass --vip-network"
        )
    if opts.per_network and opts.allow_member_sriov and not opts.member_networks:
        raise OpenStackConfigError(
            "--allow-member-sriov with per-network properties needs the member networks; "
            "pass --member-network"
        )


def _check_plain(opts: AmphoraFlavorOptions) -> None:
    sriov_only = [flag for flag, given in (
        ("--host", opts.hosts), ("--vip-network", opts.vip_networks),
        ("--member-network", opts.member_networks), ("--aggregate", opts.aggregate),
        ("--sriov-vip", opts.sriov_vip), ("--allow-member-sriov", opts.allow_member_sriov),
    ) if given]
    if sriov_only:
        raise OpenStackConfigError(f"{', '.join(sriov_only)} need --sriov; add it")


def _check_release(opts: AmphoraFlavorOptions) -> None:
    """Refuse what the controller's octavia release lacks."""
    major = opts.octavia_major
    for flag, given, since in (
        ("--sriov", opts.sriov, constraints.SRIOV_VIP_MAJOR),
        ("--sriov-vip", opts.sriov_vip, constraints.SRIOV_VIP_MAJOR),
        ("--allow-member-sriov", opts.allow_member_sriov, constraints.SRIOV_MEMBER_MAJOR),
    ):
        if given and major < since:
            raise OpenStackConfigError(
                f"{flag} needs {release_label(since)} or newer (SR-IOV "
                f"{'member ports' if since == constraints.SRIOV_MEMBER_MAJOR else 'VIPs'} "
                f"arrived there), but the controller is octavia {opts.octavia_version} "
                f"(--octavia-version); drop {flag}, or upgrade Octavia"
            )


def validate(opts: AmphoraFlavorOptions) -> None:
    """Raise OpenStackConfigError on the first problem, with its fix."""
    _check_release(opts)
    if opts.sriov:
        _check_sriov(opts)
    else:
        _check_plain(opts)
    for what, value in (("aggregate", opts.aggregate_name),
                        ("compute flavor", opts.flavor_name),
                        ("flavor profile", opts.profile_name),
                        ("Octavia flavor", opts.lb_flavor_name),
                        ("description", opts.lb_description)):
        _check_name(what, value)
    if not FLAVOR_ID.fullmatch(opts.flavor_id):
        raise OpenStackConfigError(
            f"compute flavor ID '{opts.flavor_id}': use letters, digits, '.', '_', '-' or "
            "inner spaces"
        )
    if opts.project:
        _check_name("project", opts.project)
    for what, value, least in (("--ram", opts.ram, 256), ("--disk", opts.disk, MIN_DISK_GB),
                               ("--vcpus", opts.vcpus, 1)):
        if value < least:
            raise OpenStackConfigError(f"{what} {value} is too small; use {least} or more")
    if opts.topology and opts.topology not in AMPHORA_FLAVOR_KEYS["loadbalancer_topology"][1]:
        raise OpenStackConfigError(
            f"--topology '{opts.topology}'; use SINGLE or ACTIVE_STANDBY"
        )
    flavor_data(opts)


def warnings(opts: AmphoraFlavorOptions) -> list[str]:
    """What is valid but probably not what the operator wants (one line each)."""
    if opts.sriov and not (opts.sriov_vip or opts.allow_member_sriov):
        fix = ("add --sriov-vip and/or --allow-member-sriov"
               if opts.octavia_major >= constraints.SRIOV_MEMBER_MAJOR else "add --sriov-vip")
        return ["--sriov without --sriov-vip or --allow-member-sriov makes an SR-IOV flavor "
                "that uses SR-IOV for nothing (its amphorae only land on the SR-IOV hosts); "
                + fix]
    return []
