"""The layer cache's keys: what can feed the work a restored layer skips.

A layer's key is a SHA-256 over what can feed the work done before its save point
(the work a build that restores the layer skips), and nothing else, so that a
variant build starts from the default build's layer wherever its inputs up to
that point are the default's:

* DIB's element set (the plan's elements and their ``element-deps``, less what
  ``element-provides`` covers), each element by the files of it that the hooks
  before the save point can read: every file DIB copies into the hooks (not
  ``tests/``, not ``__pycache__``) but the README, ``element-deps`` and
  ``element-provides`` (they count through the set), and the hooks that
  dib-run-parts runs after the save point (``post-install.d``, ``post-root.d``,
  ``block-device.d``, ``pre-finalise.d``, ``finalise.d``, ``cleanup.d``, and
  ``install.d``'s hooks ordered after the save hook).  ``package-installs.*``
  counts by its entries for phases before the save point (package-installs
  squashes every phase in ``extra-data.d`` but installs each in its own phase).
  So ``environment.d`` (sourced for every hook), ``root.d``, ``extra-data.d``
  (it runs again in a restored build, but what it writes into the root is in
  the layer), ``pre-install.d``, ``static/`` (``install.d/10``), ``bin/``,
  ``pkg-map``, ``svc-map``, ``source-repository-*`` always count.  An element
  with none of that (its hooks all later) is not in the key, unless a file
  before the save point names it (it could be looking for it in IMAGE_ELEMENT);
* DIB's version, and the date of the mirror's index, so that a nightly rebuild
  after a security update does not reuse yesterday's packages;
* the environment DIB gets: ARCH, SOURCE_DATE_EPOCH and the proxies always;
  a ``DIB_`` variable (files named there by their content) unless it is
  provably read only after the save point: its name, and every prefix of it
  from ``DIB_`` on that stands alone (``DIB_INSTALLTYPE_$name``), is in none of
  the element files above nor in DIB's own scripts and modules, and none of
  those lists the whole environment (``env``, ``compgen``, ``os.environ`` as a
  whole, DIB's record of it, ``DIB_ENV``).  A self-default in
  ``environment.d`` (``VAR=${VAR:-...}``) is not a read.  Where this build keeps
  things (the image cache, the password hash's file, the layer cache's own
  variables) is not an input; the agent's source and version
  (``AGENT_ENV``) feed only the agent layer.

The agent layer's key adds to the packages layer's key what feeds
``install.d`` up to its own save point (the agent's venv); it is made only for
agents from PyPI or a wheelhouse (a git branch or a local checkout can change
under the same name).  A key input that cannot be read (the mirror's index, an
element that is not on the path) turns the cache off for the build.
"""


from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import diskimage_builder
import requests
import yaml

from amp_image.builder.digests import sha256_file, tree_digest
from amp_image.errors import AmpImageError

# The records' and keys' format: a new one never matches an old layer.
FORMAT = 1
# Build order; each layer's hook is where the restored build picks up.
SAVE_POINTS = {"packages": "74-amp-layer-packages", "agent": "78-amp-layer-agent"}
AGENT_LAYER_SOURCES = ("pypi", "wheelhouse")

# What only the agent layer depends on, though environment.d and extra-data.d read
# it (read through by hand, not by the scan below): the source's kind steers only
# extra-data.d, which stages the agent, its constraints and the CA bundle pip trusts
# into the hooks, not the root (source-repositories' checkout and list are left out
# of the layer), and the agent's install.d hooks, which run after the packages
# layer; the compiler it may need, DIB_AMP_AGENT_COMPILE, is a package.
AGENT_ENV = ("DIB_AMP_AGENT_VERSION", "DIB_AMP_AGENT_CONSTRAINTS", "DIB_AMP_AGENT_SOURCE",
             "DIB_AMP_AGENT_SOURCE_TYPE", "DIB_REPOLOCATION_amphora_agent",
             "DIB_REPOREF_amphora_agent", "DIB_AMP_CA_BUNDLE")
