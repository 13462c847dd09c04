"""Reading each side of ``amp-image diff OLD NEW``.

Each side is an image (read offline, like publish does: a read-only loop
mount, so root) or a published folder (its ``manifest.json``, or the manifest
file itself; a folder published with ``--prefix`` holds ``P-manifest.json``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from amp_image.builder.digests import sha256_file
from amp_image.diff.side import DiffError, Side
from amp_image.errors import AmpImageError
from amp_image.image import imagefs, qemuimg
from amp_image.image.inventory import read_inventory
from amp_image.image.records import default_manifests
from amp_image.publish.manifest import MANIFEST_SCHEMA


def _package_key(name: str, arch: str, native: str) -> str:
    return name if arch in (native, "all", "") else f"{name}:{arch}"


def side_from_manifest(manifest: dict, path: str) -> Side:
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise DiffError(f"{path} is not an amp-image manifest (schema {MANIFEST_SCHEMA}); "
                        "give an image or a folder amp-image published")
    image = manifest.get("image") or {}
    agent = manifest.get("agent") or {}
    native = manifest.get("architecture", "")
    return Side(
        path=path, kind="published", image_file=image.get("file", ""),
        sha256=image.get("sha256"), size=image.get("size"),
        virtual_size=image.get("virtual_size"), build_date=manifest.get("build_date"),
        os=(manifest.get("os") or {}).get("pretty_name", ""),
        kernels=list(manifest.get("kernels") or []),
        agent={k: agent.get(k) or "" for k in ("version", "source_type", "source", "git_ref")},
        agent_python={p["name"].lower(): p["version"]
                      for p in agent.get("python_packages") or []},
        packages={_package_key(p["name"], p.get("architecture", ""), native): p["version"]
                  for p in manifest.get("packages") or []},
        enabled_units=manifest.get("enabled_units"),
    )


def side_from_image(image: Path, label: str) -> Side:
    if os.geteuid() != 0:
        raise DiffError(f"{label} is an image: reading it needs a read-only loop mount, "
                        "which needs root; rerun as root, or diff the folders it was "
                        "published into")
    try:
        with imagefs.mounted_image(image) as root:
            inventory = read_inventory(root, default_manifests(image))
    except AmpImageError as exc:
        reason = " ".join(str(exc).split())
        raise DiffError(f"{label}: cannot read the image's file system ({reason})") from None
    if not inventory.packages:
        raise DiffError(f"{label} has no dpkg database (var/lib/dpkg/status); diff images "
                        "built by amp-image")
    native = inventory.architecture
    built = inventory.built.isoformat().replace("+00:00", "Z") if inventory.built else None
    agent = inventory.agent
    return Side(
        path=label, kind="image", image_file=image.name, sha256=sha256_file(image),
        size=image.stat().st_size, virtual_size=qemuimg.virtual_size(image), build_date=built,
        os=inventory.os_release.get("PRETTY_NAME", ""), kernels=inventory.kernels,
        agent={"version": agent.get("AMPHORA_AGENT_VERSION", ""),
               "source_type": agent.get("AMPHORA_AGENT_SOURCE_TYPE", ""),
               "source": agent.get("AMPHORA_AGENT_SOURCE", ""),
               "git_ref": agent.get("AMPHORA_AGENT_GIT_REF", "")},
        agent_python={d.name.lower(): d.version for d in inventory.agent_python},
        packages={_package_key(p.name, p.architecture, native): p.version
                  for p in inventory.packages},
        enabled_units=inventory.enabled_units,
    )


def find_manifest(folder: Path, label: str) -> Path:
    plain = folder / "manifest.json"
    if plain.is_file():
        return plain
    found = sorted(folder.glob("*manifest.json"))
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found[:3])
        raise DiffError(f"{label} holds {len(found)} manifests ({names}); give the one to "
                        "compare")
    raise DiffError(f"{label} is a folder without a manifest.json: not a folder amp-image "
                    "published; give an image or a published folder")


def looks_like_disk(raw: Path) -> bool:
    if imagefs.partitions(raw):
        return True
    probe = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(raw)],
                           capture_output=True, text=True)
    return probe.returncode == 0 and bool(probe.stdout.strip())


def read_side(path: Path) -> Side:
    label = str(path)
    if path.is_dir():
        path = find_manifest(path, label)
    elif not path.exists():
        raise DiffError(f"{label}: no such image or published folder")
    elif not path.is_file():
        raise DiffError(f"{label} is neither an image nor a published folder")
    if path.suffix == ".json":
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DiffError(f"{path} is not readable JSON ({exc}); give an image or a "
                            "folder amp-image published") from None
        return side_from_manifest(manifest, label)
    try:
        fmt = qemuimg.image_format(path)
    except AmpImageError:
        raise DiffError(f"{label} is neither an image (qemu-img cannot read it) nor a "
                        "published folder") from None
    # qemu-img takes any file for a raw image: a raw one needs a partition table or a
    # file system to be one.
    if fmt == "raw" and not path.name.endswith(".tar") and not looks_like_disk(path):
        raise DiffError(f"{label} is neither an image (no partition table or file system "
                        "in it) nor a published folder")
    if path.name.endswith(".tar"):
        raise DiffError(f"{label} is a tar archive, not a disk image; diff qcow2, raw or vhd "
                        "images or published folders")
    return side_from_image(path, label)
