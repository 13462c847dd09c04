"""The ``diff`` command: what changed between two images or published folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from amp_image.builder.process import stop_on_sigterm
from amp_image.cli.common import fail
from amp_image.diff.compare import diff as compare_sides
from amp_image.diff.files import diff_images, render_files
from amp_image.diff.read import read_side
from amp_image.diff.table import render_table
from amp_image.errors import AmpImageError


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--files", "by_file", is_flag=True,
              help="Also compare the two images file by file (content, mode, owner).")
def diff(old, new, as_json, by_file) -> None:
    """What changed from OLD to NEW: packages, kernel, agent, haproxy, keepalived, units, size.

    OLD and NEW are images (read offline, as root) or folders amp-image published
    (their manifest.json), in any mix; --files needs two images."""
    stop_on_sigterm()
    paths = [Path(p).expanduser() for p in (old, new)]
    try:
        sides = [read_side(p) for p in paths]
        folder = next((s.path for s in sides if s.kind != "image"), None)
        if by_file and folder:
            fail(f"{folder} is a published folder, whose manifest lists no files; --files "
                 "compares two images", 1)
        result = compare_sides(*sides)
        if by_file:
            result["files"] = diff_images(*paths)
    except AmpImageError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(render_table(result), nl=False)
    if by_file:
        click.echo(render_files(result["files"]), nl=False)
