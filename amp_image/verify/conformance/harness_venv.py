"""The conformance harness's virtualenv: the octavia release of the image's agent.

One venv per octavia version, under the cache dir, made once and reused.  It
holds ``octavia==VERSION`` under the upper constraints of that series, plus
the test tools the harness runs (pytest, pytest-testinfra, pycdlib,
paramiko).  amp-image's own package is visible there through a directory
holding only ``amp_image``, so none of amp-image's runtime pins mix with
octavia's: this venv is for the test harness only, never amp-image's runtime.
Two processes that need it at once (two test runs, or a suite's lanes) take turns:
the second waits on ``octavia-VERSION.lock`` beside it and finds it made.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from amp_image import PACKAGE_DIR
from amp_image.builder import constraints, locks
from amp_image.errors import HostError

CACHE = Path("~/.cache/amp-image/conformance").expanduser()
# pyroute2: the driver imports agent modules that import it (octavia does not declare it).
HARNESS_TOOLS = ("pytest", "pytest-testinfra==10.2.2", "pycdlib", "paramiko", "pyroute2")
AMP_IMAGE_PACKAGE = PACKAGE_DIR


def venv_dir(octavia_version: str) -> Path:
    return CACHE / f"octavia-{octavia_version}"


def _stamp(octavia_version: str, constraints_file: Path) -> str:
    digest = hashlib.sha256(constraints_file.read_bytes())
    digest.update(" ".join((octavia_version, *HARNESS_TOOLS)).encode())
    return digest.hexdigest()[:16]


def _pip_env() -> dict[str, str]:
    # The host's own pip settings (private wheel folders) stay out of the venv.
    return {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_INDEX_URL")}


def ensure(octavia_version: str, emit=print) -> Path:
    """The venv's python, made (or remade, when its inputs changed) as needed."""
    venv = venv_dir(octavia_version)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = locks.acquire(venv.with_name(venv.name + ".lock"),
                         what=f"the conformance harness venv {venv}", wait=True,
                         busy_hint="", emit=emit)
    try:
        return _ensure(octavia_version, venv, emit)
    finally:
        lock.release()


def _ensure(octavia_version: str, venv: Path, emit) -> Path:
    constraints_file = constraints.vendored_for(octavia_version)
    python = venv / "bin" / "python"
    stamp = venv / ".amp-image-stamp"
    want = _stamp(octavia_version, constraints_file)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        _link_package(venv)
        return python
    emit(f"conformance: installing octavia {octavia_version} into {venv} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(constraints_file), f"octavia=={octavia_version}", *HARNESS_TOOLS],
        env=_pip_env(), capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise HostError(
            f"cannot install octavia {octavia_version} for the conformance harness ({last}); "
            "pass --octavia-version with a release on the package index (pip index versions "
            "octavia), or build the image with such an --agent-version")
    _link_package(venv)
    stamp.write_text(want)
    return python


def _link_package(venv: Path) -> Path:
    """A directory with only amp_image in it, for PYTHONPATH."""
    holder = venv / "amp-image-package"
    holder.mkdir(exist_ok=True)
    link = holder / "amp_image"
    if not link.is_symlink() or link.resolve() != AMP_IMAGE_PACKAGE:
        link.unlink(missing_ok=True)
        link.symlink_to(AMP_IMAGE_PACKAGE)
    return holder


def pythonpath(octavia_version: str) -> str:
    return str(venv_dir(octavia_version) / "amp-image-package")
