"""The version orderings the diff sorts changes by: dpkg's for Debian packages (through
python-debian), PEP 440's for the agent's Python packages (through packaging)."""

from __future__ import annotations

from debian.debian_support import version_compare
from packaging.version import InvalidVersion, Version


def compare_debian_versions(a: str, b: str) -> int | None:
    """<0, 0 or >0 as dpkg --compare-versions orders a and b (python-debian's
    implementation of it); None when either is no Debian version."""
    try:
        return version_compare(a, b)
    except ValueError:
        return None


def compare_python_versions(a: str, b: str) -> int | None:
    """<0, 0 or >0 as PEP 440 orders a and b; None when either is no such version."""
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return None
    return (va > vb) - (va < vb)
