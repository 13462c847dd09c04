"""An image's dpkg status file, read with python-debian's deb822 parser."""

from __future__ import annotations

from dataclasses import dataclass

from debian.deb822 import Deb822


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



def parse_dpkg_status(text: str) -> list[DebPackage]:
    """The installed packages of a dpkg status file, sorted by name and architecture."""
    packages = []
    for p in Deb822.iter_paragraphs(text.splitlines()):
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
            summary=p.get("Description", "").split("\n", 1)[0].strip(),
        ))
    return sorted(packages, key=lambda d: (d.name, d.architecture))
