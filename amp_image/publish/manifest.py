"""manifest.json: what a published image is and how it was built (schema
``amp-image-manifest/1``), from the image's inventory."""

from __future__ import annotations

import re
from pathlib import Path

from amp_image import version
from amp_image.builder import constraints
from amp_image.builder.digests import sha256_file
from amp_image.image.inventory import ImageInventory

MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "amp-image-manifest/1"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact_environment(env: dict[str, str]) -> dict[str, str]:
    """The build environment without secrets: passwords, tokens, proxy credentials."""
    clean = {}
    for key, value in sorted(env.items()):
        if SECRET_NAME.search(key):
            clean[key] = "<redacted>"
        else:
            clean[key] = URL_CREDENTIALS.sub("<redacted>@", value)
    return clean


def constraints_record(inventory: ImageInventory) -> dict:
    """Which upper-constraints file the agent was installed under, and its SHA-256.

    The image's record names the hash when the element wrote one; otherwise the
    file is looked up on this host (the build host, for a build-and-publish),
    then among amp-image's vendored files by name.
    """
    recorded = inventory.agent.get("AMPHORA_AGENT_CONSTRAINTS_SHA256", "")
    path = inventory.dib_environment.get("DIB_AMP_AGENT_CONSTRAINTS", "")
    record = {"file": Path(path).name if path else None, "sha256": None, "hashed_from": None}
    if recorded:
        record.update(sha256=recorded, hashed_from="image record")
    elif path and Path(path).is_file():
        record.update(sha256=sha256_file(Path(path)), hashed_from=path)
    elif path and (constraints.DATA_DIR / Path(path).name).is_file():
        vendored = constraints.DATA_DIR / Path(path).name
        record.update(sha256=sha256_file(vendored), hashed_from=f"vendored {vendored.name}")
    return record


def build_manifest(inventory: ImageInventory, *, image_file: str, disk_format: str,
                   size: int, virtual_size: int, sha256: str) -> dict:
    osr = inventory.os_release
    env = inventory.dib_environment
    return {
        "schema": MANIFEST_SCHEMA,
        "tool": {"name": "amp-image", "version": version.version()},
        "image": {"file": image_file, "disk_format": disk_format, "size": size,
                  "virtual_size": virtual_size, "sha256": sha256},
        "build_date": inventory.built.isoformat().replace("+00:00", "Z")
        if inventory.built else None,
        "os": {"distro": osr.get("ID", ""), "release": osr.get("VERSION_CODENAME", ""),
               "version": osr.get("VERSION_ID", ""), "pretty_name": osr.get("PRETTY_NAME", "")},
        "architecture": inventory.architecture,
        "kernels": inventory.kernels,
        "elements": inventory.elements,
        "build_environment": redact_environment(env),
        "agent": {
            "version": inventory.agent.get("AMPHORA_AGENT_VERSION", ""),
            "source_type": inventory.agent.get("AMPHORA_AGENT_SOURCE_TYPE", ""),
            "source": inventory.agent.get("AMPHORA_AGENT_SOURCE", ""),
            "git_ref": inventory.agent.get("AMPHORA_AGENT_GIT_REF"),
            "constraints": constraints_record(inventory),
            "python_packages": [{"name": d.name, "version": d.version}
                                for d in inventory.agent_python],
        },
        "sriov": {
            "enabled": "sriov-vf-drivers" in inventory.elements or bool(inventory.vf_drivers),
            "vf_drivers_requested": env.get("DIB_AMP_VF_DRIVERS", "").split(),
            "vf_drivers": [{"module": d.module, "kernel": d.kernel, "path": d.path}
                           for d in inventory.vf_drivers],
        },
        "enabled_units": inventory.enabled_units,
        "firewall": {
            "backend": inventory.firewall,
            "nftables": inventory.firewall == "nftables",
            "DIB_OCTAVIA_AMP_USE_NFTABLES": env.get("DIB_OCTAVIA_AMP_USE_NFTABLES"),
        },
        "packages": [{"name": p.name, "version": p.version, "architecture": p.architecture,
                      "source": p.source, "source_version": p.source_version}
                     for p in inventory.packages],
    }
