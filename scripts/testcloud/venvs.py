"""The services' venvs: one per service under the cloud's folder, made by uv from its
cache (~/.cache/uv), so that the next `up`, or a fresh clone, gets them in seconds."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from testcloud.layout import CloudDir
from testcloud.releases import Release

STAMP = ".amp-test-cloud"


class VenvError(Exception):
    pass


def uv() -> str:
    """uv from amp-image's own venv (requirements-dev.txt pins it)."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise VenvError("uv is not installed; run scripts/setup-host (requirements-dev.txt "
                        "pins it)")
    return found


def wanted(release: Release, name: str) -> str:
    """What a venv is made of: its requirements and the constraints' content."""
    digest = hashlib.sha256(release.constraints_file.read_bytes()).hexdigest()[:16]
    return " ".join((*release.venvs[name], f"constraints={digest}"))


def ensure(cloud: CloudDir, release: Release, name: str, python: str) -> Path:
    """The venv of one service (or of the clients), made or updated as needed."""
    venv = cloud.venvs / name
    stamp = venv / STAMP
    want = wanted(release, name)
    if stamp.is_file() and stamp.read_text() == want:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    run([uv(), "venv", "--quiet", "--python", python, str(venv)], name)
    run([uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "--constraint", str(release.constraints_file), *release.venvs[name]], name)
    stamp.write_text(want)
    return venv


def run(argv: list[str], name: str) -> None:
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise VenvError(f"could not make the {name} venv: {last}")
