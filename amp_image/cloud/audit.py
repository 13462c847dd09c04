"""``openstack-config --check``: a read-only audit of a live cloud against the seed's
set-up.  ``read_cloud`` reads what there is through an openstacksdk Connection (the
I/O); ``findings`` compares it with what the options ask for (pure), one finding per
line of the table, each with its fix."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from amp_image.cloud.flavor_data import flavor_data
from amp_image.cloud.glance import AGENT_PYTHON_PROPERTY, DEFAULT_TAG, VF_DRIVERS_PROPERTY
from amp_image.cloud.options import (
    AGGREGATE_SCOPE,
    PROVIDER,
    AmphoraFlavorOptions,
    aggregate_properties,
    differing,
    flavor_properties,
    property_args,
)
from amp_image.cloud.rotation import RECORD_PROPERTY

OK, MISSING, WRONG = "ok", "missing", "wrong"


@dataclass(frozen=True)
class Finding:
    status: str  # OK, MISSING or WRONG
    what: str
    detail: str
    fix: str = ""


@dataclass
class CloudState:
    """What the cloud has, read once (plain data: None where a thing does not exist)."""

    aggregate: dict | None = None  # hosts, metadata
    flavor: dict | None = None  # id, is_public, extra_specs, access (project IDs)
    project_id: str | None = None
    profile: dict | None = None  # id, provider_name, flavor_data (text)
    lb_flavor: dict | None = None  # is_enabled, flavor_profile_id
    # Active images carrying the tag, newest first: id, name, created_at, properties.
    images: list[dict] = field(default_factory=list)


def read_cloud(opts: AmphoraFlavorOptions, conn: Any) -> CloudState:
    state = CloudState()
    if opts.sriov and (aggregate := conn.compute.find_aggregate(opts.aggregate_name)):
        state.aggregate = {"hosts": list(aggregate.hosts or []),
                           "metadata": dict(aggregate.metadata or {})}
    if flavor := conn.compute.find_flavor(opts.flavor_id):
        specs = conn.compute.fetch_flavor_extra_specs(flavor).extra_specs or {}
        access = [] if flavor.is_public else [
            entry["tenant_id"] for entry in conn.compute.get_flavor_access(flavor)]
        state.flavor = {"id": flavor.id, "is_public": bool(flavor.is_public),
                        "extra_specs": dict(specs), "access": access}
    if opts.project and (project := conn.identity.find_project(opts.project)):
        state.project_id = project.id
    if profile := conn.load_balancer.find_flavor_profile(opts.profile_name):
        state.profile = {"id": profile.id, "provider_name": profile.provider_name,
                         "flavor_data": profile.flavor_data}
    if lb_flavor := conn.load_balancer.find_flavor(opts.lb_flavor_name):
        state.lb_flavor = {"is_enabled": bool(lb_flavor.is_enabled),
                           "flavor_profile_id": lb_flavor.flavor_profile_id}
    images = conn.image.images(tag=image_tag(opts), status="active")
    state.images = sorted(({"id": image.id, "name": image.name,
                            "created_at": image.created_at or "",
                            "properties": dict(image.properties or {})} for image in images),
                          key=lambda image: image["created_at"], reverse=True)
    return state


def image_tag(opts: AmphoraFlavorOptions) -> str:
    return opts.image_tag or DEFAULT_TAG


def findings(opts: AmphoraFlavorOptions, state: CloudState,
             apply_fix: str = "amp-image openstack-config (these options) --apply"
             ) -> list[Finding]:
    """apply_fix: the command that makes what is missing (the CLI gives the operator's
    own command line, with --apply for --check).  The controller certificate's row is
    the CLI's (it asks check-certs, in verify/)."""
    found: list[Finding] = []
    if opts.sriov:
        found += _aggregate(opts, state, apply_fix)
    found += _flavor(opts, state, apply_fix)
    found += _profile(opts, state, apply_fix)
    found += _lb_flavor(opts, state, apply_fix)
    found += _image(opts, state)
    return found


def _aggregate(opts, state: CloudState, apply_fix: str) -> list[Finding]:
    name = f"aggregate {opts.aggregate_name}"
    if state.aggregate is None:
        return [Finding(MISSING, name, "no such host aggregate", apply_fix)]
    out = []
    hosts = state.aggregate["hosts"]
    absent = [host for host in opts.hosts if host not in hosts]
    if absent:
        out.append(Finding(MISSING, name, f"lacks host {', '.join(absent)}",
                           f"openstack aggregate add host {opts.aggregate_name} {absent[0]}"))
    elif not hosts:
        out.append(Finding(MISSING, name, "has no hosts", "give it the SR-IOV compute hosts: "
                           f"openstack aggregate add host {opts.aggregate_name} HOST"))
    else:
        out.append(Finding(OK, name, f"hosts {', '.join(sorted(hosts))}"))
    metadata = state.aggregate["metadata"]
    wrong = differing(aggregate_properties(opts), metadata)
    if wrong:
        lacks = ", ".join(f"{key}={value}" for key, value in wrong.items())
        out.append(Finding(WRONG, name, f"metadata lacks {lacks}",
                           f"openstack aggregate set {property_args(wrong)} "
                           f"{opts.aggregate_name}"))
    else:
        out.append(Finding(OK, name, "metadata " + ", ".join(
            f"{key}={value}" for key, value in aggregate_properties(opts).items())))
    return out


