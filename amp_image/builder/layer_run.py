"""The layer cache in one build: the keys and choice before DIB runs, the saved layers
filed into the cache after it."""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from amp_image.builder import layer_keys, layers
from amp_image.builder.dib_elements import dib_elements_dir
from amp_image.builder.layer_inputs import LayerKeyError, mirror_index_dates
from amp_image.builder.plan import BuildPlan

LAYER_OUT_DIR = "layers-out"
NOT_USED = "layer cache not used"


class LayerRun(NamedTuple):
    """The cache, this build's keys, and what it restores and saves."""

    cache: layers.LayerCache
    keys: layer_keys.LayerKeys
    choice: layers.Choice


def choose_layers(plan: BuildPlan, env: Mapping[str, str], emit: Callable[[str], None]
                  ) -> LayerRun | None:
    """This build's layer keys and what it restores and saves; None (and a line saying
    why) when a key input cannot be read."""
    opts = plan.options
    element_dirs = [Path(p) for p in env.get("ELEMENTS_PATH", "").split(":") if p]
    try:
        keys = layer_keys.layer_keys(
            elements=plan.elements, element_dirs=[*element_dirs, dib_elements_dir()],
            dib_version=importlib.metadata.version("diskimage-builder"), env=env,
            agent_source_kind=opts.agent_source.kind,
            index_dates=mirror_index_dates(env))
    except LayerKeyError as exc:
        emit(f"the layer cache is off for this build: {exc}")
        return None
    cache = layers.LayerCache(opts.cache_dir, emit)
    return LayerRun(cache, keys, cache.choose(keys, use=opts.layer_cache))


def file_layers(run: LayerRun, layer_out: Path, max_bytes: int,
                emit: Callable[[str], None]) -> None:
    """Move the layers this build saved into the cache, then keep it within max_bytes."""
    cache, keys, choice = run
    kept = [choice.restore.path] if choice.restore else []
    for name in choice.save:
        staged = layer_out / f"{name}.tar.zst"
        if not staged.is_file():
            emit(f"layer cache: the build saved no '{name}' layer ({staged} is missing)")
            continue
        kept.append(cache.store(name, keys.of(name), staged, keys.inputs).path)
    shutil.rmtree(layer_out, ignore_errors=True)
    for layer in cache.prune(max_bytes, keep=kept):
        emit(f"layer cache: removed the least recently used '{layer.name}' layer "
             f"({layer.size >> 20} MiB) to stay within {max_bytes >> 20} MiB")
