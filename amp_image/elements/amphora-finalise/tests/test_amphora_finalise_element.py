"""amphora-finalise's scripts without a build, with the package tools stubbed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ELEMENT = Path(__file__).resolve().parent.parent

DPKG_STATUS = """\
gcc-14-base ii install ok installed
libgcc-s1 ii install ok installed
python3 ii install ok installed
python3-venv rc deinstall ok config-files
gcc-14 ii install ok installed
libpython3.13-dev ii install ok installed
make rc deinstall ok config-files
"""


def dpkg_query(status: str) -> str:
    """dpkg-query -W, answering both formats the element's scripts ask for."""
    rows = [line.split(" ", 2) for line in status.splitlines()]
    by_status = "\n".join(f"{abbrev} {name}" for name, abbrev, _ in rows)
    by_package = "\n".join(f"{name} {words}" for name, _, words in rows)
    return (f'case "$*" in\n  *Status-Abbrev*) printf "%s\\n" "{by_status}" ;;\n'
            f'  *) printf "%s\\n" "{by_package}" ;;\nesac')


def run(script: str, tmp_path: Path, status: str = DPKG_STATUS,
        distro: str = "debian") -> tuple[subprocess.CompletedProcess, list[str]]:
    """One of the element's scripts, and the package tools' calls it made: apt-get, dpkg
    and dpkg-query are links to one stub that logs each call, dpkg-query answering from
    status (dpkg-query -W's rows as NAME ABBREV WORDS)."""
    stubs, log = tmp_path / "stub", tmp_path / "calls.log"
    stubs.mkdir()
    tool = stubs / "package-tool"
    tool.write_text(f'#!/bin/bash\necho "${{0##*/}} $*" >> "{log}"\n'
                    f'if [ "${{0##*/}}" = dpkg-query ]; then\n{dpkg_query(status)}\nfi\n')
    tool.chmod(0o755)
    for name in ("apt-get", "dpkg", "dpkg-query"):
        (stubs / name).symlink_to(tool)
    result = subprocess.run(["bash", str(ELEMENT / script)], capture_output=True, text=True,
                            env={"PATH": f"{stubs}:{os.environ['PATH']}", "DISTRO_NAME": distro})
    return result, log.read_text().splitlines() if log.exists() else []


def test_build_tools_left_fail_the_build(tmp_path):
    result, _ = run("finalise.d/98-check-no-build-tools", tmp_path)
    assert result.returncode == 1
    # Installed compilers and headers only: not runtime libraries, not removed packages.
    assert result.stderr == \
        "amphora-base: build-only packages left in the image: gcc-14 libpython3.13-dev \n"


def test_no_build_tools_passes(tmp_path):
    status = "".join(line + "\n" for line in DPKG_STATUS.splitlines()
                     if not line.startswith(("gcc-14 ", "libpython3.13-dev")))
    result, _ = run("finalise.d/98-check-no-build-tools", tmp_path, status)
    assert result.returncode == 0, result.stderr


def test_removed_packages_are_purged_with_what_they_pulled_in(tmp_path):
    result, calls = run("finalise.d/10-purge-removed-packages", tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "apt-get -y autoremove --purge",
        "dpkg-query -W -f ${db:Status-Abbrev} ${binary:Package}\\n",
        "dpkg --purge python3-venv make",
    ]


@pytest.mark.parametrize("script", ["finalise.d/10-purge-removed-packages",
                                    "finalise.d/98-check-no-build-tools"])
def test_dpkg_steps_refuse_other_distributions(tmp_path, script):
    result, calls = run(script, tmp_path, distro="centos")
    assert result.returncode == 1
    assert "centos" in result.stderr and calls == []
