"""The Octavia flavor profile's data for the amphora provider: its keys, parsing
``--flavor-data`` and the data the options make (pure)."""

from __future__ import annotations

import json
from typing import Any

from amp_image.builder import constraints
from amp_image.cloud.options import AmphoraFlavorOptions, OpenStackConfigError, release_label

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
                f"flavor data key '{key}' needs {release_label(since)} or newer, but the "
                f"controller is octavia {octavia_version} (--octavia-version); drop it from "
                "--flavor-data"
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
