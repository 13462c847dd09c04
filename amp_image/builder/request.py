"""A build as asked for (:class:`BuildRequest`, the command line's values as given) and
the reading that turns it into :class:`BuildOptions`: the files and folders it names,
the agent's source, root's password, a git ref in full, what an earlier image pins.

Everything named is read here, so a bad one fails before anything else, --dry-run
included; the plan (plan.py) then gets plain values only."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from amp_image.builder import buildlog, gitref, inputs, layers, rootpw
from amp_image.builder.compat import choose_agent
from amp_image.builder.options import (
    DEFAULT_CACHE_DIR,
    DEFAULT_LAYER_CACHE_BYTES,
    DEFAULT_OUTPUT,
    DEFAULT_SIZE_GB,
    DEFAULT_WORK_DIR,
    AgentSource,
    BuildOptions,
)
from amp_image.errors import AmpImageError, PlanError


@dataclass(frozen=True)
class BuildRequest:
    """One build, named as on the command line (``amp-image build --help``): paths as
    given (they are resolved when read), lists as their option spells them."""

    sriov: bool = True
    base_os: str = "debian"
    release: str | None = None
    arch: str = "amd64"
    output: str = DEFAULT_OUTPUT
    image_format: str | None = None
    size: int = DEFAULT_SIZE_GB
    cache_dir: str = DEFAULT_CACHE_DIR
    layer_cache: bool = True
    cache_max_size: str = f"{DEFAULT_LAYER_CACHE_BYTES >> 30}G"
    work_dir: str = DEFAULT_WORK_DIR
    agent_version: str | None = None
    series: str | None = None
    agent_source: str | None = None
    constraints: str | None = None
    # Refused when given: argv is readable by every user of the host.
    root_password: str | None = None
    root_password_file: str | None = None
    # Asks for root's password (--root-password-prompt); None: no prompt.
    root_password_prompt: Callable[[], str] | None = None
    root_password_ssh: bool = False
    sshd: bool = True
    cpu_pinning: bool = False
    fips: bool = False
    element: tuple[str, ...] = ()
    elements_path: tuple[str, ...] = ()
    replace_elements: str | None = None  # space-separated
    nftables: bool = True
    vf_drivers: str | None = None  # comma-separated
    datasources: str = "ConfigDrive"
    kernel_package: str | None = None
    snapshot: str | None = None
    pin_packages_from: str | None = None
    tmpfs: bool = True
    compression: str = "zstd"
    slim: bool = True
    ca_in_image: bool = False
    trace: bool = False
    # How to run it.
    ca_bundle: str | None = None
    mirror: str | None = None
    log_file: str | None = None
    wait: bool = True
    verbose: bool = False
    dry_run: bool = False


class EarlierImage(Protocol):
    """What --pin-packages-from reads of an earlier image or its published folder."""

    packages: dict[str, str]
    build_date: str | None


EarlierImageReader = Callable[[Path], EarlierImage]


def resolve(path: str | None) -> Path | None:
    return Path(path).expanduser().resolve() if path else None


def parse_agent_source(spec: str | None) -> AgentSource:
    """pypi (default), git+URL[@REF], or a local folder (a checkout or a wheelhouse)."""
    if not spec or spec == "pypi":
        return AgentSource()
    if spec.startswith("git+"):
        url, ref = spec[4:], ""
        # A ref follows the last '@' of the path (user@host comes before it).
        _, sep, rest = url.partition("://")
        path = rest[rest.find("/"):] if sep and "/" in rest else url
        if "@" in path:
            url, ref = url.rsplit("@", 1)
        if not url:
            raise PlanError(f"--agent-source {spec}: no URL after git+")
        return AgentSource("git", url, ref)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise PlanError(
            f"--agent-source {spec}: not 'pypi', a git+URL[@REF] or an existing folder"
        )
    path = path.resolve()
    if any(path.glob("*.whl")):
        return AgentSource("wheelhouse", str(path))
    if (path / "setup.py").exists() or (path / "pyproject.toml").exists():
        return AgentSource("dir", str(path))
    raise PlanError(
        f"--agent-source {spec}: folder has neither wheels nor setup.py/pyproject.toml"
    )


def with_full_agent_ref(opts: BuildOptions) -> BuildOptions:
    """A git source read with git ls-remote (it must exist and have the ref), its branch
    or tag named in full, so DIB's cache cannot serve a stale one."""
    src = opts.agent_source
    if src.kind != "git":
        return opts
    return replace(opts, agent_source=replace(src, ref=gitref.full_ref(src.location, src.ref)))


def root_password_hash(request: BuildRequest, environ: MutableMapping[str, str]) -> str:
    """Read root's password from its one source and hash it at once (see rootpw.py)."""
    if request.root_password is not None:
        raise PlanError("--root-password would put the password on the command line, which "
                        f"every user of this host can read; {rootpw.SOURCES}")
    # Out of the environment: nothing amp-image runs may inherit it.
    env = {rootpw.ENV_VAR: environ.pop(rootpw.ENV_VAR, "")}
    password = rootpw.read_password(env, file=resolve(request.root_password_file),
                                    prompt=request.root_password_prompt)
    return rootpw.hash_password(password) if password else ""