# Where this build keeps things: not what goes into the root.
PER_BUILD_ENV = ("DIB_IMAGE_CACHE", "DIB_AMP_ROOT_PASSWORD_HASH_FILE")
# Read by programs that are not DIB's (dpkg, pip), by dib-run-parts to pick hooks or by
# disk-image-create to add the base element: in every key.  (ELEMENTS_PATH counts by
# what of its folders' elements the build uses.)
KEY_ENV_NAMES = ("ARCH", "SOURCE_DATE_EPOCH", "RUN_PARTS_REGEX", "SKIP_BASE")
PROXY_ENV = ("http_proxy", "https_proxy", "no_proxy")

# DIB's phases after install.d, in the order disk-image-create runs them; before it:
# root.d, extra-data.d, pre-install.d.  Both save points are install.d hooks.
LATER_PHASES = frozenset({"post-install.d", "post-root.d", "block-device.d", "pre-finalise.d",
                          "finalise.d", "cleanup.d"})
SAVE_PHASE = "install.d"
HOOK_NAME = re.compile(r"[0-9A-Za-z_-]+")  # dib-run-parts' allowed_regex
# Read by DIB for the element set, which the key holds, and by nothing else.
SET_FILES = ("element-deps", "element-provides")
PACKAGE_INSTALLS = ("package-installs.yaml", "package-installs.json")
# Reads of the whole environment (or of every name with a prefix the scan would not
# see); one in a file before the save point keeps every DIB_ variable in the key.
WHOLE_ENVIRONMENT = re.compile(
    r"\bDIB_ENV\b|\bcompgen\b"
    r"|\b(?:declare|typeset|export|readonly)\s+-\w*[px]\w*[ \t]*(?:$|[;|&)>`])"
    r"|(?:^|[;|&(`{]|\$\()[ \t]*(?:env|printenv|set|export|declare|typeset)[ \t]*"
    r"(?:$|[;|&)>`}])"
    r"|\benviron\s*\.\s*(?:items|keys|values)\s*\("
    r"|(?:\bfor\b[^\n:]*\bin|\*\*|\b(?:dict|list|sorted|set|tuple|str|repr|print|dumps?|update)"
    r"\s*\()\s*(?:os\s*\.\s*)?environ\b(?!\s*\[|\s*\.\s*(?:get|setdefault|pop)\b)",
    re.MULTILINE)