def _flavor(opts, state: CloudState, apply_fix: str) -> list[Finding]:
    name = f"compute flavor {opts.flavor_id}"
    if state.flavor is None:
        return [Finding(MISSING, name, "no such flavor", apply_fix)]
    out = []
    specs = state.flavor["extra_specs"]
    wrong = differing(flavor_properties(opts), specs)
    if wrong:
        out.append(Finding(WRONG, name, "extra specs differ: " + ", ".join(
            f"{key} is {specs.get(key, '(unset)')}, not {value}" for key, value in wrong.items()),
            f"openstack flavor set {property_args(wrong)} {opts.flavor_id}"))
    else:
        out.append(Finding(OK, name, "extra specs " + ", ".join(sorted(flavor_properties(opts)))))
    if state.aggregate is not None:
        metadata = state.aggregate["metadata"]
        unmatched = [key for key, value in specs.items()
                     if key.startswith(f"{AGGREGATE_SCOPE}:")
                     and metadata.get(key.split(":", 1)[1]) != value]
        if unmatched:
            out.append(Finding(WRONG, name, f"{', '.join(unmatched)} match no metadata of "
                               f"aggregate {opts.aggregate_name}: amphorae cannot be scheduled",
                               apply_fix))
        else:
            out.append(Finding(OK, name, f"matches aggregate {opts.aggregate_name}'s metadata"))
    if opts.project:
        if state.project_id is None:
            out.append(Finding(MISSING, f"project {opts.project}", "no such project",
                               "give Octavia's service project (openstack project list)"))
        elif state.flavor["is_public"] or state.project_id in state.flavor["access"]:
            out.append(Finding(OK, name, f"project {opts.project} may use it"))
        else:
            out.append(Finding(MISSING, name, f"project {opts.project} has no access",
                               f"openstack flavor set --project {opts.project} "
                               f"{opts.flavor_id}"))
    return out


def _profile(opts, state: CloudState, apply_fix: str) -> list[Finding]:
    name = f"flavor profile {opts.profile_name}"
    if state.profile is None:
        return [Finding(MISSING, name, "no such flavor profile", apply_fix)]
    if state.profile["provider_name"] != PROVIDER:
        return [Finding(WRONG, name, f"provider is {state.profile['provider_name']}, not "
                        f"{PROVIDER}", "make a new profile for the amphora provider")]
    try:
        data = json.loads(state.profile["flavor_data"] or "{}")
    except ValueError:
        return [Finding(WRONG, name, "its flavor data is not JSON",
                        "openstack loadbalancer flavorprofile set --flavor-data ...")]
    wanted = flavor_data(opts)
    wrong = {key: value for key, value in wanted.items() if data.get(key) != value}
    if wrong:
        text = json.dumps({**data, **wanted})
        return [Finding(WRONG, name, "flavor data differs: " + ", ".join(
            f"{key} is {json.dumps(data.get(key))}, not {json.dumps(value)}"
            for key, value in wrong.items()),
            f"openstack loadbalancer flavorprofile set --flavor-data '{text}' "
            f"{opts.profile_name}")]
    if state.flavor is None:
        return [Finding(WRONG, name, f"its compute_flavor {wanted['compute_flavor']} does "
                        "not exist", apply_fix)]
    return [Finding(OK, name, f"flavor data {json.dumps(data, sort_keys=True)}")]


def _lb_flavor(opts, state: CloudState, apply_fix: str) -> list[Finding]:
    name = f"Octavia flavor {opts.lb_flavor_name}"
    if state.lb_flavor is None:
        return [Finding(MISSING, name, "no such Octavia flavor", apply_fix)]
    if state.profile and state.lb_flavor["flavor_profile_id"] != state.profile["id"]:
        return [Finding(WRONG, name, f"uses another flavor profile than {opts.profile_name}",
                        "make a new Octavia flavor with --flavorprofile "
                        f"{opts.profile_name}")]
    if not state.lb_flavor["is_enabled"]:
        return [Finding(WRONG, name, "is disabled",
                        f"openstack loadbalancer flavor set --enable {opts.lb_flavor_name}")]
    return [Finding(OK, name, "enabled")]


def _image(opts, state: CloudState) -> list[Finding]:
    tag = image_tag(opts)
    name = f"image tagged {tag}"
    if not state.images:
        return [Finding(MISSING, name, "no active image carries the tag",
                        f"amp-image publish IMAGE --dest DIR --upload --tag {tag}")]
    newest = state.images[0]
    label = f"{name} ({newest['name']} {newest['id']}, the newest: Octavia's pick)"
    properties = newest["properties"]
    if RECORD_PROPERTY not in properties:
        return [Finding(WRONG, label, "not uploaded by amp-image (no amp_image_sha256): its "
                        "SR-IOV readiness is unknown",
                        f"amp-image publish IMAGE --dest DIR --upload --tag {tag}")]
    drivers = [d for d in str(properties.get(VF_DRIVERS_PROPERTY, "")).split(",") if d]
    if opts.sriov and not drivers:
        return [Finding(WRONG, label, "has no VF drivers: not SR-IOV ready",
                        "upload an image built with --sriov")]
    return [Finding(OK, label, f"VF drivers {', '.join(drivers)}" if drivers
                    else "amp-image's image")]


def agent_python(state: CloudState) -> str:
    """The newest tagged image's agent Python ("3.13"), "" when unknown."""
    properties = state.images[0]["properties"] if state.images else {}
    return str(properties.get(AGENT_PYTHON_PROPERTY, ""))


def table(found: list[Finding]) -> str:
    """One line per finding: status, what, finding, fix."""
    rows = [("", "what", "finding", "fix")] + [
        (f.status.upper(), f.what, f.detail, f.fix or "-") for f in found]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(" | ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])),
                                 row[3]]).rstrip() for row in rows) + "\n"
