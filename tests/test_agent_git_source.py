"""The agent from a git repository (--agent-source git+URL@REF), built for real.

This machine reaches no git hosting, so the repository is a local one made from
octavia's released source (the PyPI sdist), committed and tagged: the same path
an operator's git+https URL takes (clone on the build host, check out the ref,
pbr reads the version from git inside the chroot).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import AMP_IMAGE

from amp_image.image.imagefs import mounted_image

pytestmark = pytest.mark.image

VERSION = "19.0.0"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=amp-image test",
                           "-c", "user.email=test@amp-image.invalid", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def octavia_repo(tmp_path_factory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("octavia-git")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--no-binary", ":all:", "--dest", str(work), f"octavia=={VERSION}"],
                   check=True, env={k: v for k, v in os.environ.items()
                                    if k != "PIP_FIND_LINKS"})
    sdist = next(work.glob("octavia-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    repo = work / f"octavia-{VERSION}"
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", f"octavia {VERSION}")
    git(repo, "tag", VERSION)
    return repo, git(repo, "rev-parse", "HEAD")


def test_agent_from_a_git_repository(built_image, octavia_repo, tmp_path):
    repo, commit = octavia_repo
    output = tmp_path / "git-agent.qcow2"
    result = subprocess.run(
        [AMP_IMAGE, "build", "--sriov", "-o", str(output),
         "--agent-source", f"git+file://{repo}@{VERSION}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "from git" in result.stdout
    with mounted_image(output) as root:
        record = (root / "etc/amp-image/amphora-agent").read_text()
        site = next((root / "opt/amphora-agent-venv/lib").glob("python3*/site-packages"))
        dists = [p.name for p in site.glob("octavia-*.dist-info")]
        help_run = subprocess.run(["chroot", str(root), "/usr/local/bin/amphora-agent",
                                   "--help"], capture_output=True, text=True, timeout=120)
        git_left = (root / "usr/bin/git").exists()
    assert "AMPHORA_AGENT_SOURCE_TYPE=git" in record
    assert f"AMPHORA_AGENT_GIT_REF={commit}" in record
    assert f"AMPHORA_AGENT_VERSION={VERSION}" in record
    assert dists == [f"octavia-{VERSION}.dist-info"]
    assert help_run.returncode == 0, help_run.stderr[-1000:]
    assert not git_left, "git (build-only for pbr) was left in the image"

    # Two real builds side by side: amp-image diff names the agent's new source and commit.
    result = subprocess.run([AMP_IMAGE, "diff", str(built_image), str(output), "--json"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    diff = json.loads(result.stdout)
    assert diff["old"]["kind"] == diff["new"]["kind"] == "image"
    assert diff["agent"]["old"]["source_type"] == "pypi"
    assert diff["agent"]["new"]["source_type"] == "git"
    assert diff["agent"]["new"]["git_ref"] == commit
    assert diff["packages"]["old_count"] > 100 and diff["haproxy"]["new"]
    table = subprocess.run([AMP_IMAGE, "diff", str(built_image), str(output)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=600)
    assert table.returncode == 0 and f"(git) @{commit[:12]}" in table.stdout
