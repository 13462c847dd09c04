"""One side of ``amp-image diff OLD NEW``: what an image or a published folder says it
holds, whichever of the two it was read from."""

from __future__ import annotations

import dataclasses

from amp_image.errors import AmpImageError

# Packages the diff shows side by side, whether or not they changed.
WATCHED = ("haproxy", "keepalived")


class DiffError(AmpImageError):
    """OLD or NEW is not something amp-image can compare."""


@dataclasses.dataclass
class Side:
    """One side of a diff, whatever it was read from."""

    path: str
    kind: str                       # "image" or "published"
    image_file: str
    sha256: str | None
    size: int | None
    virtual_size: int | None
    build_date: str | None
    os: str
    kernels: list[str]
    agent: dict[str, str]
    agent_python: dict[str, str]    # name (lower case) -> version
    packages: dict[str, str]        # name, or name:arch for a foreign one -> version
    enabled_units: list[str] | None  # None: not recorded (an older manifest)
