"""What an image contains, read offline from its mounted root file system.

The image is the source of truth: its dpkg database, os-release, the agent's
virtualenv, the record amp-image's elements leave in ``/etc/amp-image`` (read by
:mod:`amp_image.image.records`) and
the copy of DIB's manifests that DIB keeps in ``/etc/dib-manifests``.
"""

from __future__ import annotations

import email.parser
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from amp_image.image.dpkg import DebPackage, parse_dpkg_status
from amp_image.image.records import (
    AptIndex,
    VfDriver,
    key_values,
    read_root_record,
    recorded_build_time,
)

AGENT_VENV = Path("opt/amphora-agent-venv")

# disk-image-create's options that take a value (its getopt line).
DIB_VALUE_OPTIONS = {
    "-a", "-o", "-t", "-p", "--min-tmpfs", "--image-size", "--image-cache",
    "--max-online-resize", "--mkfs-options", "--qemu-img-options", "--ramdisk-element",
    "--root-label", "--install-type", "--docker-target", "--logfile",
}


@dataclass(frozen=True)
class PythonDist:
    name: str
    version: str


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


def python_dists(venv: Path) -> list[PythonDist]:
    """Distributions installed in a virtualenv, from their dist-info METADATA."""
    dists = set()
    for metadata in venv.glob("lib/python3*/site-packages/*.dist-info/METADATA"):
        headers = email.parser.Parser().parsestr(
            metadata.read_text(errors="replace"), headersonly=True)
        if headers["Name"] and headers["Version"]:
            dists.add(PythonDist(headers["Name"], headers["Version"]))
    return sorted(dists, key=lambda d: (d.name.lower(), d.version))


def enabled_units(root: Path) -> list[str]:
    """Units enabled through /etc/systemd/system/*.wants symlinks, as TARGET.wants/UNIT."""
    wants = root / "etc/systemd/system"
    return sorted(f"{link.parent.name}/{link.name}" for link in wants.glob("*.wants/*")
                  if link.is_symlink() or link.is_file())


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def read_inventory(root: Path, manifests: Path | None = None) -> ImageInventory:
    """Everything publishing needs from a mounted image root.

    ``manifests`` is DIB's ``NAME.d/dib-manifests`` beside the image; it is used
    only for what the image's own ``/etc/dib-manifests`` lacks.
    """
    record = read_root_record(root)
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
        agent=record.agent,
        firewall=record.firewall,
        kernels=record.kernels or sorted(p.name for p in (root / "lib/modules").glob("*")),
        vf_drivers=record.vf_driver_files,
        elements=elements_from_arguments(arguments),
        dib_environment=parse_dib_environment(environment),
        built=recorded_build_time(root),
        enabled_units=enabled_units(root),
        apt_indexes=record.apt_indexes,
    )


def native_architecture(packages: list[DebPackage]) -> str:
    """The image's dpkg architecture: the one base-files (always native) is built for."""
    return next((p.architecture for p in packages if p.name == "base-files"), "")
