"""Build hook: a wheel records the git commit it is built from.

The metadata is in pyproject.toml; this only writes ``amp_image/_build_info.py``
(never in git) into what is built: the wheel's build folder (build_py), and the
release tree of an sdist, so a wheel built from that sdist (``python -m build``)
still knows its commit.  amp_image.version reads it.
"""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
BUILD_INFO = Path("amp_image") / "_build_info.py"


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(HERE), *args], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def build_info() -> str | None:
    """The module's text, or None outside a git checkout (an unpacked sdist keeps its own)."""
    if not (HERE / ".git").exists():
        return None
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return ('"""Written by setup.py when this amp-image was built; not in git."""\n\n'
            f"COMMIT = {commit!r}\nUNCOMMITTED_CHANGES = {dirty!r}\nSOURCE = {str(HERE)!r}\n")


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # sdist hard-links the tree: never write through a link
    target.write_text(text)


class BuildPy(build_py):
    def run(self):
        super().run()
        text = build_info()
        if text and not self.editable_mode:
            _write(Path(self.build_lib) / BUILD_INFO, text)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        text = build_info()
        if text:
            _write(Path(base_dir) / BUILD_INFO, text)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
