"""The operator's OpenStack steps for (SR-IOV) amphorae, as commands or applied.

Pure functions turn validated options into the ``openstack`` CLI commands of
Octavia's "Using SR-IOV Ports with Octavia" guide:

1. a host aggregate carrying the SR-IOV property, simple (``sriov-nic=true``)
   or per network (``<network>-sriov=true`` for the VIP and member networks),
   with the SR-IOV compute hosts in it;
2. a private compute flavor with ``hw_rng:allowed=True`` and the same
   properties scoped as ``aggregate_instance_extra_specs:...``, so Nova's
   AggregateInstanceExtraSpecsFilter places amphorae on those hosts;
3. an Octavia flavor profile for the ``amphora`` provider (flavor data:
   ``compute_flavor``, ``sriov_vip``, ``allow_member_sriov``) and the Octavia
   flavor using it.

:func:`apply` does the same through openstacksdk (see cloud.py).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amp_image.builder import constraints
from amp_image.errors import AmpImageError

PROVIDER = "amphora"
AGGREGATE_SCOPE = "aggregate_instance_extra_specs"
SIMPLE_PROPERTY = "sriov-nic"

# The amphora provider's flavor metadata (octavia's amphora_driver/flavor_schema.py):
# key -> (JSON type, allowed values or None).
AMPHORA_FLAVOR_KEYS: dict[str, tuple[type, tuple[str, ...] | None]] = {
    "loadbalancer_topology": (str, ("SINGLE", "ACTIVE_STANDBY")),
    "compute_flavor": (str, None),
    "amp_image_tag": (str, None),
    "sriov_vip": (bool, None),
    "allow_member_sriov": (bool, None),
}
JSON_TYPE_NAMES = {str: "a string", bool: "true or false"}
# Flavor data keys the amphora provider accepts only from an octavia major on; older
# controllers refuse a flavor profile naming them (their schema has no other keys).
FLAVOR_KEY_SINCE = {
    "sriov_vip": constraints.SRIOV_VIP_MAJOR,
    "allow_member_sriov": constraints.SRIOV_MEMBER_MAJOR,
}

HOSTNAME = re.compile(r"(?=.{1,255}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
# Network labels become metadata keys '<label>-sriov' (Nova: [A-Za-z0-9-_:. ], no ':'
# in a scoped key); kept shell-safe.
NETWORK_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
# Nova's flavor ID pattern.
FLAVOR_ID = re.compile(r"(?! )[A-Za-z0-9. _-]{1,255}(?<! )")
MIN_DISK_GB = 2


class OpenStackConfigError(AmpImageError):
    """Options that cannot make a valid OpenStack configuration."""


@dataclass(frozen=True)
class AmphoraFlavorOptions:
    """What the operator asked for; see validate() for the rules."""

    sriov: bool = True
    hosts: tuple[str, ...] = ()
    vip_networks: tuple[str, ...] = ()
    member_networks: tuple[str, ...] = ()
    aggregate: str = ""
    compute_flavor: str = ""
    compute_flavor_id: str = ""
    ram: int = 1024
    disk: int = 3
    vcpus: int = 1
    project: str = ""
    flavor_profile: str = ""
    lb_flavor: str = ""
    description: str = ""
    sriov_vip: bool = False
    allow_member_sriov: bool = False
    topology: str = ""
    image_tag: str = ""
    extra_flavor_data: dict[str, Any] = field(default_factory=dict)
    # The controller's octavia release: what its amphora provider accepts.
    octavia_version: str = constraints.DEFAULT_AGENT_VERSION

    @property
    def octavia_major(self) -> int:
        return constraints.octavia_major(self.octavia_version, "--octavia-version")

    @property
    def base_name(self) -> str:
        return "amphora-sriov" if self.sriov else "amphora"

    @property
    def aggregate_name(self) -> str:
        return self.aggregate or self.base_name

    @property
    def flavor_name(self) -> str:
        return self.compute_flavor or self.base_name

    @property
    def flavor_id(self) -> str:
        return self.compute_flavor_id or self.flavor_name

    @property
    def profile_name(self) -> str:
        return self.flavor_profile or f"{self.base_name}-profile"

    @property
    def lb_flavor_name(self) -> str:
        return self.lb_flavor or self.base_name

    @property
    def per_network(self) -> bool:
        return bool(self.vip_networks or self.member_networks)

    @property
    def lb_description(self) -> str:
        if self.description:
            return self.description
        if not self.sriov:
            return "Amphora load balancer"
        uses = [what for what, on in (("VIP", self.sriov_vip),
                                      ("members", self.allow_member_sriov)) if on]
        return f"Amphora load balancer, SR-IOV for {' and '.join(uses) or 'nothing yet'}"


def _since(major: int) -> str:
    series = constraints.SERIES_BY_MAJOR.get(major)
    return f"octavia {major}.x ({series.name})" if series else f"octavia {major}.x"


def validate_flavor_data(data: dict[str, Any], octavia_version: str = "") -> None:
    """Reject keys and values the amphora provider (of that octavia release) would refuse."""
    major = constraints.octavia_major(octavia_version, "--octavia-version") \
        if octavia_version else None
    for key, value in data.items():
        if key not in AMPHORA_FLAVOR_KEYS:
            raise OpenStackConfigError(
                f"flavor data key '{key}' is not accepted by the amphora provider; use "
                f"{', '.join(AMPHORA_FLAVOR_KEYS)}"
            )
        since = FLAVOR_KEY_SINCE.get(key, 0)
        if major is not None and major < since:
            raise OpenStackConfigError(
                f"flavor data key '{key}' needs {_since(since)} or newer, but the controller "
                f"is octavia {octavia_version} (--octavia-version); drop it from --flavor-data"
            )
        kind, choices = AMPHORA_FLAVOR_KEYS[key]
        if type(value) is not kind:
            raise OpenStackConfigError(
                f"flavor data '{key}' must be {JSON_TYPE_NAMES[kind]}, not {json.dumps(value)}"
            )
        if choices and value not in choices:
            raise OpenStackConfigError(
                f"flavor data '{key}' is '{value}'; use one of {', '.join(choices)}"
            )
        if kind is str and not value.strip():
            raise OpenStackConfigError(f"flavor data '{key}' is empty; give a value")


def parse_flavor_data(text: str) -> dict[str, Any]:
    """--flavor-data: a JSON object, validated against the amphora provider's keys."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpenStackConfigError(
            f"--flavor-data is not JSON ({exc.msg} at column {exc.colno}); pass an object "
            "like '{\"loadbalancer_topology\": \"ACTIVE_STANDBY\"}'"
        ) from None
    if not isinstance(data, dict):
        raise OpenStackConfigError("--flavor-data must be a JSON object ({...})")
    validate_flavor_data(data)
    return data


