"""What of DIB's element set can feed the work before a layer's save point: each
element's files the hooks before it can read (read from the element folders and DIB's
own scripts), and which DIB_ variables they can read."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

import diskimage_builder

from amp_image.builder.digests import json_digest
from amp_image.builder.env_scan import (
    LATER_PHASES,
    SAVE_PHASE,
    early_package_installs,
    scan_text,
)
from amp_image.builder.layer_inputs import LayerKeyError

HOOK_NAME = re.compile(r"[0-9A-Za-z_-]+")  # dib-run-parts' allowed_regex
# Read by DIB for the element set, which the key holds, and by nothing else.
SET_FILES = ("element-deps", "element-provides")
PACKAGE_INSTALLS = ("package-installs.yaml", "package-installs.json")
# DIB's own scripts and modules outside its elements (disk-image-create, lib/, the
# block device layer), which run throughout the build.
DIB_PACKAGE = Path(diskimage_builder.__file__).resolve().parent
# (diskimage_builder.py is the YAML front end, diskimage-builder, which amp-image does
# not run.)
DIB_NOT_CORE = ("elements", "tests", "__pycache__", "diskimage_builder.py")


def run_order(hook: str) -> tuple[int, bytes]:
    """dib-run-parts' order of a phase's hooks (LANG=C sort -n): the leading number,
    then the name's bytes."""
    number = re.match(r"-?\d+", hook)
    return int(number.group()) if number else 0, hook.encode()


def runs_after(rel: PurePosixPath, path: Path, save_hook: str) -> bool:
    """An element file that is a hook dib-run-parts runs after the save hook."""
    parts = rel.parts
    if len(parts) < 2 or not HOOK_NAME.fullmatch(parts[-1]) or not path.is_file() \
            or not os.access(path, os.X_OK):
        return False
    if parts[0] in LATER_PHASES:
        return len(parts) == 2
    if parts[0] == SAVE_PHASE:
        # install.d/ELEMENT-TYPE-install/HOOK: install-types links it into install.d.
        linked = len(parts) == 3 and parts[1].endswith("-install")
        return (len(parts) == 2 or linked) and run_order(parts[-1]) > run_order(save_hook)
    return False


def element_files(root: Path) -> Iterator[tuple[PurePosixPath, Path]]:
    """What DIB copies of an element into the hooks (find -follow; not tests/, not
    byte code), by path inside the element."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        rel = PurePosixPath(here.relative_to(root).as_posix())
        real = os.path.realpath(here)
        if any(os.path.realpath(up) == real for up in here.parents[:len(rel.parts)]):
            dirnames[:] = []  # a link back up the tree: find -follow leaves it too
            continue
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__pycache__" and not (not rel.parts and d == "tests"))
        for name in sorted(filenames):
            if not name.endswith(".pyc"):
                yield rel / name, here / name


class EarlyView:
    """What of the element set can feed the work before a save point: each element's
    files that the hooks before it can read, and which DIB_ variables they (or DIB's
    own scripts) can read."""

    def __init__(self, members: Mapping[str, list[Path]], save_hook: str):
        self.elements: dict[str, str] = {}
        texts: list[str] = []
        unfed = []
        for name, folders in members.items():
            entries = []
            for copy, folder in enumerate(folders):
                for rel, path in element_files(folder):
                    entry = _early_entry(rel, path, save_hook)
                    if entry:
                        entries.append(f"{copy} {rel} {entry[0]}")
                        texts.append(entry[1])
            if entries:
                self.elements[name] = json_digest(entries)
            else:
                unfed.append(name)
        core_text, core_everything, core_words = _dib_core()
        early_text = "\n".join([core_text, *texts])
        for name in unfed:  # named by an earlier file: it may look for it in IMAGE_ELEMENT
            if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", early_text):
                self.elements[name] = "named"
        self.elements = dict(sorted(self.elements.items()))
        self.everything = core_everything
        self.words = set(core_words)
        for text in texts:
            everything, words = scan_text(text)
            self.everything = self.everything or everything
            self.words |= words

    def reads(self, name: str) -> bool:
        """Whether the files before the save point can read the variable name: it, or a
        prefix of it from DIB_ on, stands as a word in them, or they list the whole
        environment."""
        if self.everything or name in self.words:
            return True
        return any(name[:end] in self.words for end in range(len("DIB_"), len(name)))


def _early_entry(rel: PurePosixPath, path: Path, save_hook: str) -> tuple[str, str] | None:
    """(what the key holds of it, its text) for a file the hooks before the save point can
    read; None for one they cannot."""
    top = len(rel.parts) == 1
    if (top and (rel.name.startswith("README") or rel.name in SET_FILES)) \
            or runs_after(rel, path, save_hook):
        return None
    try:
        if path.is_symlink() and not path.exists():
            return f"L {os.readlink(path)}", ""
        data = path.read_bytes()
        link = f"L {os.readlink(path)} " if path.is_symlink() else ""
    except OSError as exc:
        raise LayerKeyError(f"cannot read {path}: {exc}") from exc
    if top and rel.name in PACKAGE_INSTALLS:
        early = early_package_installs(data)
        if early == "[]":
            return None
        if early is not None:
            return f"{link}P {hashlib.sha256(early.encode()).hexdigest()}", early
    mode = "x" if os.access(path, os.X_OK) else "-"
    return (f"{link}F {mode} {hashlib.sha256(data).hexdigest()}",
            data.decode("utf-8", "replace"))


@functools.cache
def _dib_core(package: Path = DIB_PACKAGE) -> tuple[str, bool, frozenset[str]]:
    """DIB's scripts and modules outside its elements: their text, and scan_text's answer."""
    texts = []
    for dirpath, dirnames, filenames in os.walk(package):
        dirnames[:] = sorted(d for d in dirnames if d not in DIB_NOT_CORE)
        for name in sorted(filenames):
            if not name.endswith(".pyc") and name not in DIB_NOT_CORE:
                texts.append((Path(dirpath) / name).read_bytes().decode("utf-8", "replace"))
    text = "\n".join(texts)
    everything, words = scan_text(text)
    return text, everything, frozenset(words)
