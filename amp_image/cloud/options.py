"""What the operator asks ``openstack-config`` for, and the names and properties that
follow from it (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amp_image.builder import constraints
from amp_image.errors import AmpImageError

PROVIDER = "amphora"
AGGREGATE_SCOPE = "aggregate_instance_extra_specs"
SIMPLE_PROPERTY = "sriov-nic"


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


def release_label(major: int) -> str:
    """'octavia 16.x (2025.1)': a major as the messages name it."""
    series = constraints.SERIES_BY_MAJOR.get(major)
    return f"octavia {major}.x ({series.name})" if series else f"octavia {major}.x"


def aggregate_properties(opts: AmphoraFlavorOptions) -> dict[str, str]:
    """The aggregate's metadata: one simple key, or one key per SR-IOV network."""
    if not opts.sriov:
        return {}
    if not opts.per_network:
        return {SIMPLE_PROPERTY: "true"}
    networks = dict.fromkeys((*opts.vip_networks, *opts.member_networks))
    return {f"{net}-sriov": "true" for net in networks}


def differing(wanted: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """What of wanted current lacks or has otherwise (metadata, extra specs)."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def property_args(properties: dict[str, str]) -> str:
    """`--property KEY=VALUE ...`, as the openstack client takes them."""
    return " ".join(f"--property {key}={value}" for key, value in properties.items())


def flavor_properties(opts: AmphoraFlavorOptions) -> dict[str, str]:
    """The compute flavor's extra specs, matching the aggregate's metadata."""
    specs = {"hw_rng:allowed": "True"}
    specs.update({f"{AGGREGATE_SCOPE}:{key}": value
                  for key, value in aggregate_properties(opts).items()})
    return specs
