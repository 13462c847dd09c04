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

Here the keys are made from values; ``layer_inputs.py`` reads the element set and the
mirror's dates, ``early_view.py`` what of the elements feeds each layer, with
``env_scan.py``'s scan of their text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from amp_image.builder.dib_elements import dib_elements
from amp_image.builder.digests import json_digest, sha256_file, tree_digest
from amp_image.builder.early_view import EarlyView
from amp_image.builder.layer_inputs import element_set

# The records' and keys' format: a new one never matches an old layer.
FORMAT = 1
# Build order; each layer's hook is where the restored build picks up.
SAVE_POINTS = {"packages": "74-amp-layer-packages", "agent": "78-amp-layer-agent"}
AGENT_LAYER_SOURCES = ("pypi", "wheelhouse")

# What only the agent layer depends on, though environment.d and extra-data.d read
# it (read through by hand, not by env_scan.py's scan): the source's kind steers only
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
    members = element_set(
        dib_elements(elements, env.get("ARCH", ""), skip_base=env.get("SKIP_BASE") == "1"),
        [Path(d) for d in element_dirs])
    inputs: dict = {"format": FORMAT, "dib": dib_version, "mirror_index": dict(index_dates)}
    inputs["packages"] = _layer_inputs(members, SAVE_POINTS["packages"], env, agent=False)
    packages = json_digest(inputs)
    agent = None
    if agent_source_kind in AGENT_LAYER_SOURCES:
        inputs["agent"] = _layer_inputs(members, SAVE_POINTS["agent"], env, agent=True)
        agent = json_digest({"packages": packages, **inputs["agent"]})
    return LayerKeys(packages, agent, inputs)


def _layer_inputs(members: Mapping[str, list[Path]], save_hook: str, env: Mapping[str, str],
                  *, agent: bool) -> dict:
    early = EarlyView(members, save_hook)
    return {"elements": early.elements,
            "env": key_environment(env, agent=agent, read_before=early.reads)}
