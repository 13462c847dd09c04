"""Run diskimage-builder for a build plan: private PATH shims, progress, logs, cleanup.

Everything happens inside amp-image's own process environment and work
directory: the shims that let DIB run without device-mapper live in
``<work-dir>/bin`` and are put first on PATH for DIB's process only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from amp_image import PACKAGE_DIR
from amp_image.build import locks
from amp_image.build.plan import ROOT_PASSWORD_HASH_FILE, BuildPlan
from amp_image.errors import BuildError

SHIMS_ALWAYS = ("sudo",)
SHIMS_WITHOUT_DM = ("kpartx", "dmsetup", "fstrim")
MAPPER_DIR = Path("/dev/mapper")
# Host pip settings (find-links to private wheel folders, extra indexes,
# constraints) must not steer pip inside the image's chroot.
LEAKY_ENV_PREFIXES = ("PIP_", "PYTHON", "VIRTUAL_ENV", "CONDA", "PYENV")
# Passwords never reach DIB's environment, which DIB writes to its manifests
# (the root password reaches the root-passwd element only as a hash in a file).
SECRET_ENV = ("AMP_ROOT_PASSWORD", "DIB_PASSWORD")

_RUN_PARTS = re.compile(r"dib-run-parts Running \S*/([a-z-]+\.d)/(\S+)")
_HOOKS = re.compile(r"Running hooks from \S*/([a-z-]+\.d)\s*$")


@dataclass
class BuildResult:
    image: Path
    manifests: Path | None
    seconds: float
    log_file: Path


def elements_dir() -> Path:
    """The project's elements, shipped inside the package (amp_image/elements)."""
    return PACKAGE_DIR / "elements"


def install_shims(bin_dir: Path, device_mapper: bool) -> list[str]:
    names = list(SHIMS_ALWAYS) if os.geteuid() == 0 else []
    if not device_mapper:
        names += SHIMS_WITHOUT_DM
    if bin_dir.exists():
        shutil.rmtree(bin_dir)
    bin_dir.mkdir(parents=True)
    shim_src = resources.files("amp_image") / "hostbin"
    for name in names:
        target = bin_dir / name
        target.write_bytes((shim_src / name).read_bytes())
        target.chmod(0o755)
    return names


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


