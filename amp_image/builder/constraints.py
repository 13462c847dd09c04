"""OpenStack series amp-image builds agents of, and their vendored upper constraints.

The files under ``data/`` are OpenStack's ``upper-constraints.txt`` as
published for each series (see ``data/README.md`` for where they came from).
They do not pin octavia itself: the agent version is chosen separately, and its
major number names the series.

Each series also records the Python versions it supports, from OpenStack's
tested runtimes for the series (governance ``reference/runtimes/<series>.rst``)
and octavia's own metadata (``Requires-Python`` and its "Programming Language"
classifiers): the lowest minimum and the highest maximum of the two.  The build
plan chooses the distribution release from it (``plan.py``).  How this was
established, series by series, is in ``tests/test_series.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from amp_image import PACKAGE_DIR
from amp_image.errors import PlanError, one_of

DATA_DIR = PACKAGE_DIR / "data"

PythonVersion = tuple[int, int]

# The first octavia releases with each SR-IOV feature.
SRIOV_VIP_MAJOR = 14
SRIOV_MEMBER_MAJOR = 16


@dataclass(frozen=True)
class Series:
    name: str
    octavia_major: int
    # Newest release of the series on PyPI when this table was written.
    latest: str
    python_min: PythonVersion
    python_max: PythonVersion
    # Vendored upper constraints under data/, or "" when none is vendored.
    constraints: str = ""
    # Distribution packages the agent's pip install needs in the image and
    # removes afterwards: the series' constraints pin C extensions without
    # wheels (2024.1: netifaces 0.11.0, pulled in by openstacksdk 3.0.0).
    build_packages: tuple[str, ...] = ()

    @property
    def python_range(self) -> str:
        return f"{fmt_python(self.python_min)} to {fmt_python(self.python_max)}"

    def supports(self, python: PythonVersion) -> bool:
        return self.python_min <= python <= self.python_max


SERIES = (
    Series("2024.1", 14, "14.0.2", (3, 8), (3, 11), "upper-constraints-2024.1.txt",
           ("gcc", "libc6-dev", "python3-dev")),
    Series("2024.2", 15, "15.1.0", (3, 9), (3, 11)),
    Series("2025.1", 16, "16.1.0", (3, 9), (3, 12), "upper-constraints-2025.1.txt"),
    Series("2025.2", 17, "17.0.1", (3, 10), (3, 12), "upper-constraints-2025.2.txt"),
    Series("2026.1", 18, "18.0.1", (3, 10), (3, 13), "upper-constraints-2026.1.txt"),
    Series("2026.2", 19, "19.0.0", (3, 11), (3, 14), "upper-constraints-2026.2.txt"),
)
SERIES_BY_MAJOR = {s.octavia_major: s for s in SERIES}
SERIES_BY_NAME = {s.name: s for s in SERIES}
# Octavia major version -> OpenStack release series.
SERIES_BY_OCTAVIA_MAJOR = {s.octavia_major: s.name for s in SERIES}

DEFAULT_AGENT_VERSION = SERIES[-1].latest

# PEP 440 release numbers as octavia publishes them: 19.0.0, 19.0.0.0rc1, 17.0.1.dev3.
RELEASE_NUMBER = re.compile(r"(\d+)(\.\d+){0,3}((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


class ConstraintsError(PlanError):
    pass


def fmt_python(version: PythonVersion) -> str:
    return f"{version[0]}.{version[1]}"


def octavia_major(version: str, option: str = "--agent-version") -> int:
    """The major number of an octavia release like 19.0.0 (or 17.0.1.dev3)."""
    match = RELEASE_NUMBER.fullmatch(version)
    if not match:
        raise ConstraintsError(
            f"{option} '{version}' is not an octavia release number; give one like "
            f"{DEFAULT_AGENT_VERSION}"
        )
    return int(match.group(1))


def _known() -> str:
    return f"{SERIES[0].octavia_major}.x ({SERIES[0].name}) to " \
           f"{SERIES[-1].octavia_major}.x ({SERIES[-1].name})"


def lookup(agent_version: str) -> Series | None:
    """The series of an agent version, or None for a major amp-image does not know."""
    return SERIES_BY_MAJOR.get(octavia_major(agent_version))


def series_named(name: str) -> Series:
    return one_of(SERIES_BY_NAME, name, "OpenStack series", ConstraintsError)


def series_of_branch(ref: str) -> str:
    """The known series a branch like stable/2025.1 or unmaintained/2024.1 names, or ""."""
    match = re.fullmatch(r"(?:refs/heads/)?(?:stable|unmaintained)/(\d{4}\.\d)", ref)
    return match.group(1) if match and match.group(1) in SERIES_BY_NAME else ""


def series_for(agent_version: str) -> str:
    series = lookup(agent_version)
    if series is None:
        raise ConstraintsError(
            f"octavia {octavia_major(agent_version)}.x is not a series amp-image knows "
            f"(it knows {_known()}); use --agent-version {SERIES[0].latest} to "
            f"{SERIES[-1].latest}, or pass --constraints FILE for that release"
        )
    return series.name


def vendored_for(agent_version: str) -> Path:
    series = SERIES_BY_NAME[series_for(agent_version)]
    if not series.constraints:
        raise ConstraintsError(
            f"octavia {series.octavia_major}.x ({series.name}) has no vendored upper "
            f"constraints; pass --constraints FILE with openstack/requirements' "
            f"{series.name} upper-constraints.txt"
        )
    return DATA_DIR / series.constraints
