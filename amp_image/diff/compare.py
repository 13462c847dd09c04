"""What changed from OLD to NEW: the Debian packages (added, removed, upgraded and
downgraded, by dpkg's version ordering), the kernel, the agent and its Python
packages, haproxy and keepalived, the enabled systemd units and the size."""

from __future__ import annotations

from amp_image.diff.side import WATCHED, Side
from amp_image.diff.versions import compare_debian_versions, compare_python_versions


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