class Progress:
    """Turns DIB's log stream into short 'phase/script' lines with elapsed time."""

    def __init__(self, emit: Callable[[str], None], start: float) -> None:
        self.emit = emit
        self.start = start
        self.current = ""

    def feed(self, line: str) -> None:
        match = _RUN_PARTS.search(line)
        if match:
            step = f"{match.group(1)}/{match.group(2)}"
        else:
            match = _HOOKS.search(line)
            if not match:
                return
            step = match.group(1)
        if step != self.current:
            self.current = step
            elapsed = int(time.monotonic() - self.start)
            self.emit(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {step}")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(prefix):
                mounts.append(mount_point)
    return sorted(mounts, key=len, reverse=True)


def _loops_backed_by(paths: Iterable[str]) -> list[str]:
    wanted = tuple(paths)
    loops = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            source = backing.read_text().strip()
        except OSError:
            continue
        if source.startswith(wanted):
            loops.append("/dev/" + backing.parent.parent.name)
    return loops


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:  # the tool is not installed
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


def _attempt(cmd: list[str]) -> str:
    """Run a cleanup command; say what was done (or why it was not)."""
    result = _run(cmd)
    if result.returncode == 0:
        return " ".join(cmd)
    reason = " ".join(result.stderr.split()) or f"exit {result.returncode}"
    return f"{' '.join(cmd)} failed: {reason}"


def release_partitions(loop: str) -> list[str]:
    """Remove the partition mappings of a disk loop device, as DIB's block-device code does.

    The kpartx shim (hosts without device-mapper) links /dev/mapper/loopNpM to
    offset loop devices: the links go here, the loops with the others.  Real
    device-mapper mappings are removed with ``kpartx -d /dev/loopN`` (kpartx(8)),
    and any left over with ``dmsetup remove loopNpM`` (dmsetup(8)): unlinking
    their nodes would keep the mappings, and the loop device busy.
    """
    entries = sorted(MAPPER_DIR.glob(Path(loop).name + "p*"))
    links = [entry for entry in entries if entry.is_symlink()]
    for link in links:
        link.unlink(missing_ok=True)
    mappings = [entry for entry in entries if entry not in links]
    if not mappings:
        return []
    released = [_attempt(["kpartx", "-d", loop])]
    for mapping in mappings:
        if mapping.exists():
            released.append(_attempt(["dmsetup", "remove", mapping.name]))
    return released


def release_leftovers(work_dir: Path) -> list[str]:
    """Unmount and detach whatever a failed build left under work_dir.

    Only under claim_work_dir (the lock held): a running build's mounts are
    never touched.
    """
    released = []
    for mount_point in _mounts_under(work_dir):
        if _run(["umount", "-l", mount_point]).returncode == 0:
            released.append(f"umount {mount_point}")
    root = str(work_dir.resolve()) + "/"
    disk_loops = _loops_backed_by([root])
    # Partition loops (the kpartx shim) are backed by the disk loop device.
    part_loops = _loops_backed_by(disk_loops) if disk_loops else []
    for loop in part_loops + disk_loops:
        released += release_partitions(loop)
        if _run(["losetup", "-d", loop]).returncode == 0:
            released.append(f"losetup -d {loop}")
    return released


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
            locks.package_cache(cache_dir) as cache_user, root_password_file(plan):
        if cache_user:
            emit(f"the package cache in {cache_dir} is in use by amp-image PID {cache_user}: "
                 "this build bootstraps from the mirror and keeps its packages to itself")
        return _run_dib(plan, device_mapper=device_mapper, log_file=log_file, verbose=verbose,
                        emit=emit, base_env=base_env, package_cache=not cache_user)


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
    shims = install_shims(bin_dir, device_mapper)
    if shims:
        emit(f"host shims: {', '.join(shims)}"
             + ("" if device_mapper else " (no device-mapper: partitions via offset loops)"))
    env = dib_environment(plan, bin_dir, base_env if base_env is not None else os.environ,
                          package_cache=package_cache)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    progress = Progress(emit, start)
    cmd = dib_command(plan)
    proc = None
    try:
        with open(log_file, "w") as log:
            log.write("+ " + " ".join(cmd) + "\n")
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, errors="replace", cwd=work_dir)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if verbose:
                    emit(line.rstrip("\n"))
                else:
                    progress.feed(line)
            rc = proc.wait()
    except BaseException:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        _cleanup_failed(work_dir, out_dir, emit)
        raise
    if rc != 0:
        _cleanup_failed(work_dir, out_dir, emit)
        raise BuildError(f"disk-image-create failed (exit {rc}); see {log_file}"
                         f"{_last_error(log_file, plan.elements)}")
    built = out_dir / f"{plan.image_name}.{plan.image_format}"
    if not built.is_file():
        raise BuildError(f"disk-image-create succeeded but wrote no {built.name}; see {log_file}")
    _publish(built, opts.output)
    manifests = _move_manifests(out_dir / f"{plan.image_name}.d",
                                opts.output.with_name(f"{plan.image_name}.d"))
    return BuildResult(opts.output, manifests, time.monotonic() - start, log_file)


def _cleanup_failed(work_dir: Path, out_dir: Path, emit: Callable[[str], None]) -> None:
    for action in release_leftovers(work_dir):
        emit(f"cleanup: {action}")
    shutil.rmtree(out_dir, ignore_errors=True)


def _last_error(log_file: Path, elements: tuple[str, ...] = ()) -> str:
    """The most telling line of a failed build, for the one-line error.

    Our elements report failures as "<element>: <what and how to fix>"; the
    first line of the last such run wins.  Otherwise the last ERROR or E: line.
    """
    try:
        lines = [line.split(" | ", 1)[-1].strip()
                 for line in log_file.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    prefixes = tuple(f"{element}: " for element in elements)
    for i in range(len(lines) - 1, -1, -1):
        if prefixes and lines[i].startswith(prefixes):
            element = lines[i].split(": ", 1)[0]
            while i > 0 and lines[i - 1].startswith(f"{element}: "):
                i -= 1
            return f": {lines[i]}"
    for text in reversed(lines):
        if re.match(r"(ERROR\b|Error\b|E: )", text) and len(text) < 300:
            return f": {text}"
    return ""
