"""What a built image records about itself in /etc/amp-image.

The elements write one file per fact (``amphora-agent``, ``firewall``,
``kernels``, ``vf-drivers``, ``sshd``); ``amphora-base`` copies them to DIB's
manifests beside the image (``NAME.d/dib-manifests/amp-image``).  One parser,
:func:`parse_record`, reads them wherever they come from: that copy, a
read-only mount of the image, or a booted amphora over SSH.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amp_image.publish.inventory import VfDriver, key_values, parse_vf_drivers

RECORD_DIR = "/etc/amp-image"
SSHD_RECORD = f"{RECORD_DIR}/sshd"
VF_DRIVERS_RECORD = f"{RECORD_DIR}/vf-drivers"
FIREWALL_RECORD = f"{RECORD_DIR}/firewall"
AGENT_RECORD = f"{RECORD_DIR}/amphora-agent"


@dataclass
class ImageRecord:
    agent: dict[str, str] = field(default_factory=dict)
    kernels: list[str] = field(default_factory=list)
    # Each VF driver module once, in the record's order.
    vf_drivers: list[str] = field(default_factory=list)
    # Every line of the vf-drivers record: module, kernel, path.
    vf_driver_files: list[VfDriver] = field(default_factory=list)
    # Whether there is a vf-drivers record at all: sriov-vf-drivers writes it;
    # an image built with --no-sriov has none.
    sriov: bool = False
    firewall: str = ""
    # AMP_SSHD: "present" (rebind-sshd), "absent" (remove-sshd, -n/--no-sshd), or ""
    # for an image older than this record, which has sshd.
    sshd: str = ""
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def has_sshd(self) -> bool:
        return self.sshd != "absent"


def parse_record(read: Callable[[str], str | None]) -> ImageRecord:
    """The record from ``read(NAME)``: the text of /etc/amp-image/NAME, None if missing."""
    def text(name: str) -> str:
        return read(name) or ""

    vf_text = read("vf-drivers")
    files = parse_vf_drivers(vf_text or "")
    return ImageRecord(
        agent=key_values(text("amphora-agent")),
        kernels=text("kernels").split(),
        vf_drivers=list(dict.fromkeys(d.module for d in files)),
        vf_driver_files=files,
        sriov=vf_text is not None,
        firewall=key_values(text("firewall")).get("AMP_FIREWALL", ""),
        sshd=key_values(text("sshd")).get("AMP_SSHD", ""),
    )


def _dir_reader(directory: Path) -> Callable[[str], str | None]:
    def read(name: str) -> str | None:
        path = directory / name
        return path.read_text(errors="replace") if path.is_file() else None
    return read


def _dpkg_manifest(manifests: Path) -> dict[str, str]:
    for path in sorted(manifests.glob("dib-manifest-dpkg-*")):
        entries = json.loads(path.read_text())["packages"]
        return {e["package"].split(":")[0]: e["version"] for e in entries
                if e.get("status", "").startswith("ii")}
    return {}


def read_record(manifests_dir: Path | None) -> ImageRecord:
    """The record in DIB's manifests (``NAME.d``, beside the image)."""
    if manifests_dir is None:
        return ImageRecord()
    base = manifests_dir / "dib-manifests"
    record = parse_record(_dir_reader(base / "amp-image"))
    record.packages = _dpkg_manifest(base)
    return record


def _manifests_beside(image: Path) -> Path:
    from amp_image.publish.publisher import image_stem

    return image.with_name(image_stem(image) + ".d")


def read_image_record(image: Path) -> ImageRecord:
    """What IMAGE records about itself, read without booting it.

    From DIB's copy beside the image (NAME.d) when it is there, else from the
    image's own /etc/amp-image (a read-only mount: needs root).
    """
    manifests = _manifests_beside(image)
    if (manifests / "dib-manifests" / "amp-image").is_dir():
        return read_record(manifests)
    from amp_image.image.imagefs import mounted_image

    with mounted_image(image) as root:
        return parse_record(_dir_reader(root / RECORD_DIR.lstrip("/")))


def recorded_agent_version(image: Path) -> str:
    """The octavia release IMAGE's agent is, as the image records it.

    From DIB's manifests beside the image (NAME.d) when they are there, else
    from the image's own /etc/amp-image/amphora-agent (a read-only mount).
    """
    from amp_image.image.imagefs import mounted_image

    record = read_record(_manifests_beside(image))
    version = record.agent.get("AMPHORA_AGENT_VERSION", "")
    if not version:
        with mounted_image(image) as root:
            version = parse_record(_dir_reader(root / RECORD_DIR.lstrip("/"))).agent.get(
                "AMPHORA_AGENT_VERSION", "")
    return version
