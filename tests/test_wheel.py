"""amp-image as an installable package (issue 14): the wheel `python -m build` makes from
this checkout, installed into a fresh venv, runs on its own files only.

Slow-ish (a venv, the build, and the runtime dependencies from the package index
through pip's cache), but no image build and no VM.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_FRONTEND = "build==1.6.1"


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, wheel): the wheel built from this checkout (sdist, then the wheel from it),
    installed into a fresh venv.  scripts/test has made exactly that before the tests
    (its wheel phase, build/wheel-venv, which builds the default image) and names it in
    AMP_TEST_WHEEL_VENV and AMP_TEST_WHEEL_DIST: the tests read that one rather than make
    a second (about 35 s).  Run alone (or --quick), the fixture makes its own."""
    made = os.environ.get("AMP_TEST_WHEEL_VENV"), os.environ.get("AMP_TEST_WHEEL_DIST")
    if all(made):
        venv, wheels = Path(made[0]), list(Path(made[1]).glob("amp_image-*.whl"))
        assert (venv / "bin" / "amp-image").is_file() and len(wheels) == 1, made
        return venv, wheels[0]
    tmp = tmp_path_factory.mktemp("wheel")
    # The host's private wheel folders stay out, as in scripts/setup-host.
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env.pop("VIRTUAL_ENV", None)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], env=env)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, BUILD_FRONTEND], env=env)
    dist = tmp / "dist"
    _run([venv / "bin" / "python", "-m", "build", "--outdir", dist, ROOT], env=env, cwd=tmp)
    (wheel,) = dist.glob("amp_image-*.whl")
    _run([*pip, wheel], env=env)
    return venv, wheel


def _amp_image(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Outside the checkout, so nothing can import amp_image from it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return _run([venv / "bin" / "amp-image", *args], env=env, cwd=cwd)


def _site_package(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3*/site-packages/amp_image")
    return site


def test_the_wheel_carries_everything_amp_image_runs_on(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for element in sorted(p.name for p in (ROOT / "amp_image/elements").iterdir()
                          if p.is_dir()):
        assert f"amp_image/elements/{element}/README.rst" in names, element
    for shim in ("sudo", "kpartx", "dmsetup", "fstrim"):
        assert f"amp_image/hostbin/{shim}" in names
    assert "amp_image/data/upper-constraints-2026.2.txt" in names
    assert "amp_image/templates/amphora_agent_conf.template" in names
    assert "amp_image/verify/checks/test_amphora.py" in names
    assert "amp_image/verify/conformance/test_conformance.py" in names
    assert "amp_image/_build_info.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_version_names_the_commit_the_wheel_was_built_from(installed, tmp_path):
    venv, wheel = installed
    info = zipfile.ZipFile(wheel).read("amp_image/_build_info.py").decode()
    (commit,) = re.findall(r"^COMMIT = '([0-9a-f]{40})'$", info, re.M)
    # This checkout's commit when the wheel was built (HEAD, or its ancestor if a commit
    # landed since).
    _run(["git", "-C", ROOT, "merge-base", "--is-ancestor", commit, "HEAD"])
    out = _amp_image(venv, "--version", cwd=tmp_path).stdout
    assert out.startswith(f"amp-image 0.1.0 (commit {commit}")


def test_build_dry_run_uses_the_installed_elements(installed, tmp_path):
    venv, _ = installed
    plan = yaml.safe_load(_amp_image(venv, "build", "--dry-run", "-o",
                                     str(tmp_path / "amp.qcow2"), cwd=tmp_path).stdout)
    elements = _site_package(venv) / "elements"
    assert plan["environment"]["ELEMENTS_PATH"].split(":")[0] == str(elements)
    # DIB runs the hooks only if they are executable: the wheel keeps the mode.
    hooks = [p.relative_to(ROOT / "amp_image/elements")
             for p in (ROOT / "amp_image/elements").glob("*/*.d/[0-9]*") if os.access(p, os.X_OK)]
    assert hooks and all(os.access(elements / h, os.X_OK) for h in hooks)


def test_test_command_and_its_checks_run_from_the_wheel(installed, tmp_path):
    venv, _ = installed
    assert "Boot IMAGE in QEMU" in _amp_image(venv, "test", "--help", cwd=tmp_path).stdout
    # What `amp-image test` imports at run time, and the files it renders and installs.
    code = ("import pytest, testinfra, paramiko, amp_image.verify.checks.plugin\n"
            "from pathlib import Path\n"
            "from amp_image.verify import configdrive\n"
            "from amp_image.builder.shims import install_shims\n"
            "assert 'amphora_id = a-1' in configdrive.agent_conf('a-1', '192.0.2.1:5555')\n"
            "install_shims(Path('shims'), device_mapper=False)\n"
            "print(configdrive.__file__)\n")
    out = _run([venv / "bin" / "python", "-c", code], cwd=tmp_path).stdout
    assert out.strip().startswith(str(_site_package(venv)))
    assert (tmp_path / "shims" / "kpartx").is_file()