def flavor_data(opts: AmphoraFlavorOptions) -> dict[str, Any]:
    data: dict[str, Any] = {"compute_flavor": opts.flavor_id}
    # Only the keys the controller's release knows (older ones refuse the others).
    for key, value in (("sriov_vip", opts.sriov_vip),
                       ("allow_member_sriov", opts.allow_member_sriov)):
        if opts.octavia_major >= FLAVOR_KEY_SINCE[key]:
            data[key] = value
    if opts.topology:
        data["loadbalancer_topology"] = opts.topology
    if opts.image_tag:
        data["amp_image_tag"] = opts.image_tag
    for key, value in opts.extra_flavor_data.items():
        if key in data and data[key] != value:
            raise OpenStackConfigError(
                f"--flavor-data sets '{key}' to {json.dumps(value)} but the options set "
                f"{json.dumps(data[key])}; set it in one place"
            )
        data[key] = value
    validate_flavor_data(data, opts.octavia_version)
    return data


def aggregate_properties(opts: AmphoraFlavorOptions) -> dict[str, str]:
    """The aggregate's metadata: one simple key, or one key per SR-IOV network."""
    if not opts.sriov:
        return {}
    if not opts.per_network:
        return {SIMPLE_PROPERTY: "true"}
    networks = dict.fromkeys((*opts.vip_networks, *opts.member_networks))
    return {f"{net}-sriov": "true" for net in networks}


