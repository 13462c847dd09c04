"""``amp-image diff OLD NEW``: what changed between two images.

Each side is an image (read offline, like publish does: a read-only loop
mount, so root) or a published folder (its ``manifest.json``, or the manifest
file itself; a folder published with ``--prefix`` holds ``P-manifest.json``).
The comparison covers the Debian packages (added, removed, upgraded and
downgraded, by dpkg's version ordering), the kernel, the agent and its Python
packages, haproxy and keepalived, the enabled systemd units and the size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from debian.debian_support import version_compare
from packaging.version import InvalidVersion, Version

from amp_image.errors import AmpImageError
from amp_image.image import imagefs, qemuimg

WATCHED = ("haproxy", "keepalived")


class DiffError(AmpImageError):
    """OLD or NEW is not something amp-image can compare."""


@dataclasses.dataclass
class Side:
    """One side of a diff, whatever it was read from."""

    path: str
    kind: str                       # "image" or "published"
    image_file: str
    sha256: str | None
    size: int | None
    virtual_size: int | None
    build_date: str | None
    os: str
    kernels: list[str]
    agent: dict[str, str]
    agent_python: dict[str, str]    # name (lower case) -> version
    packages: dict[str, str]        # name, or name:arch for a foreign one -> version
    enabled_units: list[str] | None  # None: not recorded (an older manifest)


# --- version ordering -------------------------------------------------------------------


def compare_debian_versions(a: str, b: str) -> int | None:
    """<0, 0 or >0 as dpkg --compare-versions orders a and b (python-debian's
    implementation of it); None when either is no Debian version."""
    try:
        return version_compare(a, b)
    except ValueError:
        return None


def compare_python_versions(a: str, b: str) -> int | None:
    """<0, 0 or >0 as PEP 440 orders a and b; None when either is no such version."""
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return None
    return (va > vb) - (va < vb)


# --- reading each side ----------------------------------------------------------------------


def _package_key(name: str, arch: str, native: str) -> str:
    return name if arch in (native, "all", "") else f"{name}:{arch}"


def side_from_manifest(manifest: dict, path: str) -> Side:
    from amp_image.publish.manifest import MANIFEST_SCHEMA

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
    from amp_image.builder.digests import sha256_file
    from amp_image.image.records import default_manifests
    from amp_image.image.inventory import read_inventory

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


# --- comparing ----------------------------------------------------------------------------


def compare_sets(old: dict[str, str], new: dict[str, str], cmp) -> dict:
    added = [{"name": n, "version": new[n]} for n in sorted(set(new) - set(old))]
    removed = [{"name": n, "version": old[n]} for n in sorted(set(old) - set(new))]
    upgraded, downgraded, changed = [], [], []
    for name in sorted(set(old) & set(new)):
        if old[name] == new[name]:
            continue
        entry = {"name": name, "old": old[name], "new": new[name]}
        order = cmp(old[name], new[name])
        (changed if order is None else upgraded if order < 0 else downgraded).append(entry)
    return {"old_count": len(old), "new_count": len(new), "added": added, "removed": removed,
            "upgraded": upgraded, "downgraded": downgraded, "changed": changed}


def _pair(old, new) -> dict:
    return {"old": old, "new": new, "changed": old != new}


def diff(old: Side, new: Side) -> dict:
    units: dict = {"recorded": old.enabled_units is not None and new.enabled_units is not None}
    if units["recorded"]:
        units["added"] = sorted(set(new.enabled_units) - set(old.enabled_units))
        units["removed"] = sorted(set(old.enabled_units) - set(new.enabled_units))
    size = _pair(old.size, new.size)
    if old.size is not None and new.size is not None:
        size["change"] = new.size - old.size
    describe = lambda s: {"path": s.path, "kind": s.kind, "image": s.image_file,  # noqa: E731
                          "sha256": s.sha256, "build_date": s.build_date, "os": s.os}
    return {
        "schema": "amp-image-diff/1",
        "old": describe(old),
        "new": describe(new),
        "identical": bool(old.sha256) and old.sha256 == new.sha256,
        "size": size,
        "virtual_size": _pair(old.virtual_size, new.virtual_size),
        "os": _pair(old.os, new.os),
        "kernel": _pair(old.kernels, new.kernels),
        "agent": _pair(old.agent, new.agent),
        **{name: _pair(old.packages.get(name), new.packages.get(name)) for name in WATCHED},
        "packages": compare_sets(old.packages, new.packages, compare_debian_versions),
        "agent_python_packages": compare_sets(old.agent_python, new.agent_python,
                                              compare_python_versions),
        "enabled_units": units,
    }


# --- the table ----------------------------------------------------------------------------


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    sign, n = ("-" if n < 0 else ""), abs(n)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{sign}{n / scale:.1f} {unit}"
    return f"{sign}{n} bytes"


def _agent(agent: dict) -> str:
    if not agent.get("version"):
        return "?"
    ref = f" @{agent['git_ref'][:12]}" if agent.get("git_ref") else ""
    return f"octavia {agent['version']} ({agent.get('source_type') or '?'}){ref}"


def _changes(title: str, changes: dict, width: int) -> list[str]:
    counts = [f"{len(changes[k])} {k}" for k in
              ("upgraded", "downgraded", "changed", "added", "removed") if changes[k]]
    head = f"{title} ({changes['old_count']} -> {changes['new_count']}): "
    lines = [head + (", ".join(counts) if counts else "no changes")]
    for kind in ("upgraded", "downgraded", "changed"):
        for e in changes[kind]:
            lines.append(f"  {kind:<10} {e['name']:<{width}} {e['old']} -> {e['new']}")
    for kind in ("added", "removed"):
        for e in changes[kind]:
            lines.append(f"  {kind:<10} {e['name']:<{width}} {e['version']}")
    return lines


def render_table(result: dict) -> str:
    old, new = result["old"], result["new"]
    lines = []
    for tag, side in (("old", old), ("new", new)):
        built = f", built {side['build_date']}" if side["build_date"] else ""
        what = "image" if side["kind"] == "image" else f"published {side['image']}"
        lines.append(f"{tag}  {side['path']} ({what}{built})")
    if result["identical"]:
        lines.append("the images are identical (same SHA-256)")
    lines.append("")
    size = result["size"]
    change = (f"  ({'+' if size['change'] >= 0 else ''}{human_size(size['change'])})"
              if "change" in size else "")
    rows = [
        ("size", human_size(size["old"]), human_size(size["new"]) + change, size["changed"]),
        ("virtual size", human_size(result["virtual_size"]["old"]),
         human_size(result["virtual_size"]["new"]), result["virtual_size"]["changed"]),
        ("os", result["os"]["old"] or "?", result["os"]["new"] or "?", result["os"]["changed"]),
        ("kernel", " ".join(result["kernel"]["old"]) or "?",
         " ".join(result["kernel"]["new"]) or "?", result["kernel"]["changed"]),
        ("agent", _agent(result["agent"]["old"]), _agent(result["agent"]["new"]),
         result["agent"]["changed"]),
        *((name, result[name]["old"] or "-", result[name]["new"] or "-",
           result[name]["changed"]) for name in WATCHED),
    ]
    left = max(len(r[1]) for r in rows)
    lines.append(f"  {'':<14} {'old':<{left}}  new")
    for label, a, b, changed in rows:
        lines.append(f"{'*' if changed else ' '} {label:<14} {a:<{left}}  {b}")
    lines.append("")
    packages, python = result["packages"], result["agent_python_packages"]
    names = [e["name"] for c in (packages, python) for k in c if isinstance(c[k], list)
             for e in c[k]]
    width = min(max((len(n) for n in names), default=10), 40)
    lines += _changes("packages", packages, width)
    lines += _changes("agent Python packages", python, width)
    units = result["enabled_units"]
    if not units["recorded"]:
        lines.append("enabled units: not recorded (a manifest from before amp-image listed "
                     "them)")
    elif not units["added"] and not units["removed"]:
        lines.append("enabled units: no changes")
    else:
        lines.append(f"enabled units: {len(units['added'])} added, "
                     f"{len(units['removed'])} removed")
        lines += [f"  added      {u}" for u in units["added"]]
        lines += [f"  removed    {u}" for u in units["removed"]]
    return "\n".join(lines) + "\n"
