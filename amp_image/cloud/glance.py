"""glance.json: the Glance image Octavia finds an amphora image by, and the
``openstack image create`` command line that makes it."""

from __future__ import annotations

import math
import shlex

from amp_image.builder.compat import UEFI_ONLY_ARCHES
from amp_image.cloud.rotation import RECORD_PROPERTY
from amp_image.errors import PublishError
from amp_image.image.inventory import ImageInventory
from amp_image.image.python_version import python3_version

GLANCE_FILE = "glance.json"
DEFAULT_TAG = "amphora"
VF_DRIVERS_PROPERTY = "amp_image_vf_drivers"
# The agent's Python ("3.13"), which decides how strictly it checks the controller's
# certificate (openstack-config --check --controller-cert).
AGENT_PYTHON_PROPERTY = "amp_image_agent_python"
# qemu-img's format names -> Glance disk formats.
DISK_FORMATS = {"qcow2": "qcow2", "raw": "raw", "vpc": "vhd", "vhdx": "vhdx", "vmdk": "vmdk"}
# dpkg architectures -> Glance/Nova hw_architecture.
HW_ARCHITECTURES = {
    "amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l", "ppc64el": "ppc64le",
    "s390x": "s390x", "i386": "i686",
}


def glance_spec(inventory: ImageInventory, *, image_file: str, name: str, disk_format: str,
                virtual_size: int, sha256: str, tag: str = DEFAULT_TAG,
                signature: dict[str, str] | None = None) -> dict:
    """The Glance image Octavia looks for (by tag, private to its project); signature:
    the img_signature* properties of a signed image.  The image file's sha256 is
    amp-image's record on it (what --rotate matches)."""
    try:
        hw_architecture = HW_ARCHITECTURES[inventory.architecture]
    except KeyError:
        raise PublishError(
            f"unknown image architecture '{inventory.architecture}' (from the image's dpkg "
            f"database); publish images of {', '.join(HW_ARCHITECTURES)}"
        ) from None
    properties = {
        "hw_architecture": hw_architecture,
        "hw_rng_model": "virtio",
        **({"hw_firmware_type": "uefi"} if inventory.architecture in UEFI_ONLY_ARCHES else {}),
        "os_distro": inventory.os_release.get("ID", ""),
        "os_version": inventory.os_release.get("VERSION_ID", ""),
        RECORD_PROPERTY: sha256,
        # SR-IOV readiness, for openstack-config --check: the VF drivers the image has.
        VF_DRIVERS_PROPERTY: ",".join(dict.fromkeys(d.module for d in inventory.vf_drivers)),
        AGENT_PYTHON_PROPERTY: agent_python(inventory),
        **(signature or {}),
    }
    spec = {
        "name": name,
        "file": image_file,
        "disk_format": disk_format,
        "container_format": "bare",
        "visibility": "private",
        "tags": [tag],
        "min_disk": max(1, math.ceil(virtual_size / 2**30)),
        "properties": properties,
    }
    spec["command"] = shlex.join(image_create_argv(spec))
    return spec


def agent_python(inventory: ImageInventory) -> str:
    found = python3_version({package.name: package.version for package in inventory.packages})
    return ".".join(map(str, found)) if found else ""


def image_create_argv(spec: dict) -> list[str]:
    argv = ["openstack", "image", "create", "--disk-format", spec["disk_format"],
            "--container-format", spec["container_format"], f"--{spec['visibility']}"]
    for tag in spec["tags"]:
        argv += ["--tag", tag]
    argv += ["--min-disk", str(spec["min_disk"])]
    for key, value in spec["properties"].items():
        argv += ["--property", f"{key}={value}"]
    return [*argv, "--file", spec["file"], spec["name"]]
