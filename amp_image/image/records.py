"""What a built image records about itself in /etc/amp-image.

The elements write one file per fact (``amphora-agent``, ``firewall``,
``kernels``, ``vf-drivers``, ``sshd``, ``root-password``); ``amphora-base`` copies them to DIB's
manifests beside the image (``NAME.d/dib-manifests/amp-image``).  One parser,
:func:`parse_record`, reads them wherever they come from: that copy, a
read-only mount of the image, or a booted amphora over SSH.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RECORD_DIR = "/etc/amp-image"
SSHD_RECORD = f"{RECORD_DIR}/sshd"
VF_DRIVERS_RECORD = f"{RECORD_DIR}/vf-drivers"
FIREWALL_RECORD = f"{RECORD_DIR}/firewall"
AGENT_RECORD = f"{RECORD_DIR}/amphora-agent"
ROOT_PASSWORD_RECORD = f"{RECORD_DIR}/root-password"


@dataclass(frozen=True)
class VfDriver:
    module: str
    kernel: str
    path: str


@dataclass(frozen=True)
class AptIndex:
    """A Release file apt fetched during the build: where from, and the date in it."""

    list_name: str     # apt's file name for it, minus _InRelease/_Release
    date: str          # its Date: field, as the archive wrote it

    @property
    def location(self) -> str:
        """deb.debian.org_debian_dists_trixie -> deb.debian.org/debian/dists/trixie
        (apt writes '/' as '_' and a literal '_' as %5f)."""
        return self.list_name.replace("_", "/").replace("%5f", "_")

    @property
    def suite(self) -> str:
        return self.location.partition("/dists/")[2]

    @property
    def date_iso(self) -> str | None:
        try:
            when = email.utils.parsedate_to_datetime(self.date)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
    # apt's package indexes at build time (apt-indexes).
    apt_indexes: list[AptIndex] = field(default_factory=list)
    # root-passwd (a debug image): root has a password, on the serial console and,
    # when asked, over SSH.  Never the password or its hash.
    root_password: bool = False
    root_password_ssh: bool = False
    # Debian's name for the image's architecture (amd64, arm64).
    architecture: str = ""

    @property
    def has_sshd(self) -> bool:
        return self.sshd != "absent"


def key_values(text: str) -> dict[str, str]:
    """KEY=VALUE lines (os-release, amp-image records); quotes around values dropped."""
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            pairs[key.strip()] = value
    return pairs


def parse_vf_drivers(text: str) -> list[VfDriver]:
    drivers = []
    for line in text.splitlines():
        words = line.split()
        if words:
            drivers.append(VfDriver(*words[:3], *[""] * (3 - len(words[:3]))))
    return drivers


def parse_apt_indexes(text: str) -> list[AptIndex]:
    """amphora-base's record: ``LIST_NAME DATE`` per line."""
    indexes = []
    for line in text.splitlines():
        name, _, date = line.strip().partition(" ")
        if name:
            indexes.append(AptIndex(name, date.strip()))
    return indexes


def architecture_of(recorded: str, kernels: list[str]) -> str:
    """The record's architecture; an image built before that record names it in its
    kernels' flavour (6.1.0-56-amd64, 6.12.57+deb13-cloud-arm64)."""
    if recorded:
        return recorded
    flavours = {kernel.rsplit("-", 1)[-1] for kernel in kernels}
    return flavours.pop() if len(flavours) == 1 else ""


def parse_record(read: Callable[[str], str | None]) -> ImageRecord:
    """The record from ``read(NAME)``: the text of /etc/amp-image/NAME, None if missing."""
    def text(name: str) -> str:
        return read(name) or ""

    vf_text = read("vf-drivers")
    files = parse_vf_drivers(vf_text or "")
    root_password = key_values(text("root-password"))
    kernels = text("kernels").split()
    return ImageRecord(
        agent=key_values(text("amphora-agent")),
        kernels=kernels,
        architecture=architecture_of(text("architecture").strip(), kernels),
        vf_drivers=list(dict.fromkeys(d.module for d in files)),
        vf_driver_files=files,
        sriov=vf_text is not None,
        firewall=key_values(text("firewall")).get("AMP_FIREWALL", ""),
        sshd=key_values(text("sshd")).get("AMP_SSHD", ""),
        apt_indexes=parse_apt_indexes(text("apt-indexes")),
        root_password=root_password.get("AMP_ROOT_PASSWORD") == "set",
        root_password_ssh=root_password.get("AMP_ROOT_PASSWORD_SSH") == "yes",
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


def read_root_record(root: Path) -> ImageRecord:
    """The record in an image's root file system (a mount, or an unpacked tree)."""
    return parse_record(_dir_reader(root / RECORD_DIR.lstrip("/")))


def recorded_build_time(root: Path) -> datetime | None:
    """When the image was finalised: amphora-base writes the record's last files then."""
    record_dir = root / RECORD_DIR.lstrip("/")
    files = [p for p in record_dir.glob("*") if p.is_file()]
    if not files:
        return None
    newest = max(p.stat().st_mtime for p in files)
    return datetime.fromtimestamp(int(newest), UTC)


def read_record(manifests_dir: Path | None) -> ImageRecord:
    """The record in DIB's manifests (``NAME.d``, beside the image)."""
    if manifests_dir is None:
        return ImageRecord()
    base = manifests_dir / "dib-manifests"
    record = parse_record(_dir_reader(base / "amp-image"))
    record.packages = _dpkg_manifest(base)
    return record


def image_stem(image: Path) -> str:
    """amphora-x64-haproxy.qcow2 -> amphora-x64-haproxy (DIB's NAME)."""
    return image.name.rsplit(".", 1)[0] if "." in image.name else image.name


def manifests_beside(image: Path) -> Path:
    """DIB leaves NAME.d (with dib-manifests/ in it) beside NAME.FORMAT."""
    return image.with_name(image_stem(image) + ".d")


def default_manifests(image: Path) -> Path:
    """DIB leaves NAME.d/dib-manifests beside NAME.FORMAT."""
    return manifests_beside(image) / "dib-manifests"


def read_image_record(image: Path) -> ImageRecord:
    """What IMAGE records about itself, read without booting it.

    From DIB's copy beside the image (NAME.d) when it is there, else from the
    image's own /etc/amp-image (a read-only mount: needs root).
    """
    manifests = manifests_beside(image)
    if (manifests / "dib-manifests" / "amp-image").is_dir():
        return read_record(manifests)
    from amp_image.image.imagefs import mounted_image

    with mounted_image(image) as root:
        return read_root_record(root)


def recorded_agent_version(image: Path) -> str:
    """The octavia release IMAGE's agent is, as the image records it.

    From DIB's manifests beside the image (NAME.d) when they are there, else
    from the image's own /etc/amp-image/amphora-agent (a read-only mount).
    """
    from amp_image.image.imagefs import mounted_image

    record = read_record(manifests_beside(image))
    version = record.agent.get("AMPHORA_AGENT_VERSION", "")
    if not version:
        with mounted_image(image) as root:
            version = read_root_record(root).agent.get("AMPHORA_AGENT_VERSION", "")
    return version
