"""What a built image records about itself (DIB manifests beside the image)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from amp_image.inventory import key_values, parse_vf_drivers


@dataclass
class ImageRecord:
    agent: dict[str, str] = field(default_factory=dict)
    kernels: list[str] = field(default_factory=list)
    vf_drivers: list[str] = field(default_factory=list)
    firewall: str = ""
    packages: dict[str, str] = field(default_factory=dict)


def _key_values(path: Path) -> dict[str, str]:
    return key_values(path.read_text()) if path.is_file() else {}


def _dpkg_manifest(manifests: Path) -> dict[str, str]:
    for path in sorted(manifests.glob("dib-manifest-dpkg-*")):
        entries = json.loads(path.read_text())["packages"]
        return {e["package"].split(":")[0]: e["version"] for e in entries
                if e.get("status", "").startswith("ii")}
    return {}


def read_record(manifests_dir: Path | None) -> ImageRecord:
    if manifests_dir is None:
        return ImageRecord()
    base = manifests_dir / "dib-manifests"
    ours = base / "amp-image"
    record = ImageRecord(
        agent=_key_values(ours / "amphora-agent"),
        firewall=_key_values(ours / "firewall").get("AMP_FIREWALL", ""),
    )
    if (ours / "kernels").is_file():
        record.kernels = (ours / "kernels").read_text().split()
    if (ours / "vf-drivers").is_file():
        record.vf_drivers = [d.module for d in parse_vf_drivers((ours / "vf-drivers").read_text())]
    record.packages = _dpkg_manifest(base)
    return record


def recorded_agent_version(image: Path) -> str:
    """The octavia release IMAGE's agent is, as the image records it.

    From DIB's manifests beside the image (NAME.d) when they are there, else
    from the image's own /etc/amp-image/amphora-agent (a read-only mount).
    """
    from amp_image.imagefs import mounted_image
    from amp_image.publish import image_stem

    record = read_record(image.with_name(image_stem(image) + ".d"))
    version = record.agent.get("AMPHORA_AGENT_VERSION", "")
    if not version:
        with mounted_image(image) as root:
            version = _key_values(root / "etc/amp-image/amphora-agent").get(
                "AMPHORA_AGENT_VERSION", "")
    return version
