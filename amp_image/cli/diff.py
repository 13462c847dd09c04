"""The ``diff`` command: what changed between two images or published folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from amp_image.cli.common import fail, stop_on_sigterm
from amp_image.errors import AmpImageError
from amp_image.publish import imagediff


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def diff(old, new, as_json) -> None:
    """What changed from OLD to NEW: packages, kernel, agent, haproxy, keepalived, units, size.

    OLD and NEW are images (read offline, as root) or folders amp-image published
    (their manifest.json), in any mix."""
    stop_on_sigterm()
    try:
        sides = [imagediff.read_side(Path(p).expanduser()) for p in (old, new)]
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    result = imagediff.diff(*sides)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(imagediff.render_table(result), nl=False)
