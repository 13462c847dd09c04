"""The layer cache: root trees saved part-way through a build, restored by later
builds whose inputs are the same, so that they run only the stages after it.

Two layers, in build order (the ``amphora-layer-cache`` element saves and restores them):

* ``packages``: the root after install.d's packages and every hook before the
  agent (``install.d/74-amp-layer-packages``);
* ``agent``: that plus the agent's venv (``install.d/77-amp-layer-agent``).

A layer's key is a SHA-256 over everything that feeds it: the element list and
the content of every element folder (amp-image's, DIB's, ``--elements-path``),
DIB's version, the environment DIB gets (release, architecture, mirrors, package
choices; files named there by their content), and the date of the mirror's
index, so that a nightly rebuild after a security update does not reuse
yesterday's packages.  The agent layer's key adds the agent's version, its
constraints and wheels; it is made only for agents from PyPI or a wheelhouse (a
git branch or a local checkout can change under the same name).

Each layer is a zstd tarball with a JSON record (size, SHA-256, key inputs, last
use) beside it.  A layer whose file no longer matches its record is removed and
built again, never unpacked.  The cache is bounded (least recently used layers
go first) and ``amp-image cache prune`` empties it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from amp_image.build.digests import sha256_file, tree_digest
from amp_image.errors import AmpImageError, PlanError

FORMAT = 1
LAYER_DIR = "amp-image-layers"
# Build order; each layer's hook is where the restored build picks up.
SAVE_POINTS = {"packages": "74-amp-layer-packages", "agent": "77-amp-layer-agent"}
AGENT_LAYER_SOURCES = ("pypi", "wheelhouse")

# What only the agent layer depends on.
# (The source's kind steers only extra-data.d and the agent's install.d hooks, which
# run after either layer; the compiler it may need, DIB_AMP_AGENT_COMPILE, is a package.)
AGENT_ENV = ("DIB_AMP_AGENT_VERSION", "DIB_AMP_AGENT_CONSTRAINTS", "DIB_AMP_AGENT_SOURCE",
             "DIB_AMP_AGENT_SOURCE_TYPE", "DIB_REPOLOCATION_amphora_agent",
             "DIB_REPOREF_amphora_agent")
# Where this build keeps things: not what goes into the root.
PER_BUILD_ENV = ("DIB_IMAGE_CACHE", "DIB_AMP_ROOT_PASSWORD_HASH_FILE")
KEY_ENV_NAMES = ("ARCH", "SOURCE_DATE_EPOCH")  # ELEMENTS_PATH: its folders' contents
PROXY_ENV = ("http_proxy", "https_proxy", "no_proxy")


class LayerKeyError(AmpImageError):
    """An input of the key cannot be read (the mirror's index, most often)."""


def _content(value: str) -> str:
    """A value that names a file or folder stands for its content."""
    path = Path(value)
    if value.startswith("/") and path.is_file():
        return "sha256:" + sha256_file(path)
    if value.startswith("/") and path.is_dir():
        return "tree:" + tree_digest(path)
    return value


def key_environment(env: Mapping[str, str], *, agent: bool) -> dict[str, str]:
    """The part of DIB's environment that can change what a layer holds."""
    picked = {}
    for name, value in env.items():
        wanted = (name.startswith("DIB_") or name in KEY_ENV_NAMES
                  or name.lower() in PROXY_ENV)
        if (not wanted or name in PER_BUILD_ENV or name.startswith("DIB_AMP_LAYER_")
                or (name in AGENT_ENV and not agent)):
            continue
        picked[name] = _content(value)
    return dict(sorted(picked.items()))


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


@dataclass(frozen=True)
class LayerKeys:
    """The key of each layer this build could restore or save."""

    packages: str
    agent: str | None
    inputs: dict = field(default_factory=dict, compare=False, repr=False)

    def of(self, name: str) -> str | None:
        return self.packages if name == "packages" else self.agent


def layer_keys(*, elements: Iterable[str], element_dirs: Iterable[Path], dib_version: str,
               env: Mapping[str, str], agent_source_kind: str,
               index_dates: Mapping[str, str]) -> LayerKeys:
    """Both keys, from plain values (the caller reads the mirror and the folders)."""
    inputs = {
        "format": FORMAT,
        "elements": list(elements),
        # By content, not by path: the same elements installed elsewhere (a wheel's
        # venv, another checkout) make the same layer.
        "element_trees": [tree_digest(d) for d in element_dirs],
        "dib": dib_version,
        "env": key_environment(env, agent=False),
        "mirror_index": dict(index_dates),
    }
    packages = _digest(inputs)
    agent = None
    if agent_source_kind in AGENT_LAYER_SOURCES:
        agent_env = key_environment(env, agent=True)
        agent = _digest({"packages": packages, "env": agent_env})
        inputs["agent_env"] = {k: v for k, v in agent_env.items() if k in AGENT_ENV}
    return LayerKeys(packages, agent, inputs)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


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
