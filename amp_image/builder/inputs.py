"""The files and folders an operator names, read before the build: a constraints file
that is not one, a wheelhouse without the agent, an elements folder without elements.

DIB would take each of them as given and fail minutes in (pip in the chroot, DIB's
element resolution), deep in its log.  These checks read only the operator's own files,
in well under a second, and name the fix in one line.  They run as the options are
parsed, so ``--dry-run`` reports them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from amp_image.errors import PlanError

QUOTE_CHARS = 40
# pip's own comment rule (pip/_internal/req/req_file.py): '#' at the start or after space.
_COMMENT = re.compile(r"(^|\s+)#.*$")
# Options that name another file: the build copies the constraints file alone into
# the image (amphora-agent's extra-data.d), so a local file it names is not there.
_INCLUDES = re.compile(r"^(-r|-c|--requirement|--constraint)(\s*=?\s*|\s+)(?P<target>\S+)")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# What makes a folder a DIB element: a hook folder (install.d, ...) or one of these.
ELEMENT_FILES = ("element-deps", "element-provides", "package-installs.yaml", "pkg-map",
                 "README.rst")


def quoted(line: str, limit: int = QUOTE_CHARS) -> str:
    """line shortened to limit characters and quoted on one line (repr escapes the rest)."""
    return repr(line if len(line) <= limit else line[:limit] + "...")


def logical_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, text) of each line pip reads: comments stripped, backslash continuations
    joined, blank lines left out; numbered by the line it starts on."""
    with path.open(encoding="utf-8", errors="replace") as f:
        start, parts = 0, []
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            start = start or number
            if line.endswith("\\") and not _COMMENT.match(line):
                parts.append(line[:-1])
                continue
            text = _COMMENT.sub("", "".join(parts) + line).strip()
            if text:
                yield start, text
            start, parts = 0, []
        if parts and (text := _COMMENT.sub("", "".join(parts)).strip()):
            yield start, text


def check_constraints_file(path: Path, option: str) -> None:
    """Every line of path is a requirement pip can read as a constraint (OpenStack's
    upper-constraints.txt: NAME===VERSION[;MARKER]) or a pip option; PlanError naming
    the first that is not."""
    fix = ("give a pip constraints file (NAME===VERSION lines), such as OpenStack's "
           "upper-constraints.txt")
    try:
        for number, text in logical_lines(path):
            if text.startswith("-"):
                included = _INCLUDES.match(text)
                if included and not _URL.match(included["target"]):
                    raise PlanError(f"{option} {path}: line {number} includes another file "
                                    f"({quoted(text)}), which the build does not copy into "
                                    "the image; put its lines in this file")
                continue  # --index-url and pip's other options
            try:
                Requirement(text)
            except InvalidRequirement as exc:
                reason = str(exc).splitlines()[0] if str(exc) else "not a requirement"
                raise PlanError(f"{option} {path}: line {number} is not a requirement "
                                f"({quoted(text)}: {reason}); {fix}") from None
    except OSError as exc:
        raise PlanError(f"{option} {path}: cannot read it ({exc.strerror or exc}); "
                        "give a readable file") from None


def octavia_wheels(folder: Path) -> list[tuple[Version, str]]:
    """(version, file name) of each octavia wheel in folder, by version."""
    found = []
    for wheel in folder.glob("*.whl"):
        try:
            name, version, _, _ = parse_wheel_filename(wheel.name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if name == canonicalize_name("octavia"):
            found.append((version, wheel.name))
    return sorted(found)


def check_wheelhouse(folder: Path, agent_version: str) -> None:
    """folder holds octavia's wheel of agent_version (pip installs from it with
    --no-index: nothing else can supply it); PlanError naming what it holds if not."""
    try:
        wanted = Version(agent_version)
    except InvalidVersion:
        raise PlanError(f"--agent-version {agent_version}: not a version number; give one "
                        "such as 19.0.0") from None
    wheels = octavia_wheels(folder)
    if any(version == wanted for version, _ in wheels):
        return
    has = (f"its octavia wheels are {', '.join(name for _, name in wheels)}" if wheels
           else "it has no octavia wheel")
    raise PlanError(f"--agent-source {folder}: no wheel of octavia {agent_version} "
                    f"(octavia-{agent_version}-*.whl; {has}); add it (pip wheel "
                    f"octavia=={agent_version} -w {folder}) or pass --agent-version of a "
                    "wheel it has")


def is_element(folder: Path, *, hooks_only: bool = False) -> bool:
    """folder looks like a DIB element: a hook folder (NAME.d) or an element's files."""
    try:
        return folder.is_dir() and any(
            (entry.is_dir() and entry.name.endswith(".d"))
            or (not hooks_only and entry.name in ELEMENT_FILES)
            for entry in folder.iterdir())
    except OSError:
        return False


def check_elements_path(folder: Path) -> None:
    """folder holds at least one element; PlanError naming the fix if not (the common
    mistake: an element folder itself given instead of the folder that holds it)."""
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        raise PlanError(f"--elements-path {folder}: cannot read it ({exc.strerror or exc}); "
                        "give a readable folder") from None
    if any(is_element(child) for child in children):
        return
    hint = (f" ({folder} is an element itself: give {folder.parent})"
            if is_element(folder, hooks_only=True) else "")
    raise PlanError(f"--elements-path {folder} holds no element (no folder with hooks or "
                    f"element-deps){hint}; point it at the folder that contains the element "
                    "folders")
