"""What every amp-image command shares: the one-line error exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str, code: int) -> NoReturn:
    """Print ``amp-image: error: MESSAGE`` (one line, on stderr) and exit with code."""
    click.echo(f"amp-image: error: {message}", err=True)
    sys.exit(code)
