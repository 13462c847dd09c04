"""A CycloneDX SBOM of an image: its Debian packages and the agent's Python packages.

Made with cyclonedx-python-lib and checked against the CycloneDX JSON schema
before it is written.
"""

from __future__ import annotations

import warnings
from datetime import datetime

from cyclonedx.contrib.this.builders import this_component as cyclonedx_lib_component
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from amp_image.errors import AmpImageError
from amp_image.image.dpkg import DebPackage
from amp_image.image.inventory import ImageInventory, PythonDist

SBOM_FILE = "sbom.cdx.json"
SCHEMA_VERSION = SchemaVersion.V1_6


class SbomError(AmpImageError):
    """The SBOM does not validate against its schema."""


def deb_purl(pkg: DebPackage, distro: str) -> PackageURL:
    qualifiers = {"arch": pkg.architecture}
    if distro:
        qualifiers["distro"] = distro
    if pkg.source != pkg.name or pkg.source_version != pkg.version:
        qualifiers["upstream"] = f"{pkg.source}@{pkg.source_version}"
    return PackageURL(type="deb", namespace="debian", name=pkg.name, version=pkg.version,
                      qualifiers=qualifiers)


def deb_component(pkg: DebPackage, distro: str) -> Component:
    purl = deb_purl(pkg, distro)
    return Component(
        name=pkg.name, version=pkg.version, type=ComponentType.LIBRARY, purl=purl,
        bom_ref=purl.to_string(), publisher=pkg.maintainer or None,
        description=pkg.summary or None,
        properties=[Property(name="amp-image:package-manager", value="dpkg")],
    )


def python_component(dist: PythonDist) -> Component:
    purl = PackageURL(type="pypi", name=dist.name.lower().replace("_", "-"), version=dist.version)
    return Component(
        name=dist.name, version=dist.version, type=ComponentType.LIBRARY, purl=purl,
        bom_ref=purl.to_string(),
        properties=[Property(name="amp-image:location", value="/opt/amphora-agent-venv")],
    )


def make_bom(inventory: ImageInventory, *, image_name: str, image_sha256: str,
             tool_version: str, timestamp: datetime) -> Bom:
    """The image as the BOM's subject, every package a component it depends on."""
    os_release = inventory.os_release
    distro = f"{os_release.get('ID', '')}-{os_release.get('VERSION_ID', '')}".strip("-")
    subject = Component(
        name=image_name, type=ComponentType.OPERATING_SYSTEM, bom_ref="image",
        version=timestamp.strftime("%Y%m%dT%H%M%SZ"),
        description=f"Octavia amphora image ({os_release.get('PRETTY_NAME', 'unknown OS')}, "
                    f"{inventory.architecture})",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_sha256)],
        properties=[Property(name=f"amp-image:{k}", value=v) for k, v in (
            ("os", os_release.get("ID", "")),
            ("os-release", os_release.get("VERSION_CODENAME", "")),
            ("os-version", os_release.get("VERSION_ID", "")),
            ("architecture", inventory.architecture),
            ("kernel", " ".join(inventory.kernels)),
            ("agent-version", inventory.agent.get("AMPHORA_AGENT_VERSION", "")),
        ) if v],
    )
    tool = Component(name="amp-image", version=tool_version, type=ComponentType.APPLICATION)
    bom = Bom(metadata=BomMetaData(component=subject, timestamp=timestamp))
    bom.metadata.tools.components.update([tool, cyclonedx_lib_component()])
    components = [deb_component(p, distro) for p in inventory.packages]
    components += [python_component(d) for d in inventory.agent_python]
    bom.components.update(components)
    bom.register_dependency(subject, components)
    return bom


def render(bom: Bom) -> str:
    with warnings.catch_warnings():
        # The library warns about things the schema allows (e.g. no licenses).
        warnings.simplefilter("ignore")
        return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def validate(text: str) -> None:
    """Raise SbomError unless text is valid CycloneDX JSON of SCHEMA_VERSION."""
    # Imported here: jsonschema's format checkers compile a grammar on import (about two
    # seconds), which every amp-image command would pay, not only publish.
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SCHEMA_VERSION).validate_str(text)
    if error is not None:
        detail = " ".join(str(error).split())[:300]
        raise SbomError(f"the SBOM does not validate against CycloneDX "
                        f"{SCHEMA_VERSION.to_version()}: {detail}; report this as an amp-image bug")


def sbom_json(inventory: ImageInventory, **kw) -> str:
    """The validated CycloneDX JSON document for an image (see make_bom for kw)."""
    text = render(make_bom(inventory, **kw))
    validate(text)
    return text
