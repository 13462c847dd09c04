"""Static checks: ruff on the Python, dib-lint on the elements, bashate and shellcheck on
the shell."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)


def test_ruff():
    result = run([str(BIN / "ruff"), "check", "amp_image", "tests", "scripts"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("elements", ["amp_image/elements", "scripts/bench-elements"])
def test_dib_lint_elements(elements):
    env = dict(os.environ, ELEMENTS_DIR=elements, LIB_DIR="amp_image/elements",
               PATH=f"{BIN}:{os.environ['PATH']}")
    result = run([str(BIN / "dib-lint")], env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "PASS" in result.stdout


def test_every_element_has_readme_and_deps_sorted():
    for element in sorted((ROOT / "amp_image/elements").iterdir()):
        assert (element / "README.rst").is_file(), element.name
        deps = element / "element-deps"
        if deps.exists():
            lines = deps.read_text().split()
            assert lines == sorted(lines), element.name


def bash_scripts() -> list[str]:
    candidates = [ROOT / "diskimage-create.sh", ROOT / ".ci" / "run",
                  *sorted((ROOT / "scripts").iterdir()),
                  *sorted((ROOT / "amp_image" / "hostbin").iterdir())]
    return [str(s) for s in candidates if s.is_file() and s.read_text().startswith("#!/")
            and "bash" in s.read_text().splitlines()[0]]


def test_shell_scripts_bashate():
    result = run([str(BIN / "bashate"), "-i", "E006", *bash_scripts()])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_shellcheck():
    # Warnings and errors: an unassigned variable under set -u (SC2154) stopped CI once.
    result = run([str(BIN / "shellcheck"), "--severity=warning", *bash_scripts()])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_parse():
    for script in bash_scripts():
        result = run(["bash", "-n", script])
        assert result.returncode == 0, f"{script}: {result.stderr}"