def flavor_properties(opts: AmphoraFlavorOptions) -> dict[str, str]:
    """The compute flavor's extra specs, matching the aggregate's metadata."""
    specs = {"hw_rng:allowed": "True"}
    specs.update({f"{AGGREGATE_SCOPE}:{key}": value
                  for key, value in aggregate_properties(opts).items()})
    return specs


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
                f"{flag} needs {_since(since)} or newer (SR-IOV "
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


def command_groups(opts: AmphoraFlavorOptions) -> list[tuple[str, list[list[str]]]]:
    """(comment, argv lists) per step, for validated options."""
    groups = []
    aggregate = opts.aggregate_name
    if opts.sriov:
        props = [arg for k, v in aggregate_properties(opts).items()
                 for arg in ("--property", f"{k}={v}")]
        groups.append((
            "Host aggregate of the SR-IOV compute hosts",
            [["openstack", "aggregate", "create", aggregate],
             *[["openstack", "aggregate", "add", "host", aggregate, h]
               for h in dict.fromkeys(opts.hosts)],
             ["openstack", "aggregate", "set", *props, aggregate]],
        ))
    flavor = ["openstack", "flavor", "create", "--id", opts.flavor_id, "--ram", str(opts.ram),
              "--disk", str(opts.disk), "--vcpus", str(opts.vcpus), "--private"]
    if opts.project:
        flavor += ["--project", opts.project]
    for key, value in flavor_properties(opts).items():
        flavor += ["--property", f"{key}={value}"]
    access = (f"project {opts.project} may use it" if opts.project else
              "run this in Octavia's service project, or pass --project")
    groups.append((f"Private compute flavor for amphorae ({access})",
                   [[*flavor, opts.flavor_name]]))
    groups.append((
        "Octavia flavor profile and flavor (provider amphora)",
        [["openstack", "loadbalancer", "flavorprofile", "create", "--name", opts.profile_name,
          "--provider", PROVIDER, "--flavor-data", json.dumps(flavor_data(opts))],
         ["openstack", "loadbalancer", "flavor", "create", "--name", opts.lb_flavor_name,
          "--flavorprofile", opts.profile_name, "--description", opts.lb_description,
          "--enable"]],
    ))
    return groups


def commands(opts: AmphoraFlavorOptions) -> list[list[str]]:
    """Every command, in order, after validating the options."""
    validate(opts)
    return [argv for _, group in command_groups(opts) for argv in group]


def render_script(opts: AmphoraFlavorOptions) -> str:
    """The steps as a shell script (runnable with sh, readable as instructions)."""
    validate(opts)
    lines = ["#!/bin/sh", "# Generated by amp-image openstack-config; run with admin credentials.",
             "set -eu"]
    lines += [f"# WARNING: {warning}" for warning in warnings(opts)]
    if opts.sriov:
        lines.append("# Nova's scheduler must enable AggregateInstanceExtraSpecsFilter "
                     "([filter_scheduler] enabled_filters).")
    for comment, group in command_groups(opts):
        lines += ["", f"# {comment}", *(shlex.join(argv) for argv in group)]
    return "\n".join(lines) + "\n"


