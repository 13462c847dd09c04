"""amphora-agent without a build: its environment, its package-installs.yaml as
DIB's package-installs-squash reads it, and its git source fetched by DIB's own
source-repositories script from a local repository (as an operator's
DIB_REPOLOCATION_amphora_agent / DIB_REPOREF_amphora_agent would)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import diskimage_builder
import pytest

ELEMENT = Path(__file__).resolve().parent.parent
ELEMENTS = ELEMENT.parent
DIB_ELEMENTS = Path(diskimage_builder.__file__).resolve().parent / "elements"
SQUASH = DIB_ELEMENTS / "package-installs/bin/package-installs-squash"
FETCH = DIB_ELEMENTS / "source-repositories/extra-data.d/98-source-repositories"


def element_env(**env: str) -> dict[str, str]:
    """The environment after the element's environment.d, as DIB sources it."""
    script = f'source "{ELEMENT}/environment.d/10-amphora-agent.bash"; env -0'
    out = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"], **env},
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)


def squash(tmp_path: Path, **env: str) -> dict:
    """DIB's package-installs-squash over source-repositories and this element."""
    out = tmp_path / "package-installs.json"
    env = {**element_env(**env), "ARCH": "amd64", "DIB_PYTHON_VERSION": "3",
           "DIB_DEFAULT_INSTALLTYPE": "source"}
    subprocess.run([sys.executable, str(SQUASH), "--elements",
                    "source-repositories amphora-agent",
                    "--path", f"{ELEMENTS}:{DIB_ELEMENTS}", str(out)],
                   env=env, check=True, capture_output=True)
    data = json.loads(out.read_text())
    return {phase: {kind: sorted(p for p, _ in data[phase][kind]) for kind in data[phase]}
            for phase in data}


def test_environment_defaults_and_upstream_meaning():
    env = element_env()
    assert env["DIB_AMP_AGENT_SOURCE_TYPE"] == "pypi"
    assert env["DIB_INSTALLTYPE_amphora_agent"] == "package"
    assert (env["DIB_AMP_AGENT_COMPILE"], env["DIB_AMP_SLIM"]) == ("0", "1")
    # Upstream's element: a repository location alone means the agent comes from git.
    env = element_env(DIB_REPOLOCATION_amphora_agent="https://git.example/octavia")
    assert env["DIB_AMP_AGENT_SOURCE_TYPE"] == "git"
    assert "DIB_INSTALLTYPE_amphora_agent" not in env
    for kind in ("dir", "wheelhouse"):
        assert element_env(DIB_AMP_AGENT_SOURCE_TYPE=kind)["DIB_INSTALLTYPE_amphora_agent"] \
            == "package"


def test_slim_build_installs_venv_and_git_for_the_build_only(tmp_path):
    phases = squash(tmp_path)
    install = phases["install.d"]
    assert {"python3", "python3-venv", "git", "acl", "tcpdump"} <= set(install["install"])
    assert install["uninstall"] == ["python3-venv"]
    assert not {"gcc", "libc6-dev", "python3-dev"} & set(install["install"])
    # git goes after install.d, where the agent's pip install (pbr) used it, and the perl it
    # pulled in with it.
    assert phases["post-install.d"] == {"install": [], "uninstall": ["git", "perl"]}


def test_full_build_keeps_python3_venv(tmp_path):
    install = squash(tmp_path, DIB_AMP_SLIM="0")["install.d"]
    assert "python3-venv" in install["install"]
    assert install.get("uninstall", []) == []


def test_compiler_for_the_build_only(tmp_path):
    install = squash(tmp_path, DIB_AMP_AGENT_COMPILE="1")["install.d"]
    assert {"gcc", "libc6-dev", "python3-dev"} <= set(install["install"])
    assert install["uninstall"] == ["gcc", "libc6-dev", "python3-dev", "python3-venv"]


