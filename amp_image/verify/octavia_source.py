"""Octavia's released source (the PyPI sdist) as a local git repository, tagged; or
another OpenStack project's (octavia-lib, which Octavia's own elements clone too).

This machine reaches no git hosting; an operator's ``git+https://`` agent source takes
the same path as this ``git+file://`` one (clone on the build host, check out the ref,
pbr reads the version from git inside the chroot).  The suite's git-source build uses
it, and so does the bench's build of Octavia's own ``diskimage-create.sh``, whose
``amphora-agent`` element clones the agent from git (``DIB_REPOLOCATION_amphora_agent``)
and whose elements come in the same sdist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=amp-image",
                           "-c", "user.email=amp-image@amp-image.invalid", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def download_sdist(version: str, dest: Path, project: str = "octavia") -> Path:
    """project==version's sdist from the package index, unpacked under dest; its
    folder."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", "--dest", str(dest), f"{project}=={version}"],
                   check=True, env={k: v for k, v in os.environ.items()
                                    if k != "PIP_FIND_LINKS"})
    def named(path: Path) -> bool:  # octavia-lib's files say octavia_lib (PEP 625)
        stem = path.name.removesuffix(".tar.gz").replace("-", "_").lower()
        return stem == f"{project}_{version}".replace("-", "_").lower()

    sdist = next(p for p in dest.glob("*.tar.gz") if named(p))
    with tarfile.open(sdist) as archive:
        archive.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir() and named(p))


def tagged_repository(version: str, dest: Path, project: str = "octavia") -> tuple[Path, str]:
    """project==version's source committed in a new git repository and tagged with the
    version; the repository and its commit."""
    repo = download_sdist(version, dest, project)
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", f"{project} {version}")
    git(repo, "tag", version)
    return repo, git(repo, "rev-parse", "HEAD")
