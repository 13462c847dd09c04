"""The published folder: amp-image's record of its files there, the checks before
publishing into it, and the swap of a staged publication into place (see
publisher.py's docstring for the rules)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from amp_image.errors import PublishError

# What amp-image published into DEST.
MARKER_FILE = ".amp-image-published.json"
MARKER_SCHEMA = "amp-image-published/1"
STAGING_PREFIX = ".amp-image-staging."


def place_image(image: Path, dest: Path, copy: bool) -> None:
    """A hard link where the file systems allow it (fast, no space), else a copy."""
    if not copy:
        try:
            os.link(image, dest)
            return
        except OSError:
            pass
    shutil.copyfile(image, dest)
    shutil.copystat(image, dest)


def read_marker(dest: Path) -> list[str]:
    """The files amp-image published into dest, from its record there (none: [])."""
    try:
        data = json.loads((dest / MARKER_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise PublishError(f"{dest / MARKER_FILE} is unreadable ({exc}); move it away and "
                           "publish into a new or empty folder") from None
    if not isinstance(data, dict) or data.get("schema") != MARKER_SCHEMA \
            or not isinstance(data.get("files"), list):
        raise PublishError(f"{dest / MARKER_FILE} is not amp-image's record; move it away and "
                           "publish into a new or empty folder")
    return [name for name in data["files"] if isinstance(name, str) and "/" not in name]


def write_marker(dest: Path, files: list[str]) -> None:
    tmp = dest / f"{MARKER_FILE}.new"
    tmp.write_text(json.dumps({"schema": MARKER_SCHEMA, "files": sorted(set(files))},
                              indent=2) + "\n")
    os.replace(tmp, dest / MARKER_FILE)


def foreign_entries(dest: Path) -> list[str]:
    """What dest holds that amp-image did not publish there (its own record and staging
    folders aside)."""
    ours = set(read_marker(dest)) | {MARKER_FILE, f"{MARKER_FILE}.new"}
    return sorted(p.name for p in dest.iterdir()
                  if p.name not in ours and not p.name.startswith(STAGING_PREFIX))


def check_dest(dest: Path, names: list[str], *, force: bool, option: str = "--dest") -> None:
    """DEST may be new, empty or one amp-image published into; other files there are
    never touched.  A non-empty folder amp-image did not publish into needs force."""
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"{option} {dest} is a file; give a folder")
    if not dest.is_dir():
        return
    foreign = foreign_entries(dest)
    if foreign and not force and not (dest / MARKER_FILE).is_file():
        shown = ", ".join(f"'{n}'" for n in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        hint = " (or pass --force to publish beside them; they are kept)" \
            if option == "--dest" else ""
        raise PublishError(f"{option} {dest} holds files amp-image did not publish ({shown}); "
                           f"choose a new or empty folder{hint}")
    clash = sorted(set(foreign) & set(names))
    if clash:
        raise PublishError(f"{option} {dest} already has '{clash[0]}', which amp-image did not "
                           "publish and will not overwrite; move it away or use --prefix")


def swap_into_place(staging: Path, dest: Path, names: list[str]) -> None:
    """Rename the staged files into dest, replacing amp-image's earlier ones only."""
    earlier = read_marker(dest)
    # While swapping, the record covers both publications: whatever happens,
    # the next publish knows every file here that is amp-image's.
    write_marker(dest, [*earlier, *names])
    for name in names:
        os.replace(staging / name, dest / name)
    for name in sorted(set(earlier) - set(names)):
        (dest / name).unlink(missing_ok=True)
    write_marker(dest, names)


def remove_stale_staging(dest: Path) -> None:
    """Staging folders a killed publish left (only amp-image's, by their name)."""
    for path in dest.glob(STAGING_PREFIX + "*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
