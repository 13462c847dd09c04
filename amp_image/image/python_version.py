"""A Python version as the agent's Python is named: given, or a Debian package's
version (pure, importing nothing of amp-image: the conformance harness's venv imports
it; check-certs and glance.json's amp_image_agent_python read it)."""

from __future__ import annotations

import re

PYTHON_VERSION = re.compile(r"(?:\d+:)?(\d+)\.(\d+)(?:[.~+-][\w.~+-]*)?$")


def parse_python_version(text: str) -> tuple[int, int]:
    """'3.13', '3.13.5' or a Debian version such as '3.13.5-1' or '3.11.2-1+b1' -> (3, 13)."""
    match = PYTHON_VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not a Python version: {text!r} (expected e.g. 3.13)")
    if match[1] != "3":
        raise ValueError(f"not a Python 3 version: {text!r}")
    return int(match[1]), int(match[2])


def python3_version(packages: dict[str, str]) -> tuple[int, int] | None:
    """The Python of a package list (name -> Debian version): python3's, else the newest
    python3.N; None without either."""
    if packages.get("python3"):
        return parse_python_version(packages["python3"])
    minors = [parse_python_version(name.removeprefix("python").removesuffix("-minimal"))
              for name in packages
              if name.startswith("python3.") and name.removesuffix("-minimal")[8:].isdigit()]
    return max(minors) if minors else None
