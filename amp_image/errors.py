"""Errors amp-image reports to the operator as one line, with the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

Value = TypeVar("Value")


class AmpImageError(Exception):
    """A problem the operator can fix; the message says how."""


class PlanError(AmpImageError):
    """Options that cannot make an image."""


class HostError(AmpImageError):
    """The build or test host lacks something."""


class BuildError(AmpImageError):
    """disk-image-create failed."""


class PublishError(AmpImageError):
    """The image cannot be published as asked."""


def one_of(table: Mapping[str, Value], name: str, what: str,
           error: type[AmpImageError] = PlanError,
           choices: Iterable[str] | None = None) -> Value:
    """table[name], or an error naming what was unknown and the names to use."""
    try:
        return table[name]
    except KeyError:
        raise error(f"unknown {what} '{name}'; use one of "
                    f"{', '.join(choices if choices is not None else table)}") from None

