"""Before a build: can the sources it needs be reached, and do they have what it asks for?

A build that cannot reach the Debian mirror or the Python package index, or that
asks for an agent release PyPI does not have, fails minutes in, deep in DIB's log.
These checks ask the same servers, through the same proxy settings the build gets
(urllib reads the *_proxy variables as pip and apt do), in a second or two, and name
the cause and the fix in one line.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from amp_image.builder.plan import BuildPlan
from amp_image.errors import PlanError

PYPI = "https://pypi.org"
TIMEOUT_S = 20
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class Source:
    what: str          # "the Debian mirror"
    elsewhere: str     # how to use another one

    def unreachable(self, url: str, reason: object, env: Mapping[str, str]) -> PlanError:
        proxy = proxy_variable(url, env)
        if proxy:
            return PlanError(f"{self.what} is unreachable: {url} through the proxy "
                             f"{env[proxy]} ({proxy}): {reason}; fix or unset {proxy}")
        return PlanError(f"{self.what} is unreachable: {url}: {reason}; check this host's "
                         f"network, or {self.elsewhere}")


MIRROR = Source("the Debian mirror", "use one it reaches (--mirror URL)")
SNAPSHOT = Source("the Debian snapshot archive", "rebuild from the package versions an "
                  "earlier image records instead (--pin-packages-from IMAGE)")
INDEX = Source("the Python package index", "build offline (--agent-source WHEELHOUSE)")


def proxy_variable(url: str, env: Mapping[str, str]) -> str:
    """The environment variable whose proxy a request for url goes through, if any."""
    scheme = url.split(":", 1)[0]
    return next((name for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
                 if env.get(name)), "")


def _open(request: urllib.request.Request, source: Source, env: Mapping[str, str]):
    try:
        # A new opener: its ProxyHandler reads the *_proxy variables now.
        return urllib.request.build_opener().open(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as exc:
        raise source.unreachable(request.full_url, getattr(exc, "reason", exc), env) from None


def head_status(url: str, source: Source, env: Mapping[str, str]) -> int:
    """The HTTP status of HEAD url; PlanError naming source if no server answers."""
    try:
        with _open(urllib.request.Request(url, method="HEAD"), source, env) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def check_mirror(mirror: str, release: str, env: Mapping[str, str],
                 source: Source = MIRROR) -> None:
    url = f"{mirror.rstrip('/')}/dists/{release}/Release"
    status = head_status(url, source, env)
    if status != 200:
        fix = "another --snapshot" if source is SNAPSHOT else "another --mirror"
        raise PlanError(f"{source.what} {mirror} has no {release} (HTTP {status} for "
                        f"{url}); choose {fix} or --release")


def released_versions(files: list[dict]) -> set[str]:
    """The versions in a simple-API project page's file names (wheels and sdists)."""
    versions = set()
    for name in (f.get("filename", "") for f in files):
        if name.endswith(".whl"):
            versions.add(name.split("-")[1])
        else:
            for ext in (".tar.gz", ".zip"):
                if name.endswith(ext):
                    versions.add(name.removesuffix(ext).rsplit("-", 1)[-1])
    return versions


def _release_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")) if re.fullmatch(r"[\d.]+", version) else ()


def check_agent_release(version: str, env: Mapping[str, str]) -> None:
    """octavia==version is on the index (PEP 691's JSON simple API, as pip reads it)."""
    url = f"{PYPI}/simple/octavia/"
    request = urllib.request.Request(url, headers={"Accept": SIMPLE_JSON})
    try:
        with _open(request, INDEX, env) as answer:
            files = json.load(answer).get("files", [])
    except urllib.error.HTTPError as exc:
        raise INDEX.unreachable(url, f"HTTP {exc.code}", env) from None
    versions = released_versions(files)
    if version not in versions:
        newest = max(versions, key=_release_key, default="")
        raise PlanError(f"octavia {version} is not on PyPI ({url}); choose a released "
                        f"--agent-version (the newest is {newest})")


def check_sources(plan: BuildPlan, env: Mapping[str, str]) -> None:
    """The Debian mirror, and PyPI for every agent source but a wheelhouse (a git or
    folder source still takes the agent's dependencies from PyPI)."""
    mirror = plan.env.get("DIB_DISTRIBUTION_MIRROR")
    if mirror:
        check_mirror(mirror, plan.env["DIB_RELEASE"], env,
                     SNAPSHOT if plan.options.snapshot else MIRROR)
    source = plan.options.agent_source
    if source.kind == "pypi":
        check_agent_release(plan.options.agent_version, env)
    elif source.kind != "wheelhouse":
        head_status(f"{PYPI}/simple/", INDEX, env)
