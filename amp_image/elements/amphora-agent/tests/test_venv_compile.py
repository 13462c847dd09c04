"""install.d/77-amphora-agent-venv-compile without a build: a real venv, its
site-packages compiled by the element's script as it runs in the image."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "install.d/77-amphora-agent-venv-compile"


def make_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    info = site / "octavia-1.0.dist-info"  # no console scripts: nothing to load
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: octavia\nVersion: 1.0\n")
    return venv, site


def compile_venv(venv: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                          env=dict(os.environ, AMP_AGENT_VENV_DIR=str(venv),
                                   AMP_AGENT_BIN_DIR=str(venv / "bin")))


def test_every_module_left_in_the_venv_gets_its_bytecode(tmp_path):
    venv, site = make_venv(tmp_path)
    (site / "agent_pkg/sub").mkdir(parents=True)
    sources = [site / "agent_pkg/__init__.py", site / "agent_pkg/sub/mod.py",
               site / "top_level.py"]
    for source in sources:
        source.write_text("VALUE = 1\n")
    result = compile_venv(venv)
    assert result.returncode == 0, result.stderr
    for source in sources:
        assert Path(importlib.util.cache_from_source(str(source))).is_file(), source


def test_a_file_that_does_not_compile_does_not_stop_the_build(tmp_path):
    venv, site = make_venv(tmp_path)
    (site / "py2_leftover.py").write_text("print 'hello'\n")
    (site / "fine.py").write_text("VALUE = 1\n")
    result = compile_venv(venv)
    assert result.returncode == 0, result.stderr
    assert "did not compile" in result.stdout and "py2_leftover.py" in result.stdout
    assert Path(importlib.util.cache_from_source(str(site / "fine.py"))).is_file()
