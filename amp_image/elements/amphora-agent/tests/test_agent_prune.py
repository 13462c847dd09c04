"""install.d/76-amphora-agent-prune, and the venv-compile step after it, without a
build: a real venv holding made-up distributions (a dist-info with METADATA, RECORD and
entry points, as pip writes them), pruned by the element's script as it runs in the
image."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "install.d/76-amphora-agent-prune"
COMPILE_SCRIPT = SCRIPT.with_name("77-amphora-agent-venv-compile")


def add_distribution(site: Path, name: str, module: str, code: str = "",
                     entry_points: str = "") -> None:
    package = site / module
    package.mkdir()
    (package / "__init__.py").write_text(code)
    cache = package / "__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-313.pyc").write_bytes(b"")
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    files = [f"{module}/__init__.py", f"{module}/__pycache__/__init__.cpython-313.pyc",
             f"{info.name}/METADATA", f"{info.name}/RECORD"]
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points)
        files.append(f"{info.name}/entry_points.txt")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    root = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)})
    site = Path(purelib)
    add_distribution(site, "kept-lib", "kept_lib", "VALUE = 1\n")
    add_distribution(site, "controller-lib", "controller_lib")
    add_distribution(site, "octavia", "octavia_agent", "import kept_lib\ndef main(): pass\n",
                     "[console_scripts]\namphora-agent = octavia_agent:main\n"
                     "octavia-worker = octavia_agent.missing:main\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/amphora-agent").touch()
    return root


def prune(venv: Path, names: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DIB_AMP_AGENT_PRUNE=names, AMP_AGENT_VENV_DIR=str(venv),
               AMP_AGENT_RECORD_DIR=str(venv.parent / "record"),
               AMP_AGENT_BIN_DIR=str(venv.parent / "bin"))
    # As the build runs them: the prune, then the compile, which proves the linked
    # programs still load.
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return result
    return subprocess.run(["bash", str(COMPILE_SCRIPT)], env=env, capture_output=True,
                          text=True)


def site_of(venv: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


def test_prunes_the_listed_distributions_and_records_them(venv):
    result = prune(venv, "controller-lib not-installed")
    assert result.returncode == 0, result.stderr
    site = site_of(venv)
    assert not (site / "controller_lib").exists()
    assert not (site / "controller_lib-1.0.dist-info").exists()
    assert (site / "kept_lib-1.0.dist-info/METADATA").is_file()
    assert (site / "kept_lib/__init__.py").is_file()
    assert (venv.parent / "record/agent-pruned").read_text() == "controller-lib==1.0\n"


def test_fails_when_a_linked_program_needs_a_pruned_distribution(venv):
    result = prune(venv, "kept-lib")
    assert result.returncode != 0
    assert "kept_lib" in result.stderr


def test_unlinked_programs_are_not_loaded(venv):
    # octavia-worker (a controller program) points at a module that does not exist:
    # it is not linked into the bin dir, so the check must not load it.
    assert prune(venv, "controller-lib").returncode == 0


def test_nothing_to_prune_is_a_no_op(venv):
    result = prune(venv, "")
    assert result.returncode == 0
    assert (site_of(venv) / "controller_lib").is_dir()
    assert not (venv.parent / "record").exists()


ENV_SCRIPT = SCRIPT.parent.parent / "environment.d/20-amphora-agent-prune.bash"


@pytest.mark.parametrize("version,pruned", [("19.0.0", True), ("", True), ("16.1.0", False),
                                            ("14.0.2", False)])
def test_the_audited_list_prunes_octavia_19_only(version, pruned):
    """The list is the import audit's verdict on octavia 19; a git or folder source (no
    version) is pruned and checked by the prune itself."""
    result = subprocess.run(["bash", "-c", f'source "{ENV_SCRIPT}"; echo "[$DIB_AMP_AGENT_PRUNE]"'],
                            capture_output=True, text=True, check=True,
                            env={"PATH": os.environ["PATH"], "DIB_AMP_AGENT_VERSION": version})
    listed = result.stdout.strip().strip("[]").split()
    assert ("oslo.policy" in listed) is pruned
    assert bool(listed) is pruned
