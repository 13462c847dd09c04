"""The diff as the table ``amp-image diff`` prints."""

from __future__ import annotations

from amp_image.diff.side import WATCHED


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
