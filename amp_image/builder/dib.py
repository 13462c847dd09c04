"""Run diskimage-builder for a build plan, holding the work dir (workdir.py), with its
environment and command (dib_env.py) and the layer cache (layer_run.py).

Everything happens inside amp-image's own process environment and work
directory: the PATH shims (shims.py) that let DIB run without device-mapper
live in ``<work-dir>/bin`` and are put first on PATH for DIB's process only;
progress lines and the failure's telling line come from progress.py, and what a
failed build leaves mounted is released by leftovers.py.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from amp_image import events
from amp_image.builder import binfmt, debootstrap_cache, host, locks
from amp_image.builder.dib_env import dib_command, dib_environment
from amp_image.builder.layer_run import LAYER_OUT_DIR, NOT_USED, choose_layers, file_layers
from amp_image.builder.leftovers import release_leftovers
from amp_image.builder.plan import LAYER_CACHE_ELEMENT, BuildPlan
from amp_image.builder.process import ProcessTree, signals_deferred
from amp_image.builder.progress import Progress, last_error
from amp_image.builder.shims import install_shims
from amp_image.builder.workdir import (
    claim_work_dir,
    move_manifests,
    package_pins_file,
    publish_image,
    root_password_file,
)
from amp_image.errors import BuildError


@dataclass
class BuildResult:
    image: Path
    manifests: Path | None
    seconds: float
    log_file: Path
    # What the layer cache did: restored which layer, saved which (see layers.Choice).
    layers: str = ""


def run_build(
    plan: BuildPlan,
    *,
    device_mapper: bool,
    log_file: Path,
    verbose: bool = False,
    emit: Callable[[str], None] = print,
    base_env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> BuildResult:
    """Run DIB for plan, holding the work dir (and the package cache if free)."""
    cache_dir = plan.options.cache_dir
    with claim_work_dir(plan.options.work_dir, wait=wait, emit=emit), \
            locks.package_cache(cache_dir) as cache_user, root_password_file(plan), \
            package_pins_file(plan), binfmt.foreign_binaries(plan.env["ARCH"]):
        if cache_user:
            emit(f"the package cache in {cache_dir} is in use by amp-image PID {cache_user}: "
                 "this build bootstraps from the mirror and keeps its packages to itself")
        tarball = None
        if not cache_user and plan.env.get("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE") == "1":
            tarball = debootstrap_cache.tarball_path(cache_dir, plan.env["DIB_RELEASE"],
                                                     plan.env["ARCH"])
            debootstrap_cache.check(tarball, emit)
        if cache_user:
            emit("the layer cache is skipped too: it is part of the package cache")
        result = _run_dib(plan, device_mapper=device_mapper, log_file=log_file,
                          verbose=verbose, emit=emit, base_env=base_env,
                          package_cache=not cache_user)
        if tarball:
            debootstrap_cache.remember(tarball)
        return result


def _run_dib(plan: BuildPlan, *, device_mapper: bool, log_file: Path, verbose: bool,
             emit: Callable[[str], None], base_env: Mapping[str, str] | None,
             package_cache: bool) -> BuildResult:
    opts = plan.options
    work_dir = opts.work_dir
    out_dir = work_dir / "out"
    for d in (work_dir / "tmp", opts.cache_dir):
        d.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    bin_dir = work_dir / "bin"
    staged_esp = needs_vfat_shims(plan)
    shims = install_shims(bin_dir, device_mapper, vfat=not staged_esp)
    if shims:
        emit(f"host shims: {', '.join(shims)}"
             + ("" if device_mapper else " (no device-mapper: partitions via offset loops)")
             + (" (no vfat: the EFI partition written with mtools)" if staged_esp else ""))
    env = dib_environment(plan, bin_dir, base_env if base_env is not None else os.environ,
                          package_cache=package_cache)
    if staged_esp:
        env["DIB_AMP_ESP_STAGED"] = "1"  # amphora-base builds GRUB's EFI image itself
    layer_out = work_dir / LAYER_OUT_DIR
    shutil.rmtree(layer_out, ignore_errors=True)
    layer_run = choose_layers(plan, env, emit) \
        if package_cache and LAYER_CACHE_ELEMENT in plan.elements else None
    layers = layer_run.choice.describe() if layer_run else NOT_USED
    if layer_run:
        env.update(layer_run.choice.env(layer_out))
        emit(layers)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    events.record("build", image=opts.output.name, arch=plan.env["ARCH"], layers=layers)
    start = time.monotonic()
    progress = Progress(emit, start)
    cmd = dib_command(plan)
    with open(log_file, "w") as log:
        log.write("+ " + " ".join(cmd) + "\n")

        def on_line(line: str) -> None:
            if log.closed:  # a process outlived the stop and still writes: not ours to log
                return
            log.write(line)
            if verbose:
                emit(line.rstrip("\n"))
            else:
                progress.feed(line)

        tree = ProcessTree(cmd, env=env, cwd=work_dir, on_line=on_line)
        try:
            rc = tree.wait()
        except BaseException:
            with signals_deferred():
                seconds = tree.stop()
                log.write(f"amp-image: stopped; DIB's processes ended in {seconds:.1f} s\n")
                _cleanup_failed(work_dir, out_dir, emit)
            raise
    if rc != 0:
        _cleanup_failed(work_dir, out_dir, emit)
        raise BuildError(f"disk-image-create failed (exit {rc}); see {log_file}"
                         f"{last_error(log_file, plan.elements)}")
    built = out_dir / f"{plan.image_name}.{plan.image_format}"
    if not built.is_file():
        raise BuildError(f"disk-image-create succeeded but wrote no {built.name}; see {log_file}")
    publish_image(built, opts.output)
    manifests = move_manifests(out_dir / f"{plan.image_name}.d",
                               opts.output.with_name(f"{plan.image_name}.d"))
    if layer_run:
        file_layers(layer_run, layer_out, opts.cache_max_bytes, emit)
    return BuildResult(opts.output, manifests, time.monotonic() - start, log_file, layers)


def needs_vfat_shims(plan: BuildPlan) -> bool:
    """A UEFI image's EFI partition, on a host whose kernel cannot mount FAT."""
    return plan.uefi and not host.kernel_mounts_vfat()


def _cleanup_failed(work_dir: Path, out_dir: Path, emit: Callable[[str], None]) -> None:
    for action in release_leftovers(work_dir):
        emit(f"cleanup: {action}")
    shutil.rmtree(out_dir, ignore_errors=True)