def apply(opts: AmphoraFlavorOptions, conn: Any,
          emit: Callable[[str], None] = lambda _: None) -> None:
    """Create what the commands would, through an openstacksdk Connection.

    Re-running is safe and completes an interrupted run: an existing aggregate
    gets the missing hosts and the metadata, an existing compute flavor the
    missing (or different) extra specs and the project's access; its size, and
    an existing profile or Octavia flavor, are kept as they are.
    """
    validate(opts)
    if opts.sriov:
        _apply_aggregate(opts, conn, emit)
    _apply_compute_flavor(opts, conn, emit)
    profile = conn.load_balancer.find_flavor_profile(opts.profile_name)
    if profile is None:
        profile = conn.load_balancer.create_flavor_profile(
            name=opts.profile_name, provider_name=PROVIDER,
            flavor_data=json.dumps(flavor_data(opts)))
        emit(f"created flavor profile {opts.profile_name}")
    else:
        emit(f"flavor profile {opts.profile_name} exists; kept as it is")
    if conn.load_balancer.find_flavor(opts.lb_flavor_name) is None:
        conn.load_balancer.create_flavor(
            name=opts.lb_flavor_name, flavor_profile_id=profile.id,
            description=opts.lb_description, is_enabled=True)
        emit(f"created Octavia flavor {opts.lb_flavor_name}")
    else:
        emit(f"Octavia flavor {opts.lb_flavor_name} exists; kept as it is")


def _apply_compute_flavor(opts: AmphoraFlavorOptions, conn: Any,
                          emit: Callable[[str], None]) -> None:
    flavor = conn.compute.find_flavor(opts.flavor_id)
    if flavor is None:
        flavor = conn.compute.create_flavor(
            id=opts.flavor_id, name=opts.flavor_name, ram=opts.ram, disk=opts.disk,
            vcpus=opts.vcpus, is_public=False)
        emit(f"created compute flavor {opts.flavor_name} (id {opts.flavor_id})")
    else:
        emit(f"compute flavor {opts.flavor_id} exists; kept as it is")
    _apply_extra_specs(opts, conn, flavor, emit)
    if opts.project:
        _apply_project_access(opts, conn, flavor, emit)


def _apply_extra_specs(opts: AmphoraFlavorOptions, conn: Any, flavor: Any,
                       emit: Callable[[str], None]) -> None:
    """The flavor's extra specs as flavor_properties() says, whatever it has now."""
    current = conn.compute.fetch_flavor_extra_specs(flavor).extra_specs or {}
    wanted = {key: value for key, value in flavor_properties(opts).items()
              if current.get(key) != value}
    if wanted:
        conn.compute.create_flavor_extra_specs(flavor, wanted)
        emit(f"set {', '.join(wanted)} on compute flavor {opts.flavor_name}")


def _apply_project_access(opts: AmphoraFlavorOptions, conn: Any, flavor: Any,
                          emit: Callable[[str], None]) -> None:
    if getattr(flavor, "is_public", False):
        emit(f"compute flavor {opts.flavor_id} is public; project {opts.project} can use it")
        return
    project = conn.identity.find_project(opts.project, ignore_missing=False)
    granted = {access["tenant_id"] for access in conn.compute.get_flavor_access(flavor)}
    if project.id not in granted:
        conn.compute.flavor_add_tenant_access(flavor, project.id)
        emit(f"gave project {opts.project} access to {opts.flavor_name}")


def _apply_aggregate(opts: AmphoraFlavorOptions, conn: Any,
                     emit: Callable[[str], None]) -> None:
    aggregate = conn.compute.find_aggregate(opts.aggregate_name)
    if aggregate is None:
        aggregate = conn.compute.create_aggregate(name=opts.aggregate_name)
        emit(f"created aggregate {opts.aggregate_name}")
    present = set(aggregate.hosts or [])
    for host in dict.fromkeys(opts.hosts):
        if host not in present:
            aggregate = conn.compute.add_host_to_aggregate(aggregate, host)
            emit(f"added {host} to {opts.aggregate_name}")
    conn.compute.set_aggregate_metadata(aggregate, aggregate_properties(opts))
    emit(f"set {', '.join(aggregate_properties(opts))} on {opts.aggregate_name}")
