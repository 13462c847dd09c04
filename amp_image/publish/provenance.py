"""Build provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate.

The subject is the published image and its SHA-256.  The predicate names what
the build consumed, each as a SLSA ResourceDescriptor in
``buildDefinition.resolvedDependencies``:

* amp-image itself: its version and git commit (``git rev-parse HEAD`` in the
  checkout the package runs from, else the commit pip recorded when installing
  it from git);
* every DIB element of the image (those on DIB's command line and what their
  ``element-deps`` pull in, resolved as DIB does), with a SHA-256 over each
  element folder's content (``amp_image.builder.digests.tree_digest``, its ``tests/``
  left out);
* diskimage-builder's version (from the build log beside the image, else the
  one installed here);
* the Debian mirror and, for each package index apt used, the date of its
  Release file (what amphora-base recorded in ``/etc/amp-image/apt-indexes``);
* the agent: source, version, git commit for git sources;
* the upper-constraints file's SHA-256 (AMPHORA_AGENT_CONSTRAINTS_SHA256);
* the kernel: its release and Debian package.

Elements, amp-image's commit and diskimage-builder's version are taken where
the image is published: for ``amp-image build --publish-dir`` that is the build
itself; ``annotations.observed`` says so for each.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
from pathlib import Path

from amp_image import version
from amp_image.builder import dib_elements
from amp_image.builder.digests import tree_digest
from amp_image.image.inventory import ImageInventory

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# What the predicate's fields mean for an amp-image build (docs/publishing.md).
BUILD_TYPE = "urn:amp-image:buildtype:diskimage-builder-amphora:v1"
BUILDER_ID = "urn:amp-image:builder:local"
PROVENANCE_FILE = "provenance.json"
ENVELOPE_FILE = "provenance.dsse.json"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DIB_LOG_VERSION = re.compile(r"diskimage-builder version (\S+)")


def element_paths() -> list[Path]:
    """Where elements are looked up: amp-image's first (it overrides), then DIB's."""
    return [p for p in (dib_elements.elements_dir(), dib_elements.dib_elements_dir()) if p.is_dir()]


def resolve_elements(requested: list[str], paths: list[Path]) -> dict[str, Path | None]:
    """The elements and their dependencies, as DIB expands them; an element not found
    here maps to None (and is not expanded)."""
    found: dict[str, Path] = {}
    for folder in reversed(paths):
        for element in folder.iterdir():
            if element.is_dir():
                found[element.name] = element
    try:
        from diskimage_builder import element_dependencies
        # Its warnings (an element overriding another) are not the publisher's concern.
        logging.getLogger(element_dependencies.__name__).setLevel(logging.ERROR)
        resolved = element_dependencies.get_elements(
            requested, paths=":".join(str(p) for p in paths))
        result: dict[str, Path | None] = {name: Path(path) for name, path in resolved}
    except Exception:  # a missing element, no OS element, DIB not importable: no expansion
        result = {}
    for name in requested:
        result.setdefault(name, found.get(name))
    return dict(sorted(result.items()))


def element_descriptors(requested: list[str], architecture: str) -> list[dict]:
    if not requested:
        return []
    paths = element_paths()
    amp_elements = dib_elements.elements_dir().resolve()
    descriptors = []
    for name, path in resolve_elements(dib_elements.dib_elements(requested, architecture),
                                       paths).items():
        annotations = {"requested": name in requested}
        item: dict = {"name": f"element:{name}"}
        if path is None:
            item["uri"] = f"urn:amp-image:element:{name}"
            annotations["observed"] = "not found where the image was published"
        else:
            origin = ("amp-image" if path.resolve().is_relative_to(amp_elements)
                      else "diskimage-builder")
            item["uri"] = f"urn:amp-image:element:{origin}:{name}"
            item["digest"] = {"sha256": tree_digest(path, element=True)}
            annotations.update(origin=origin, observed="where the image was published")
        item["annotations"] = annotations
        descriptors.append(item)
    return descriptors


def amp_image_source() -> dict:
    """amp-image's version and commit (amp_image.version.source) as a resolved dependency."""
    src = version.source()
    item: dict = {"name": "amp-image", "uri": src.uri}
    if src.commit:
        item["digest"] = {"gitCommit": src.commit}
    item["annotations"] = {"version": src.version, "commit_from": src.commit_from}
    if src.uncommitted_changes is not None:
        item["annotations"]["uncommitted_changes"] = src.uncommitted_changes
    return item


def dib_version(build_log: Path | None) -> tuple[str, str]:
    """(version, where it was read): the build log's first lines, else installed here."""
    if build_log and build_log.is_file():
        with build_log.open(errors="replace") as f:
            for _, line in zip(range(50), f, strict=False):
                match = DIB_LOG_VERSION.search(line)
                if match:
                    return match.group(1), "build log"
    try:
        return importlib.metadata.version("diskimage-builder"), "installed where published"
    except importlib.metadata.PackageNotFoundError:
        return "unknown", "not found"