def _pins_of(pin_from: str, read_earlier: EarlierImageReader | None
             ) -> tuple[tuple[tuple[str, str], ...], str | None]:
    if read_earlier is None:
        raise PlanError("--pin-packages-from needs a reader of earlier images; "
                        "build through amp-image build")
    try:
        earlier = read_earlier(Path(pin_from).expanduser())
    except AmpImageError as exc:
        raise PlanError(f"--pin-packages-from: {exc}") from None
    # Foreign-architecture packages (name:arch) stay as the build makes them.
    pins = tuple(sorted((name, version) for name, version in earlier.packages.items()
                        if ":" not in name))
    return pins, earlier.build_date


def reproduce_options(snapshot: str | None, pin_from: str | None, env: Mapping[str, str],
                      read_earlier: EarlierImageReader | None = None) -> dict:
    """--snapshot, --pin-packages-from and SOURCE_DATE_EPOCH as BuildOptions fields."""
    fields: dict = {"snapshot": snapshot or ""}
    built_at = None
    if pin_from:
        fields["package_pins"], built_at = _pins_of(pin_from, read_earlier)
    if env.get("SOURCE_DATE_EPOCH"):
        if not env["SOURCE_DATE_EPOCH"].isdigit():
            raise PlanError(f"SOURCE_DATE_EPOCH={env['SOURCE_DATE_EPOCH']} is not a number of "
                            "seconds since 1970; unset it or give one")
        fields["source_date_epoch"] = int(env["SOURCE_DATE_EPOCH"])
    elif built_at:
        when = datetime.datetime.fromisoformat(built_at.replace("Z", "+00:00"))
        fields["source_date_epoch"] = int(when.timestamp())
    return fields


def _operator_files(request: BuildRequest) -> tuple[Path | None, tuple[Path, ...]]:
    """--constraints and --elements-path, checked (inputs.py)."""
    constraints_file = resolve(request.constraints)
    if constraints_file and not constraints_file.is_file():
        raise PlanError(f"--constraints {request.constraints}: no such file")
    if constraints_file:
        inputs.check_constraints_file(constraints_file, "--constraints")
    elements_paths = tuple(resolve(p) for p in request.elements_path)
    for p in elements_paths:
        if not p.is_dir():
            raise PlanError(f"--elements-path {p}: no such folder")
        inputs.check_elements_path(p)
    return constraints_file, elements_paths


def _split(value: str | None, sep: str | None) -> tuple[str, ...]:
    return tuple(value.split(sep)) if value else ()


def build_options(request: BuildRequest, environ: MutableMapping[str, str] | None = None,
                  read_earlier: EarlierImageReader | None = None) -> BuildOptions:
    """BuildOptions for the request; the files and folders it names are read here, in
    the order the command line has always failed on them."""
    environ = os.environ if environ is None else environ
    constraints_file, elements_paths = _operator_files(request)
    source = parse_agent_source(request.agent_source)
    version, series = choose_agent(request.series, request.agent_version, source)
    if source.kind == "wheelhouse":
        inputs.check_wheelhouse(Path(source.location), version)
    vf_drivers = {"vf_drivers": _split(request.vf_drivers, ",")} if request.vf_drivers else {}
    return BuildOptions(
        sriov=request.sriov, base_os=request.base_os, release=request.release or "",
        arch=request.arch, output=resolve(request.output),
        image_format=request.image_format or "", size_gb=request.size,
        cache_dir=resolve(request.cache_dir), layer_cache=request.layer_cache,
        cache_max_bytes=layers.parse_size(request.cache_max_size),
        work_dir=resolve(request.work_dir),
        agent_version=version, series=series, agent_source=source,
        constraints_file=constraints_file,
        root_password_hash=root_password_hash(request, environ),
        root_password_ssh=request.root_password_ssh, sshd=request.sshd,
        cpu_pinning=request.cpu_pinning, fips=request.fips,
        extra_elements=tuple(request.element), elements_paths=elements_paths,
        replace_elements=_split(request.replace_elements, None),
        use_nftables=request.nftables, **vf_drivers, datasources=request.datasources,
        kernel_package=request.kernel_package or "", use_tmpfs=request.tmpfs,
        compression=request.compression, slim=request.slim,
        ca_in_image=request.ca_in_image, trace=request.trace,
        **reproduce_options(request.snapshot, request.pin_packages_from, environ,
                            read_earlier),
    )


def build_log(log_file: str | None, output: Path) -> Path:
    """--log-file as given (each build overwrites it), else a new log of this build beside
    the image (OUTPUT.<UTC time>.log; OUTPUT.log links the newest; see buildlog.py), so a
    build never overwrites the log of the one before it."""
    return resolve(log_file) or buildlog.new_log(output)
