"""amp-image's version and the git commit it was built from.

One source for ``amp-image --version``, the manifest, the SBOM and the
provenance.  The commit comes from, in order: the git checkout the package runs
from (an editable install), ``amp_image/_build_info.py`` (written by setup.py
when a wheel is built from a checkout; never in git), pip's record of a git
install (``direct_url.json``), else it is unknown.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from amp_image import PACKAGE_DIR


@dataclass(frozen=True)
class Source:
    version: str
    commit: str | None = None
    # "git checkout", "wheel build", "package metadata", or None (no commit known).
    commit_from: str | None = None
    uri: str = ""
    # Whether the checkout differed from the commit (None: not known).
    uncommitted_changes: bool | None = None

    def describe(self) -> str:
        """``amp-image 0.1.0 (commit 0123abc...)``, for --version."""
        if not self.commit:
            return f"amp-image {self.version} (commit unknown)"
        dirty = ", with uncommitted changes" if self.uncommitted_changes else ""
        return f"amp-image {self.version} (commit {self.commit}{dirty})"


def version() -> str:
    try:
        return importlib.metadata.version("amp-image")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _build_info() -> dict:
    try:
        from amp_image import _build_info  # type: ignore[attr-defined]
    except ImportError:
        return {}
    return {"commit": getattr(_build_info, "COMMIT", None),
            "dirty": getattr(_build_info, "UNCOMMITTED_CHANGES", None),
            "origin": getattr(_build_info, "SOURCE", "")}


def source() -> Source:
    """Where this amp-image comes from (see the module's docstring for the order)."""
    ver = version()
    repo = PACKAGE_DIR.parent
    commit = _git(repo, "rev-parse", "HEAD") if (repo / ".git").exists() else None
    if commit:
        status = _git(repo, "status", "--porcelain", "--untracked-files=no")
        return Source(ver, commit, "git checkout", f"git+file://{repo}@{commit}",
                      bool(status))
    info = _build_info()
    if info.get("commit"):
        return Source(ver, info["commit"], "wheel build",
                      f"git+file://{info['origin']}@{info['commit']}", info["dirty"])
    try:
        direct = json.loads(importlib.metadata.distribution("amp-image")
                            .read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        direct = {}
    commit = direct.get("vcs_info", {}).get("commit_id")
    if commit:
        return Source(ver, commit, "package metadata", f"git+{direct.get('url', '')}@{commit}")
    return Source(ver, uri=f"pkg:pypi/amp-image@{ver}")
