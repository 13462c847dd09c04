"""What every amp-image command shares: the one-line error exit and SIGTERM handling."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

import click


def fail(message: str, code: int) -> NoReturn:
    """Print ``amp-image: error: MESSAGE`` (one line, on stderr) and exit with code."""
    click.echo(f"amp-image: error: {message}", err=True)
    sys.exit(code)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (CI timeouts, systemd, kill) unwinds like Ctrl-C: every cleanup runs."""
    signal.signal(signal.SIGTERM, _interrupt)
