"""The ``cache`` command: list and prune the layer cache (build/layers.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from amp_image.builder import layers, locks
from amp_image.builder.options import DEFAULT_CACHE_DIR
from amp_image.cli.common import fail
from amp_image.errors import AmpImageError

CACHE_DIR_OPTION = click.option("--cache-dir", default=DEFAULT_CACHE_DIR, show_default=True,
                                help="The builds' --cache-dir.")


def _cache_path(cache_dir: str) -> Path:
    return Path(cache_dir).expanduser().resolve()


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%MZ")


@click.group()
def cache() -> None:
    """The layer cache: root trees earlier builds saved, restored by builds with the
    same inputs."""


@cache.command("list")
@CACHE_DIR_OPTION
def list_layers(cache_dir: str) -> None:
    """Each layer: name, key, size, made, last used."""
    found = layers.LayerCache(_cache_path(cache_dir)).layers()
    for layer in sorted(found, key=lambda item: item.last_used, reverse=True):
        click.echo(f"{layer.name:9} {layer.key[:16]}  {layer.size / 2**20:7.1f} MiB  "
                   f"made {_when(layer.created)}  used {_when(layer.last_used)}")
    click.echo(f"{len(found)} layers, {sum(layer.size for layer in found) / 2**20:.1f} MiB")


@cache.command()
@CACHE_DIR_OPTION
@click.option("--max-size", default="0", show_default=True,
              help="Keep the most recently used layers that fit in this size (4G, 500M); "
                   "0 removes them all.")
def prune(cache_dir: str, max_size: str) -> None:
    """Remove layers, least recently used first, while a build is not using the cache."""
    try:
        max_bytes = layers.parse_size(max_size)
        cache_path = _cache_path(cache_dir)
        if not (cache_path / layers.LAYER_DIR).is_dir():
            click.echo(f"no layers in {cache_path}")
            return
        with locks.package_cache(cache_path) as user:
            if user:
                fail(f"the cache {cache_path} is in use by amp-image PID {user}; run "
                     "`amp-image cache prune` again when that build ends", 1)
            removed = layers.LayerCache(cache_path, emit=click.echo).prune(max_bytes)
    except AmpImageError as exc:
        fail(str(exc), 1)
    freed = sum(layer.size for layer in removed)
    click.echo(f"removed {len(removed)} layers, {freed / 2**20:.1f} MiB")
