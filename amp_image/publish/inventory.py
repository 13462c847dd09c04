"""What an image contains, read offline from its mounted root file system.

The image is the source of truth: its dpkg database, os-release, the agent's
virtualenv, the record amp-image's elements leave in ``/etc/amp-image`` and
the copy of DIB's manifests that DIB keeps in ``/etc/dib-manifests``.
"""

from __future__ import annotations

import email.parser
import email.utils
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

AGENT_VENV = Path("opt/amphora-agent-venv")

# disk-image-create's options that take a value (its getopt line).
DIB_VALUE_OPTIONS = {
    "-a", "-o", "-t", "-p", "--min-tmpfs", "--image-size", "--image-cache",
    "--max-online-resize", "--mkfs-options", "--qemu-img-options", "--ramdisk-element",
    "--root-label", "--install-type", "--docker-target", "--logfile",
}


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    source: str
    source_version: str
    maintainer: str = ""
    homepage: str = ""
    summary: str = ""


@dataclass(frozen=True)
class PythonDist:
    name: str
    version: str


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
class ImageInventory:
    os_release: dict[str, str] = field(default_factory=dict)
    architecture: str = ""
    packages: list[DebPackage] = field(default_factory=list)
    agent_python: list[PythonDist] = field(default_factory=list)
    agent: dict[str, str] = field(default_factory=dict)
    firewall: str = ""
    kernels: list[str] = field(default_factory=list)
    vf_drivers: list[VfDriver] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    dib_environment: dict[str, str] = field(default_factory=dict)
    built: datetime | None = None
    # "TARGET.wants/UNIT" for each unit enabled in /etc/systemd/system.
    enabled_units: list[str] = field(default_factory=list)
    # apt's package indexes at build time (/etc/amp-image/apt-indexes).
    apt_indexes: list[AptIndex] = field(default_factory=list)


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


def _paragraphs(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs; continuation lines are appended to their field."""
    paragraphs, fields, last = [], {}, None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, last = {}, None
        elif line[0] in " \t" and last:
            fields[last] += "\n" + line[1:]
        else:
            key, _, value = line.partition(":")
            last = key.strip()
            fields[last] = value.strip()
    return paragraphs


def parse_dpkg_status(text: str) -> list[DebPackage]:
    """The installed packages of a dpkg status file, sorted by name and architecture."""
    packages = []
    for p in _paragraphs(text):
        if p.get("Status", "").split()[-1:] != ["installed"]:
            continue
        source, _, source_version = p.get("Source", "").partition(" ")
        version = p.get("Version", "")
        packages.append(DebPackage(
            name=p["Package"],
            version=version,
            architecture=p.get("Architecture", ""),
            source=source or p["Package"],
            source_version=source_version.strip("()") or version,
            maintainer=p.get("Maintainer", ""),
            homepage=p.get("Homepage", ""),
            summary=p.get("Description", "").split("\n", 1)[0],
        ))
    return sorted(packages, key=lambda d: (d.name, d.architecture))


def parse_dib_environment(text: str) -> dict[str, str]:
    """DIB's ``dib_environment``: ``declare -x KEY="value"`` lines."""
    env = {}
    for line in text.splitlines():
        words = shlex.split(line) if line.strip() else []
        if len(words) >= 3 and words[0] == "declare":
            key, _, value = words[2].partition("=")
            env[key] = value
    return env


def elements_from_arguments(text: str) -> list[str]:
    """The elements on DIB's command line (``dib_arguments``), in order."""
    elements, words = [], iter(shlex.split(text))
    for word in words:
        if word in DIB_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            elements.append(word)
    return elements


def parse_vf_drivers(text: str) -> list[VfDriver]:
    drivers = []
    for line in text.splitlines():
        words = line.split()
        if words:
            drivers.append(VfDriver(*words[:3], *[""] * (3 - len(words[:3]))))
    return drivers


def python_dists(venv: Path) -> list[PythonDist]:
    """Distributions installed in a virtualenv, from their dist-info METADATA."""
    dists = set()
    for metadata in venv.glob("lib/python3*/site-packages/*.dist-info/METADATA"):
        headers = email.parser.Parser().parsestr(
            metadata.read_text(errors="replace"), headersonly=True)
        if headers["Name"] and headers["Version"]:
            dists.add(PythonDist(headers["Name"], headers["Version"]))
    return sorted(dists, key=lambda d: (d.name.lower(), d.version))


def parse_apt_indexes(text: str) -> list[AptIndex]:
    """amphora-base's record: ``LIST_NAME DATE`` per line."""
    indexes = []
    for line in text.splitlines():
        name, _, date = line.strip().partition(" ")
        if name:
            indexes.append(AptIndex(name, date.strip()))
    return indexes


def enabled_units(root: Path) -> list[str]:
    """Units enabled through /etc/systemd/system/*.wants symlinks, as TARGET.wants/UNIT."""
    wants = root / "etc/systemd/system"
    return sorted(f"{link.parent.name}/{link.name}" for link in wants.glob("*.wants/*")
                  if link.is_symlink() or link.is_file())


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def _build_time(record_dir: Path) -> datetime | None:
    """amphora-base writes /etc/amp-image/kernels while finalising the image."""
    files = [p for p in record_dir.glob("*") if p.is_file()]
    if not files:
        return None
    newest = max(p.stat().st_mtime for p in files)
    return datetime.fromtimestamp(int(newest), UTC)


def read_inventory(root: Path, manifests: Path | None = None) -> ImageInventory:
    """Everything publishing needs from a mounted image root.

    ``manifests`` is DIB's ``NAME.d/dib-manifests`` beside the image; it is used
    only for what the image's own ``/etc/dib-manifests`` lacks.
    """
    record = root / "etc/amp-image"
    dib = root / "etc/dib-manifests"
    fallback = manifests if manifests and manifests.is_dir() else dib
    packages = parse_dpkg_status(_read(root / "var/lib/dpkg/status"))
    arguments = _read(dib / "dib_arguments") or _read(fallback / "dib_arguments")
    environment = _read(dib / "dib_environment") or _read(fallback / "dib_environment")
    return ImageInventory(
        os_release=key_values(_read(root / "etc/os-release") or _read(root / "usr/lib/os-release")),
        architecture=native_architecture(packages),
        packages=packages,
        agent_python=python_dists(root / AGENT_VENV),
        agent=key_values(_read(record / "amphora-agent")),
        firewall=key_values(_read(record / "firewall")).get("AMP_FIREWALL", ""),
        kernels=_read(record / "kernels").split() or
        sorted(p.name for p in (root / "lib/modules").glob("*")),
        vf_drivers=parse_vf_drivers(_read(record / "vf-drivers")),
        elements=elements_from_arguments(arguments),
        dib_environment=parse_dib_environment(environment),
        built=_build_time(record),
        enabled_units=enabled_units(root),
        apt_indexes=parse_apt_indexes(_read(record / "apt-indexes")),
    )


def native_architecture(packages: list[DebPackage]) -> str:
    """The image's dpkg architecture: the one base-files (always native) is built for."""
    return next((p.architecture for p in packages if p.name == "base-files"), "")
