"""OpenStack upper constraints vendored with amp-image, one file per series.

The files under ``data/`` are OpenStack's ``upper-constraints.txt`` as
published for each series (see ``data/README.md`` for where they came from).
They do not pin octavia itself: the agent version is chosen separately.
"""

from __future__ import annotations

from pathlib import Path

from amp_image.errors import PlanError

DATA_DIR = Path(__file__).parent / "data"

# Octavia major version -> OpenStack release series.
SERIES_BY_OCTAVIA_MAJOR = {
    19: "2026.2",
    18: "2026.1",
}


class ConstraintsError(PlanError):
    pass


def series_for(agent_version: str) -> str:
    try:
        major = int(agent_version.split(".", 1)[0])
    except ValueError:
        raise ConstraintsError(
            f"agent version '{agent_version}' is not a release number like 19.0.0"
        ) from None
    try:
        return SERIES_BY_OCTAVIA_MAJOR[major]
    except KeyError:
        known = ", ".join(f"{m}.x" for m in sorted(SERIES_BY_OCTAVIA_MAJOR))
        raise ConstraintsError(
            f"no vendored upper constraints for octavia {major}.x (have {known}); "
            "pass --constraints FILE"
        ) from None


def vendored_for(agent_version: str) -> Path:
    return DATA_DIR / f"upper-constraints-{series_for(agent_version)}.txt"