def mirror_descriptors(inventory: ImageInventory) -> list[dict]:
    """The Debian mirror(s) and each package index with its Release date."""
    env = inventory.dib_environment
    mirrors = [env.get("DIB_DISTRIBUTION_MIRROR") or DEFAULT_MIRROR,
               env.get("DIB_DEBIAN_SECURITY_MIRROR") or DEFAULT_SECURITY_MIRROR]
    release = env.get("DIB_RELEASE") or inventory.os_release.get("VERSION_CODENAME", "")
    if not inventory.apt_indexes:
        return [{"name": "debian-mirror", "uri": mirrors[0],
                 "annotations": {"suite": release, "index_date": None,
                                 "observed": "the image records no package index dates "
                                             "(built before amp-image recorded them)"}}]
    descriptors = []
    for index in inventory.apt_indexes:
        location = index.location
        uri = f"http://{location}"
        for mirror in mirrors:
            bare = mirror.split("://", 1)[-1].split("@")[-1].rstrip("/")
            if location.startswith(bare + "/dists/"):
                uri = mirror.rstrip("/") + location[len(bare):]
        descriptors.append({"name": "debian-mirror", "uri": uri,
                            "annotations": {"suite": index.suite,
                                            "index_date": index.date_iso,
                                            "release_file_date": index.date}})
    return descriptors


def agent_descriptor(inventory: ImageInventory) -> dict:
    agent = inventory.agent
    version = agent.get("AMPHORA_AGENT_VERSION", "")
    kind = agent.get("AMPHORA_AGENT_SOURCE_TYPE", "")
    source = agent.get("AMPHORA_AGENT_SOURCE", "")
    commit = agent.get("AMPHORA_AGENT_GIT_REF", "")
    item: dict = {"name": "amphora-agent",
                  "annotations": {"version": version, "source_type": kind, "source": source}}
    if kind == "git" and source:
        item["uri"] = f"git+{source}" + (f"@{commit}" if commit else "")
    elif kind in ("dir", "wheelhouse") and source:
        item["uri"] = f"file://{source}"
    else:
        item["uri"] = f"pkg:pypi/octavia@{version}" if version else "pkg:pypi/octavia"
    if re.fullmatch(r"[0-9a-f]{40}", commit):
        item["digest"] = {"gitCommit": commit}
    return item


def constraints_descriptor(record: dict) -> dict:
    item: dict = {"name": "upper-constraints",
                  "uri": f"urn:amp-image:constraints:{record.get('file') or 'unknown'}",
                  "annotations": {"file": record.get("file"),
                                  "hashed_from": record.get("hashed_from")}}
    if record.get("sha256"):
        item["digest"] = {"sha256": record["sha256"]}
    return item


def kernel_descriptors(inventory: ImageInventory) -> list[dict]:
    packages = {p.name: p for p in inventory.packages}
    items = []
    for release in inventory.kernels:
        package = packages.get(f"linux-image-{release}")
        item: dict = {"name": "kernel", "annotations": {"release": release}}
        if package:
            item["uri"] = (f"pkg:deb/debian/{package.name}@{package.version}"
                           f"?arch={package.architecture}")
            item["annotations"]["package"] = package.name
            item["annotations"]["version"] = package.version
        else:
            item["uri"] = f"urn:amp-image:kernel:{release}"
        items.append(item)
    return items


def build_statement(inventory: ImageInventory, *, image_name: str, sha256: str,
                    constraints: dict, environment: dict[str, str],
                    build_log: Path | None = None) -> dict:
    """The in-toto statement for the image (see the module docstring)."""
    dib_ver, dib_from = dib_version(build_log)
    osr = inventory.os_release
    external = {
        "elements": inventory.elements,
        "distribution": osr.get("ID", ""),
        "release": environment.get("DIB_RELEASE") or osr.get("VERSION_CODENAME", ""),
        "architecture": inventory.architecture,
        "agent": {"version": inventory.agent.get("AMPHORA_AGENT_VERSION", ""),
                  "source_type": inventory.agent.get("AMPHORA_AGENT_SOURCE_TYPE", ""),
                  "source": inventory.agent.get("AMPHORA_AGENT_SOURCE", "")},
        "environment": environment,
    }
    dependencies = [
        amp_image_source(),
        {"name": "diskimage-builder", "uri": f"pkg:pypi/diskimage-builder@{dib_ver}",
         "annotations": {"version": dib_ver, "observed": dib_from}},
        *element_descriptors(inventory.elements, inventory.architecture),
        *mirror_descriptors(inventory),
        agent_descriptor(inventory),
        constraints_descriptor(constraints),
        *kernel_descriptors(inventory),
    ]
    metadata = {}
    if inventory.built:
        metadata["finishedOn"] = inventory.built.isoformat().replace("+00:00", "Z")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image_name, "digest": {"sha256": sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID,
                            "version": {"amp-image": version.version(),
                                        "diskimage-builder": dib_ver}},
                "metadata": metadata,
            },
        },
    }


def statement_bytes(statement: dict) -> bytes:
    return (json.dumps(statement, indent=2) + "\n").encode()
