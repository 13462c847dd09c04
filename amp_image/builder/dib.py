"""Run diskimage-builder for a build plan: its environment and command, the work
dir's lock, the root password file, and the finished image moved into place.

Everything happens inside amp-image's own process environment and work
directory: the PATH shims (shims.py) that let DIB run without device-mapper
live in ``<work-dir>/bin`` and are put first on PATH for DIB's process only;
progress lines and the failure's telling line come from progress.py, and what a
failed build leaves mounted is released by leftovers.py.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import diskimage_builder

from amp_image import PACKAGE_DIR, events
from amp_image.builder import binfmt, debootstrap_cache, host, layer_keys, layers, locks
from amp_image.builder.environment import PACKAGE_PINS_FILE, ROOT_PASSWORD_HASH_FILE
from amp_image.builder.layer_inputs import LayerKeyError, mirror_index_dates
from amp_image.builder.leftovers import release_leftovers
from amp_image.builder.plan import LAYER_CACHE_ELEMENT, BuildPlan
from amp_image.builder.process import ProcessTree, signals_deferred
from amp_image.builder.progress import Progress, last_error
from amp_image.builder.shims import install_shims
from amp_image.errors import BuildError

# Host pip settings (find-links to private wheel folders, extra indexes,
# constraints) must not steer pip inside the image's chroot.
LEAKY_ENV_PREFIXES = ("PIP_", "PYTHON", "VIRTUAL_ENV", "CONDA", "PYENV")
# Passwords never reach DIB's environment, which DIB writes to its manifests
# (the root password reaches the root-passwd element only as a hash in a file).
SECRET_ENV = ("AMP_ROOT_PASSWORD", "DIB_PASSWORD")

LAYER_OUT_DIR = "layers-out"


@dataclass
class BuildResult:
    image: Path
    manifests: Path | None
    seconds: float
    log_file: Path
    # What the layer cache did: restored which layer, saved which (see layers.Choice).
    layers: str = ""


def elements_dir() -> Path:
    """The project's elements, shipped inside the package (amp_image/elements)."""
    return PACKAGE_DIR / "elements"


def without_package_cache(env: dict[str, str]) -> dict[str, str]:
    """No debootstrap tarball and no shared apt archives (another build has them)."""
    env = {k: v for k, v in env.items() if k != "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"}
    env.update(DIB_DEBOOTSTRAP_CACHE="0", DIB_APT_LOCAL_CACHE="0")
    return env


def dib_environment(plan: BuildPlan, bin_dir: Path, base: Mapping[str, str],
                    package_cache: bool = True) -> dict[str, str]:
    env = {k: v for k, v in base.items()
           if not k.startswith(LEAKY_ENV_PREFIXES) and k not in SECRET_ENV}
    # TMPDIR would leak into the chroot, where that path does not exist.
    env.pop("TMPDIR", None)
    tool_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [str(bin_dir), tool_bin, base.get("PATH", ""), "/usr/sbin", "/sbin"]
    )
    env.update(plan.env)
    return env if package_cache else without_package_cache(env)


def dib_command(plan: BuildPlan) -> list[str]:
    exe = Path(sys.executable).parent / "disk-image-create"
    return [str(exe), *plan.dib_args, *plan.elements]


def _publish(src: Path, dest: Path) -> None:
    """Move the finished image into place atomically: never a half-written output."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        os.replace(src, dest)
        return
    except OSError:
        pass
    try:
        shutil.copyfile(src, partial)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    src.unlink()


def _move_manifests(src: Path, dest: Path) -> Path | None:
    if not src.is_dir():
        return None
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(src), dest)
    return dest


@contextmanager
def claim_work_dir(work_dir: Path, *, wait: bool = True,
                   emit: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the work dir's lock; release what a dead build left there first.

    Another build's mounts are never touched: while it runs it holds the lock,
    and this waits for it (or fails at once without wait).
    """
    with locks.work_dir_lock(work_dir, wait=wait, emit=emit):
        # The lock was free, so whoever left something here is gone
        # (SIGKILL, power loss): release it now.
        for action in release_leftovers(work_dir):
            emit(f"cleanup of an earlier build: {action}")
        remove_secrets(work_dir)
        yield


def remove_secrets(work_dir: Path) -> None:
    """The root password hash file and the copy DIB staged for the element, if any."""
    shutil.rmtree(work_dir / Path(ROOT_PASSWORD_HASH_FILE).parent, ignore_errors=True)
    for staged in (work_dir / "tmp").glob("dib_build.*/hooks/root-passwd/hash"):
        staged.unlink(missing_ok=True)


@contextmanager
def root_password_file(plan: BuildPlan) -> Iterator[None]:
    """The root password's hash where the root-passwd element reads it (mode 0600, in a
    0700 folder), for this build only."""
    opts = plan.options
    if not opts.root_password_hash:
        yield
        return
    path = opts.work_dir / ROOT_PASSWORD_HASH_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(opts.root_password_hash + "\n")
    try:
        yield
    finally:
        remove_secrets(opts.work_dir)


@contextmanager
def package_pins_file(plan: BuildPlan) -> Iterator[None]:
    """The NAME VERSION list pin-package-versions reads, for this build only."""
    pins = plan.options.package_pins
    if not pins:
        yield
        return
    path = plan.options.work_dir / PACKAGE_PINS_FILE
    path.write_text("".join(f"{name} {version}\n" for name, version in pins))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


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
    chosen = choose_layers(plan, env, emit) \
        if package_cache and LAYER_CACHE_ELEMENT in plan.elements else None
    if chosen:
        env.update(chosen[2].env(layer_out))
        emit(chosen[2].describe())
    log_file.parent.mkdir(parents=True, exist_ok=True)
    events.record("build", image=opts.output.name, arch=plan.env["ARCH"],
                  layers=chosen[2].describe() if chosen else "layer cache not used")
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
    _publish(built, opts.output)
    manifests = _move_manifests(out_dir / f"{plan.image_name}.d",
                                opts.output.with_name(f"{plan.image_name}.d"))
    if chosen:
        file_layers(*chosen, layer_out, opts.cache_max_bytes, emit)
    return BuildResult(opts.output, manifests, time.monotonic() - start, log_file,
                       chosen[2].describe() if chosen else "layer cache not used")


def dib_elements_dir() -> Path:
    """diskimage-builder's own elements (after amp-image's on the element path)."""
    return Path(diskimage_builder.__file__).parent / "elements"


def choose_layers(plan: BuildPlan, env: Mapping[str, str], emit: Callable[[str], None]
                  ) -> tuple[layers.LayerCache, layer_keys.LayerKeys, layers.Choice] | None:
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
    return cache, keys, cache.choose(keys, use=opts.layer_cache)


def file_layers(cache: layers.LayerCache, keys: layer_keys.LayerKeys, choice: layers.Choice,
                layer_out: Path, max_bytes: int, emit: Callable[[str], None]) -> None:
    """Move the layers this build saved into the cache, then keep it within max_bytes."""
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


def needs_vfat_shims(plan: BuildPlan) -> bool:
    """A UEFI image's EFI partition, on a host whose kernel cannot mount FAT."""
    return plan.uefi and not host.kernel_mounts_vfat()


def _cleanup_failed(work_dir: Path, out_dir: Path, emit: Callable[[str], None]) -> None:
    for action in release_leftovers(work_dir):
        emit(f"cleanup: {action}")
    shutil.rmtree(out_dir, ignore_errors=True)


