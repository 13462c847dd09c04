"""``amp-image diff --files``: two images compared file by file.

Both root file systems are mounted read-only and walked without following
links.  A path counts as changed in content when its type, size, bytes
(SHA-256) or link target differ, and in metadata when only its mode or owner
do.  This is what "how close do two builds come" is measured with.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from amp_image.image.imagefs import mounted_image

# Paths grouped by their first components in the summary: usr/lib, opt/amphora-agent-venv...
GROUP_DEPTH = 2
# How many paths of each kind the table lists (--json lists all).
TABLE_PATHS = 40


@dataclass(frozen=True)
class Entry:
    kind: str          # file, dir, link or other
    mode: int          # permission bits, setuid/setgid/sticky included
    owner: tuple[int, int]
    size: int
    content: str       # SHA-256 of a file, a link's target, else ""


def _entry(path: str) -> Entry:
    st = os.lstat(path)
    owner, mode = (st.st_uid, st.st_gid), stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return Entry("file", mode, owner, st.st_size, digest)
    if stat.S_ISLNK(st.st_mode):
        return Entry("link", mode, owner, 0, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return Entry("dir", mode, owner, 0, "")
    return Entry("other", mode, owner, 0, f"{stat.S_IFMT(st.st_mode):o}:{st.st_rdev}")


def file_tree(root: Path) -> dict[str, Entry]:
    """Every path under root (relative), with what it is."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            tree[os.path.relpath(full, root)] = _entry(full)
    return tree


def group(path: str) -> str:
    return "/".join(path.split("/")[:GROUP_DEPTH])


def compare_files(old: dict[str, Entry], new: dict[str, Entry]) -> dict:
    common = old.keys() & new.keys()
    changed = {p for p in common if (old[p].kind, old[p].size, old[p].content)
               != (new[p].kind, new[p].size, new[p].content)}
    content = sorted(changed)
    metadata = sorted(p for p in common - changed if old[p] != new[p])
    only_old, only_new = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
    differing = content + metadata + only_old + only_new
    return {
        "schema": "amp-image-filediff/1",
        "old_paths": len(old), "new_paths": len(new),
        "same": len(common) - len(content) - len(metadata),
        "content_changed": content, "metadata_changed": metadata,
        "only_in_old": only_old, "only_in_new": only_new,
        "by_group": dict(Counter(group(p) for p in differing).most_common()),
    }


def diff_images(old: Path, new: Path) -> dict:
    """Compare two images' root file systems (read-only mounts: root only)."""
    with ExitStack() as stack:
        trees = [file_tree(stack.enter_context(mounted_image(image))) for image in (old, new)]
    return compare_files(*trees)


def render_files(result: dict) -> str:
    kinds = (("content_changed", "content"), ("metadata_changed", "mode/owner"),
             ("only_in_old", "only old"), ("only_in_new", "only new"))
    counts = ", ".join(f"{len(result[k])} {label}" for k, label in kinds)
    lines = [f"files ({result['old_paths']} -> {result['new_paths']} paths): "
             f"{result['same']} identical, {counts}"]
    if result["by_group"]:
        lines.append("  differing paths by folder:")
        lines += [f"    {n:>6}  {g}" for g, n in result["by_group"].items()]
    for key, label in kinds:
        paths = result[key]
        lines += [f"  {label:<10} {p}" for p in paths[:TABLE_PATHS]]
        if len(paths) > TABLE_PATHS:
            lines.append(f"  {label:<10} ... and {len(paths) - TABLE_PATHS} more (--json "
                         "lists all)")
    return "\n".join(lines) + "\n"
