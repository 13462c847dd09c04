"""``openstack-config --apply``: what the commands would make, through an openstacksdk
Connection (the I/O; what to make comes from the pure modules beside this one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from amp_image.cloud.connection import check_catalog
from amp_image.cloud.flavor_data import flavor_data
from amp_image.cloud.options import (
    PROVIDER,
    AmphoraFlavorOptions,
    OpenStackConfigError,
    aggregate_properties,
    differing,
    flavor_properties,
)
from amp_image.cloud.validation import validate


def apply(opts: AmphoraFlavorOptions, conn: Any,
          emit: Callable[[str], None] = lambda _: None) -> None:
    """Create what the commands would, through an openstacksdk Connection.

    Re-running is safe and completes an interrupted run: an existing aggregate
    gets the missing hosts and the metadata, an existing compute flavor the
    missing (or different) extra specs and the project's access; its size, and
    an existing profile or Octavia flavor, are kept as they are.
    """
    validate(opts)
    preflight(opts, conn)
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


def preflight(opts: AmphoraFlavorOptions, conn: Any) -> None:
    """What --apply needs, checked before it changes anything: Keystone answers and takes
    the credentials, the catalog has each service, the hosts are Nova compute hosts and
    the project exists."""
    check_catalog(conn, needed_services(opts))
    if opts.sriov and opts.hosts:
        known = {service.host for service in conn.compute.services(binary="nova-compute")}
        unknown = [host for host in dict.fromkeys(opts.hosts) if host not in known]
        if unknown:
            raise OpenStackConfigError(
                f"--host {', '.join(unknown)}: not a compute host of this cloud; use one of "
                f"{', '.join(sorted(known)) or '(none: no nova-compute is registered)'} "
                "(openstack compute service list --service nova-compute)"
            )
    if opts.project and conn.identity.find_project(opts.project) is None:
        raise OpenStackConfigError(
            f"--project {opts.project}: no such project in this cloud; give Octavia's "
            "service project (openstack project list)"
        )


def needed_services(opts: AmphoraFlavorOptions) -> dict[str, str]:
    """Service type -> what it is, for the services --apply talks to."""
    return {"compute": "Nova", "load-balancer": "Octavia",
            **({"identity": "Keystone"} if opts.project else {})}


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
    wanted = differing(flavor_properties(opts), current)
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
    current = aggregate.metadata or {}
    wanted = differing(aggregate_properties(opts), current)
    if wanted:
        conn.compute.set_aggregate_metadata(aggregate, wanted)
        emit(f"set {', '.join(wanted)} on {opts.aggregate_name}")
