"""Octavia's released source (the PyPI sdist) as a local git repository, tagged.

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


def download_sdist(version: str, dest: Path) -> Path:
    """octavia==version's sdist from the package index, unpacked under dest; its folder."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", "--dest", str(dest), f"octavia=={version}"],
                   check=True, env={k: v for k, v in os.environ.items()
                                    if k != "PIP_FIND_LINKS"})
    sdist = next(dest.glob(f"octavia-{version}.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(dest, filter="data")
    return dest / f"octavia-{version}"


def tagged_repository(version: str, dest: Path) -> tuple[Path, str]:
    """octavia==version's source committed in a new git repository and tagged with the
    version; the repository and its commit."""
    repo = download_sdist(version, dest)
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", f"octavia {version}")
    git(repo, "tag", version)
    return repo, git(repo, "rev-parse", "HEAD")
