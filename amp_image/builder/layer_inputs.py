"""The layer keys' inputs read from outside the build's values: DIB's element set on
the element path, and the date of each mirror suite's index; an input that cannot be
read is a LayerKeyError (the build turns the cache off)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from pathlib import Path

import requests

from amp_image.errors import AmpImageError


class LayerKeyError(AmpImageError):
    """An input of the key cannot be read (the mirror's index, most often)."""


def mirror_index_dates(env: Mapping[str, str], timeout: float = 20) -> dict[str, str]:
    """The Date of each suite's InRelease the build installs from."""
    release = env["DIB_RELEASE"]
    main = env["DIB_DISTRIBUTION_MIRROR"].rstrip("/")
    security = env.get("DIB_DEBIAN_SECURITY_MIRROR", "").rstrip("/")
    suites = {f"{main}/dists/{release}": "", f"{main}/dists/{release}-updates": ""}
    if security:
        suites[f"{security}/dists/{release}-security"] = ""
    for suite in suites:
        suites[suite] = _index_date(f"{suite}/InRelease", timeout)
    return suites


def _index_date(url: str, timeout: float) -> str:
    try:
        with requests.get(url, stream=True, timeout=timeout) as reply:
            reply.raise_for_status()
            for number, raw in enumerate(reply.iter_lines()):
                line = raw.decode("utf-8", "replace")
                if line.startswith("Date:"):
                    return line.partition(":")[2].strip()
                if number > 50:  # the fields come first; the file lists are long
                    break
    except requests.RequestException as exc:
        raise LayerKeyError(f"cannot read {url}: {exc}") from exc
    raise LayerKeyError(f"{url} has no Date field")


def element_set(elements: Iterable[str], element_dirs: list[Path]) -> dict[str, list[Path]]:
    """DIB's element set (its element_dependencies.py): the elements and their
    element-deps, less what element-provides covers; each element with its folders
    on the path, the one DIB copies first (package-installs reads them all)."""
    found: dict[str, list[Path]] = collections.defaultdict(list)
    for folder in element_dirs:
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if child.is_dir():
                    found[child.name].append(child)
    wanted = list(dict.fromkeys(elements))
    final, provided = set(wanted), set()
    queue = collections.deque(wanted)
    while queue:
        name = queue.popleft()
        if name in provided:
            continue
        if name not in found:
            raise LayerKeyError(f"element '{name}' is in none of "
                                f"{':'.join(str(d) for d in element_dirs)}")
        deps = _element_names(found[name][0] / "element-deps")
        provided |= _element_names(found[name][0] / "element-provides")
        queue.extend(deps - (final | provided))
        final |= deps
    return {name: found[name] for name in sorted(final - provided)}


def _element_names(path: Path) -> set[str]:
    try:
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise LayerKeyError(f"cannot read {path}: {exc}") from exc