# --- the git source, through DIB's source-repositories ------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=amp-image test",
                           "-c", "user.email=test@amp-image.invalid", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A local repository with a released (tagged) commit and a newer branch."""
    repo = tmp_path / "octavia"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "master")
    (repo / "setup.cfg").write_text("[metadata]\nname = octavia\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "octavia 19.0.0")
    git(repo, "tag", "19.0.0")
    git(repo, "checkout", "--quiet", "-b", "stable/2026.1")
    (repo / "README.rst").write_text("stable\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "on the stable branch")
    git(repo, "checkout", "--quiet", "master")
    return repo


def fetch(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run source-repositories' extra-data.d script as DIB does, on the build host
    (sudo stubbed: amp-image builds as root), into a scratch image root."""
    # DIB's own layout: the manifest's name takes the part after the dot.
    hooks, root, stub = tmp_path / "hooks", tmp_path / "dib_build.test/mnt", tmp_path / "stub"
    for d in (hooks / "bin", root / "etc/dib-manifests", stub):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ELEMENT / "source-repository-amphora-agent", hooks)
    (stub / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (stub / "sudo").chmod(0o755)
    env = {**element_env(**env), "PATH": f"{stub}:{os.environ['PATH']}",
           "TMP_HOOKS_PATH": str(hooks), "TMP_MOUNT_PATH": str(root),
           "DIB_IMAGE_CACHE": str(tmp_path / "cache"), "IMAGE_NAME": "amphora",
           "DIB_MANIFEST_IMAGE_DIR": "/etc/dib-manifests", "DIB_OFFLINE": "",
           "DIB_DEFAULT_INSTALLTYPE": "source", "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(FETCH)], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_git_source_at_a_tag_from_a_local_repository(tmp_path, repo, scheme):
    location = f"{scheme}{repo}"
    result = fetch(tmp_path, DIB_AMP_AGENT_SOURCE_TYPE="git",
                   DIB_REPOLOCATION_amphora_agent=location, DIB_REPOREF_amphora_agent="19.0.0")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    root = tmp_path / "dib_build.test/mnt"
    checkout = root / "opt/amphora-agent"
    tagged = git(repo, "rev-parse", "19.0.0^{commit}")
    assert git(checkout, "rev-parse", "HEAD") == tagged
    # pbr versions the checkout from the release tag on HEAD.
    assert "19.0.0" in git(checkout, "tag", "--points-at", "HEAD").split()
    manifest = (root / "etc/dib-manifests/dib-manifest-git-amphora").read_text()
    assert manifest == f"amphora-agent git /opt/amphora-agent {location} {tagged}\n"


def test_full_tag_ref_is_fetched_over_a_stale_cache(tmp_path, repo):
    """A tag made again on another commit (or a repository made again at the same path):
    DIB's cache holds the old tag, and the full ref amp-image passes (gitref.py) is fetched
    over it; the build gets the commit the repository tags now."""
    first = fetch(tmp_path, DIB_REPOLOCATION_amphora_agent=str(repo),
                  DIB_REPOREF_amphora_agent="refs/tags/19.0.0")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    shutil.rmtree(tmp_path / "dib_build.test")
    (repo / "setup.cfg").write_text("[metadata]\nname = octavia\nversion = 19.0.0\n")
    git(repo, "commit", "--quiet", "--all", "-m", "19.0.0 again")
    git(repo, "tag", "--force", "19.0.0")
    second = fetch(tmp_path, DIB_REPOLOCATION_amphora_agent=str(repo),
                   DIB_REPOREF_amphora_agent="refs/tags/19.0.0")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    checkout = tmp_path / "dib_build.test/mnt/opt/amphora-agent"
    assert git(checkout, "rev-parse", "HEAD") == git(repo, "rev-parse", "19.0.0^{commit}")
    assert "19.0.0" in git(checkout, "tag", "--points-at", "HEAD").split()


def test_git_source_at_a_branch(tmp_path, repo):
    result = fetch(tmp_path, DIB_REPOLOCATION_amphora_agent=str(repo),
                   DIB_REPOREF_amphora_agent="stable/2026.1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert git(tmp_path / "dib_build.test/mnt/opt/amphora-agent", "rev-parse", "HEAD") == \
        git(repo, "rev-parse", "stable/2026.1")


def test_other_sources_fetch_nothing(tmp_path, repo):
    # Even with a location set (by an operator's environment), a PyPI build fetches nothing.
    result = fetch(tmp_path, DIB_AMP_AGENT_SOURCE_TYPE="pypi",
                   DIB_REPOLOCATION_amphora_agent=str(repo))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "amphora-agent install type not set to source" in result.stdout
    assert not (tmp_path / "dib_build.test/mnt/opt/amphora-agent").exists()
