"""The layer cache: root trees saved part-way through a build, restored by later
builds whose inputs are the same, so that they run only the stages after it.

Two layers, in build order (the ``amphora-layer-cache`` element saves and restores them):

* ``packages``: the root after install.d's packages and every hook before the
  agent (``install.d/74-amp-layer-packages``);
* ``agent``: that plus the agent's venv (``install.d/78-amp-layer-agent``).

The keys are made in ``layer_keys.py`` (from ``layer_inputs.py``, ``early_view.py`` and
``env_scan.py``).

Each layer is a zstd tarball with a JSON record (size, SHA-256, key inputs, last
use) beside it.  A layer whose file no longer matches its record is removed and
built again, never unpacked.  The cache is bounded (least recently used layers
go first) and ``amp-image cache prune`` empties it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from amp_image.builder.digests import sha256_file
from amp_image.builder.layer_keys import FORMAT, SAVE_POINTS, LayerKeys
from amp_image.errors import PlanError

LAYER_DIR = "amp-image-layers"


@dataclass(frozen=True)
class Layer:
    name: str
    key: str
    path: Path
    size: int
    created: float
    last_used: float


@dataclass(frozen=True)
class Choice:
    """What this build restores (if anything) and which layers it saves."""

    restore: Layer | None
    save: tuple[str, ...]

    def env(self, out_dir: Path) -> dict[str, str]:
        env = {}
        if self.restore:
            env["DIB_AMP_LAYER_RESTORE"] = str(self.restore.path)
            env["DIB_AMP_LAYER_RESTORE_POINT"] = SAVE_POINTS[self.restore.name]
        if self.save:
            env["DIB_AMP_LAYER_SAVE"] = " ".join(self.save)
            env["DIB_AMP_LAYER_OUT"] = str(out_dir)
        return env

    def describe(self) -> str:
        hit = f"restored '{self.restore.name}' ({self.restore.key[:12]})" if self.restore \
            else "nothing restored"
        return f"layer cache: {hit}; saving {', '.join(self.save) or 'nothing'}"


class LayerCache:
    """The layers under ``<cache-dir>/amp-image-layers``; the caller holds the
    package cache's lock while it reads or changes them."""

    def __init__(self, cache_dir: Path, emit: Callable[[str], None] = print):
        self.dir = cache_dir / LAYER_DIR
        self.emit = emit

    def _paths(self, name: str, key: str) -> tuple[Path, Path]:
        tarball = self.dir / f"{name}-{key}.tar.zst"
        return tarball, _record_of(tarball)

    def layers(self) -> list[Layer]:
        found = []
        for record_path in sorted(self.dir.glob("*.json")):
            record = _read_json(record_path)
            if not record or record.get("format") != FORMAT:
                continue
            tarball = record_path.with_name(record_path.name.removesuffix(".json") + ".tar.zst")
            found.append(Layer(record["name"], record["key"], tarball, record["size"],
                               record["created"], record["last_used"]))
        return found

    def lookup(self, name: str, key: str) -> Layer | None:
        """The layer if it is there and sound; a damaged one is removed."""
        tarball, record_path = self._paths(name, key)
        if not tarball.exists() and not record_path.exists():
            return None
        record = _read_json(record_path)
        why = _damage(tarball, record)
        if why:
            self._remove(tarball, record_path)
            self.emit(f"the cached '{name}' layer {tarball.name} is damaged ({why}): removed; "
                      "this build makes it again")
            return None
        record["last_used"] = time.time()
        _write_json(record_path, record)
        return Layer(name, key, tarball, record["size"], record["created"], record["last_used"])

    def choose(self, keys: LayerKeys, *, use: bool) -> Choice:
        """The deepest sound layer with this build's key, and the layers after it."""
        names = [n for n in SAVE_POINTS if keys.of(n)]
        if use:
            for depth in range(len(names) - 1, -1, -1):
                layer = self.lookup(names[depth], keys.of(names[depth]))
                if layer:
                    return Choice(layer, tuple(names[depth + 1:]))
        return Choice(None, tuple(names))

    def store(self, name: str, key: str, staged: Path, inputs: dict) -> Layer:
        """File a layer the build wrote (staged), with its record."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        tarball, record_path = self._paths(name, key)
        now = time.time()
        record = {"format": FORMAT, "name": name, "key": key, "size": staged.stat().st_size,
                  "sha256": sha256_file(staged), "created": now, "last_used": now,
                  "inputs": inputs}
        try:
            os.replace(staged, tarball)
        except OSError:  # another file system
            partial = tarball.with_name(tarball.name + ".partial")
            shutil.copyfile(staged, partial)
            os.replace(partial, tarball)
            staged.unlink()
        _write_json(record_path, record)
        return Layer(name, key, tarball, record["size"], now, now)

    def prune(self, max_bytes: int, keep: Iterable[Path] = ()) -> list[Layer]:
        """Remove least recently used layers until the rest fit in max_bytes
        (0: remove all), never those in keep; also records without a layer and
        layers without a record.  Returns what went."""
        removed = []
        kept = set(keep)
        for stray in self.dir.glob("*.partial"):
            stray.unlink(missing_ok=True)
        for tarball in self.dir.glob("*.tar.zst"):
            if not _record_of(tarball).exists():
                tarball.unlink(missing_ok=True)
        layers = self.layers()
        for layer in layers:
            if not layer.path.exists():
                self._remove(layer.path, _record_of(layer.path))
        layers = [layer for layer in layers if layer.path.exists()]
        total = sum(layer.size for layer in layers)
        for layer in sorted(layers, key=lambda item: item.last_used):
            if total <= max_bytes and max_bytes > 0:
                break
            if layer.path in kept:
                continue
            self._remove(layer.path, _record_of(layer.path))
            total -= layer.size
            removed.append(layer)
        return removed

    @staticmethod
    def _remove(tarball: Path, record_path: Path) -> None:
        tarball.unlink(missing_ok=True)
        record_path.unlink(missing_ok=True)


def _record_of(tarball: Path) -> Path:
    return tarball.with_name(tarball.name.removesuffix(".tar.zst") + ".json")


def _damage(tarball: Path, record: dict | None) -> str:
    if not record:
        return "no readable record"
    if not tarball.is_file():
        return "the tarball is missing"
    size = tarball.stat().st_size
    if size != record.get("size"):
        return f"{size} bytes, {record.get('size')} recorded"
    if sha256_file(tarball) != record.get("sha256"):
        return "its SHA-256 is not the recorded one"
    return ""


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def parse_size(text: str) -> int:
    """'4G', '500M', '0' -> bytes (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (value[:-1], value[-1]) if value and value[-1] in units else (value, "")
    try:
        size = float(number)
    except ValueError:
        raise PlanError(f"size '{text}' is not a size; use e.g. 4G, 500M or 0") from None
    if size < 0:
        raise PlanError(f"size '{text}' is negative; use e.g. 4G, 500M or 0")
    return int(size * units[unit])