# Whole-environment reads in DIB that were read through (DIB 3.43.0), left out of the
# scan: what they read is found by a name the scan does see.
REVIEWED_READS = {
    # disk-image-create records every DIB_ variable; the record is read through DIB_ENV
    # (the manifests element's cleanup.d), which the scan looks for.
    "export DIB_ENV=$(declare -p $(compgen -v | grep '^DIB_'))",
    # install-types lists the variables named by its PREFIX="DIB_INSTALLTYPE_", a prefix
    # the scan sees.
    "INSTALL_TYPE_VARS=$(env | grep ^$PREFIX | cut -d'=' -f1 || echo \"\")",
}
# VAR=${VAR:-default} (environment.d's idiom): defines VAR from itself, reads no other.
SELF_DEFAULT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=\$\{\1:?-")
WORD = re.compile(r"[A-Za-z0-9_]+")
# DIB's own scripts and modules outside its elements (disk-image-create, lib/, the
# block device layer), which run throughout the build.
DIB_PACKAGE = Path(diskimage_builder.__file__).resolve().parent
# (diskimage_builder.py is the YAML front end, diskimage-builder, which amp-image does
# not run.)
DIB_NOT_CORE = ("elements", "tests", "__pycache__", "diskimage_builder.py")


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


def key_environment(env: Mapping[str, str], *, agent: bool,
                    read_before: Callable[[str], bool] = lambda name: True) -> dict[str, str]:
    """The part of DIB's environment that can change what a layer holds: read_before
    tells whether a DIB_ variable can be read before the layer's save point."""
    picked = {}
    for name, value in env.items():
        wanted = (name.startswith("DIB_") or name in KEY_ENV_NAMES
                  or name.lower() in PROXY_ENV)
        if (not wanted or name in PER_BUILD_ENV or name.startswith("DIB_AMP_LAYER_")
                or (name in AGENT_ENV and not agent)):
            continue
        if name.startswith("DIB_") and not (agent and name in AGENT_ENV) \
                and not read_before(name):
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
    """Both keys, from plain values (the caller reads the mirror); each over what can
    feed the work before its save point (see the module's docstring)."""
    members = element_set(dib_elements(elements, env), [Path(d) for d in element_dirs])
    inputs: dict = {"format": FORMAT, "dib": dib_version, "mirror_index": dict(index_dates)}
    inputs["packages"] = _layer_inputs(members, SAVE_POINTS["packages"], env, agent=False)
    packages = _digest(inputs)
    agent = None
    if agent_source_kind in AGENT_LAYER_SOURCES:
        inputs["agent"] = _layer_inputs(members, SAVE_POINTS["agent"], env, agent=True)
        agent = _digest({"packages": packages, **inputs["agent"]})
    return LayerKeys(packages, agent, inputs)


def _layer_inputs(members: Mapping[str, list[Path]], save_hook: str, env: Mapping[str, str],
                  *, agent: bool) -> dict:
    early = EarlyView(members, save_hook)
    return {"elements": early.elements,
            "env": key_environment(env, agent=agent, read_before=early.reads)}


def dib_elements(elements: Iterable[str], env: Mapping[str, str]) -> list[str]:
    """The elements disk-image-create expands (arg_to_elements): the base element and,
    for a vm without a block-device element, the default one."""
    listed = list(elements)
    if "vm" in listed and not any(e.startswith("block-device-") for e in listed):
        try:  # [[ "arm64 aarch64" =~ $ARCH ]]
            efi = re.search(env.get("ARCH", ""), "arm64 aarch64") is not None
        except re.error:
            efi = False
        listed.append("block-device-efi" if efi else "block-device-mbr")
    return listed if env.get("SKIP_BASE") == "1" else ["base", *listed]


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


def _early_package_installs(data: bytes) -> str | None:
    """A package-installs file's entries for phases before install.d ends, as package-
    installs-squash reads them, in order; None if it would not read them so."""
    try:
        text = data.decode()
        try:
            objs = json.loads(text)
        except ValueError:
            objs = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(objs, dict):
        return None
    kept = []
    for package, params in objs.items():
        listed = [{}] if not params else params if isinstance(params, list) else [params]
        if not all(isinstance(p, dict) and isinstance(p.get("phase", ""), str)
                   for p in listed):
            return None
        early = [p for p in listed if p.get("phase", SAVE_PHASE) not in LATER_PHASES]
        if early:
            kept.append([package, early])
    return json.dumps(kept, sort_keys=True, default=str)


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
                self.elements[name] = _digest(entries)
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
            everything, words = _scan(text)
            self.everything = self.everything or everything
            self.words |= words

    def reads(self, name: str) -> bool:
        """Whether the files before the save point can read the variable name: it, or a
        prefix of it from DIB_ on, stands as a word in them, or they list the whole
        environment."""
        if self.everything or name in self.words:
            return True
        return any(name[:end] in self.words for end in range(len("DIB_"), len(name)))


def _scan(text: str) -> tuple[bool, set[str]]:
    """Whether a text lists the whole environment, and the words in it (self-defaults
    left out)."""
    for reviewed in REVIEWED_READS:
        text = text.replace(reviewed, "")
    return (WHOLE_ENVIRONMENT.search(text) is not None,
            set(WORD.findall(SELF_DEFAULT.sub("", text))))


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
        early = _early_package_installs(data)
        if early == "[]":
            return None
        if early is not None:
            return f"{link}P {hashlib.sha256(early.encode()).hexdigest()}", early
    mode = "x" if os.access(path, os.X_OK) else "-"
    return (f"{link}F {mode} {hashlib.sha256(data).hexdigest()}",
            data.decode("utf-8", "replace"))


@functools.cache
def _dib_core(package: Path = DIB_PACKAGE) -> tuple[str, bool, frozenset[str]]:
    """DIB's scripts and modules outside its elements: their text, and _scan's answer."""
    texts = []
    for dirpath, dirnames, filenames in os.walk(package):
        dirnames[:] = sorted(d for d in dirnames if d not in DIB_NOT_CORE)
        for name in sorted(filenames):
            if not name.endswith(".pyc") and name not in DIB_NOT_CORE:
                texts.append((Path(dirpath) / name).read_bytes().decode("utf-8", "replace"))
    text = "\n".join(texts)
    everything, words = _scan(text)
    return text, everything, frozenset(words)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


