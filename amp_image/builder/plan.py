"""The build plan: a pure function from build options to DIB elements and environment.

Nothing here touches the file system, the network or the environment (beyond
reading the VF driver default from its element once, at import): the CLI
resolves paths and probes the host first (``host.py``), then hands plain values
to :func:`make_plan`.  That keeps the plan easy to test and to print
(``--dry-run``).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

from amp_image import PACKAGE_DIR
from amp_image.builder import constraints
from amp_image.errors import PlanError

DEFAULT_OUTPUT = "amphora-x64-haproxy.qcow2"
DEFAULT_AGENT_VERSION = constraints.DEFAULT_AGENT_VERSION
DEFAULT_SIZE_GB = 2
# Kernel modules for SR-IOV Virtual Functions and the PFs operators pass
# through; checked against the image's kernel at build time.  Written once, as
# the sriov-vf-drivers element's default (what a plain DIB build uses too).
VF_DRIVERS_ENVIRONMENT = (PACKAGE_DIR / "elements" / "sriov-vf-drivers" / "environment.d"
                          / "13-sriov-vf-drivers.bash")


def element_vf_drivers(environment: Path = VF_DRIVERS_ENVIRONMENT) -> tuple[str, ...]:
    """The element's default DIB_AMP_VF_DRIVERS (``${DIB_AMP_VF_DRIVERS:-"..."}``)."""
    match = re.search(r'DIB_AMP_VF_DRIVERS:-"([^"]*)"', environment.read_text())
    if not match or not match.group(1).split():
        raise RuntimeError(f"{environment}: no default DIB_AMP_VF_DRIVERS")
    return tuple(match.group(1).split())


DEFAULT_VF_DRIVERS = element_vf_drivers()

# Room for about four layers of the default image (a packages and an agent layer
# are ~250 and ~300 MiB compressed).
DEFAULT_LAYER_CACHE_BYTES = 4 << 30
# DIB's own default image cache, shared with diskimage-create.sh.
DEFAULT_CACHE_DIR = "~/.cache/image-create"
IMAGE_FORMATS = ("qcow2", "raw", "tar", "vhd")
# Under the work dir; see root_password_hash.
ROOT_PASSWORD_HASH_FILE = "secrets/root-password.hash"
PACKAGE_PINS_FILE = "package-pins"
SNAPSHOT_ARCHIVE = "http://snapshot.debian.org/archive"
# zstd-compressed qcow2 converts ~4x faster than zlib here and is smaller; it
# needs QEMU >= 5.1 to read.  zlib is for clouds with older compute hosts.
QCOW2_COMPRESSION = ("zstd", "zlib")


@dataclass(frozen=True)
class BaseOS:
    name: str
    element: str
    default_release: str
    releases: tuple[str, ...]


# Debian only: it is what this project's hosts can build and test.  The
# elements' dpkg/apt steps, ifupdown configuration and sshd drop-ins are
# Debian's; the other bases were offered but never built (see REMOVED_BASE_OSES).
BASE_OSES = {
    "debian": BaseOS("debian", "debian-minimal", "trixie", ("trixie", "bookworm")),
}
# Offered before, removed until they can be built and tested: the refusal names why.
REMOVED_BASE_OSES = ("ubuntu-minimal", "centos-minimal", "rocky")

# The python3 each release installs (the agent's venv is made with it).
RELEASE_PYTHON: dict[tuple[str, str], constraints.PythonVersion] = {
    ("debian", "trixie"): (3, 13),
    ("debian", "bookworm"): (3, 11),
}

# Upstream diskimage-create.sh accepts these names; DIB wants the Debian ones.
ARCH_ALIASES = {
    "amd64": "amd64", "x86_64": "amd64",
    "arm64": "arm64", "aarch64": "arm64",
    "armhf": "armhf", "ppc64le": "ppc64le",
}
# Architectures DIB gives block-device-efi (common-functions' arg_to_elements): their
# images boot through UEFI only, from an EFI system partition.
UEFI_ONLY_ARCHES = frozenset({"arm64"})

LAYER_CACHE_ELEMENT = "amphora-layer-cache"
AMPHORA_ELEMENTS = (
    "vm",
    "amphora-base",
    "haproxy-octavia",
    "rebind-sshd",
    "no-resolvconf",
    "amphora-agent",
    "certs-ramfs",
    "amphora-growroot",
    "keepalived-octavia",
    "ipvsadmin",
    "remove-default-ints",
    "amphora-nftables",
    "amphora-sos",
    "pip-cache",
)


@dataclass(frozen=True)
class AgentSource:
    """Where the amphora agent comes from.

    kind is ``pypi``, ``git`` (URL + optional ref), ``dir`` (a local
    checkout) or ``wheelhouse`` (a folder of wheels, for offline builds).
    """

    kind: str = "pypi"
    location: str = ""
    ref: str = ""

    def describe(self) -> str:
        if self.kind == "pypi":
            return "pypi"
        return f"{self.kind}:{self.location}" + (f"@{self.ref}" if self.ref else "")


@dataclass(frozen=True)
class HostContext:
    """What the CLI learned about the build host (see host.py)."""

    distribution_mirror: str = "http://deb.debian.org/debian"
    ca_bundle: str = ""
    proxies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildOptions:
    sriov: bool = True
    base_os: str = "debian"
    release: str = ""
    arch: str = "amd64"
    output: Path = Path(DEFAULT_OUTPUT)
    image_format: str = ""
    size_gb: int = DEFAULT_SIZE_GB
    cache_dir: Path = Path(DEFAULT_CACHE_DIR)
    work_dir: Path = Path("~/.cache/amp-image/work")
    agent_version: str = DEFAULT_AGENT_VERSION
    # OpenStack series (2025.1, ...): when set, the agent version must be of it.
    series: str = ""
    agent_source: AgentSource = AgentSource()
    constraints_file: Path | None = None
    # SHA-512 crypt hash (see rootpw.py); never the password, never printed.
    root_password_hash: str = field(default="", repr=False)
    root_password_ssh: bool = False
    sshd: bool = True
    cpu_pinning: bool = False
    fips: bool = False
    extra_elements: tuple[str, ...] = ()
    elements_paths: tuple[Path, ...] = ()
    replace_elements: tuple[str, ...] = ()
    use_nftables: bool = True
    vf_drivers: tuple[str, ...] = DEFAULT_VF_DRIVERS
    datasources: str = "ConfigDrive"
    kernel_package: str = ""
    use_tmpfs: bool = True
    # The layer cache (layers.py): restore a matching layer; its bound in bytes.
    layer_cache: bool = True
    cache_max_bytes: int = DEFAULT_LAYER_CACHE_BYTES
    trace: bool = False
    compression: str = "zstd"
    slim: bool = True
    ca_in_image: bool = False
    # Reproducing a build: Debian's archive as of a snapshot.debian.org timestamp
    # (20261120T000000Z), or the (name, version) of each package an earlier image has.
    snapshot: str = ""
    package_pins: tuple[tuple[str, str], ...] = ()
    source_date_epoch: int | None = None


@dataclass(frozen=True)
class BuildPlan:
    options: BuildOptions
    elements: tuple[str, ...]
    env: dict[str, str]
    dib_args: tuple[str, ...]
    image_name: str
    image_format: str
    constraints_file: Path
    # The agent's OpenStack series ("" for a release amp-image does not know).
    series: str = ""

    @property
    def uefi(self) -> bool:
        """The image boots through UEFI only: it has an EFI system partition (vfat)."""
        return self.env["ARCH"] in UEFI_ONLY_ARCHES

    def as_dict(self) -> dict:
        opts = self.options
        return {
            "output": str(opts.output),
            "format": self.image_format,
            "base_os": opts.base_os,
            "release": self.env.get("DIB_RELEASE", ""),
            "arch": self.env.get("ARCH", ""),
            "sriov": opts.sriov,
            "nftables": opts.use_nftables,
            "agent": {
                "version": opts.agent_version,
                "series": self.series,
                "source": opts.agent_source.describe(),
                "constraints": str(self.constraints_file),
            },
            "root_password": root_password_use(opts),
            "reproduce": {"snapshot": opts.snapshot or None,
                          "pinned_packages": len(opts.package_pins),
                          "source_date_epoch": self.env.get("SOURCE_DATE_EPOCH")},
            "elements": list(self.elements),
            "environment": dict(sorted(self.env.items())),
            "disk-image-create": ["disk-image-create", *self.dib_args, *self.elements],
        }


def root_password_use(opts: BuildOptions) -> str | None:
    """Where root's password works, for the printed plan (which never shows it)."""
    if not opts.root_password_hash:
        return None
    return "serial console and SSH" if opts.root_password_ssh else "serial console"


def normalise_arch(arch: str) -> str:
    try:
        return ARCH_ALIASES[arch]
    except KeyError:
        raise PlanError(
            f"unknown architecture '{arch}'; use one of {', '.join(sorted(ARCH_ALIASES))}"
        ) from None


def format_from_output(output: Path, requested: str) -> str:
    if requested:
        if requested not in IMAGE_FORMATS:
            raise PlanError(
                f"unknown image format '{requested}'; use one of {', '.join(IMAGE_FORMATS)}"
            )
        return requested
    suffix = output.suffix.lstrip(".")
    return suffix if suffix in IMAGE_FORMATS else "qcow2"


def image_name_for(output: Path, image_format: str) -> str:
    """DIB's -o takes a name without extension; it appends the format's."""
    name = output.name
    if name.endswith("." + image_format):
        name = name[: -len(image_format) - 1]
    if not name:
        raise PlanError(f"output '{output}' has no file name; pass -o NAME.{image_format}")
    return name


def security_mirror_for(distribution_mirror: str) -> str:
    """Debian's security archive lives beside the main one on the same host."""
    return re.sub(r"/debian/?$", "/debian-security", distribution_mirror.rstrip("/") + "/")


def choose_agent(series: str | None, version: str | None,
                 source: AgentSource) -> tuple[str, str]:
    """The agent's version and OpenStack series as the command line names them (for
    BuildOptions): --series, else (without --agent-version) the series a git source's
    stable/ or unmaintained/ branch names, else none; --agent-version, else the newest
    release of that series, else DEFAULT_AGENT_VERSION.  agent_series checks them when
    the plan is made."""
    if not series and not version:
        series = constraints.series_of_branch(source.ref)
    if not version:
        version = constraints.series_named(series).latest if series else DEFAULT_AGENT_VERSION
    return version, series or ""


def agent_series(opts: BuildOptions) -> constraints.Series | None:
    """The agent's OpenStack series (its version's, which must be of --series if given);
    None for an octavia release amp-image does not know, which builds only with an
    explicit --constraints file."""
    series = constraints.lookup(opts.agent_version)
    if opts.series:
        wanted = constraints.series_named(opts.series)
        if series is not wanted:
            raise PlanError(
                f"--agent-version {opts.agent_version} is not of series {wanted.name} "
                f"(octavia {wanted.octavia_major}.x); use --agent-version {wanted.latest} or "
                "drop --series"
            )
    if series is None and opts.constraints_file is None:
        constraints.series_for(opts.agent_version)  # raises, naming the fix
    return series


def _python_of(base: BaseOS, release: str) -> constraints.PythonVersion | None:
    return RELEASE_PYTHON.get((base.name, release))


def _fitting_releases(base: BaseOS, series: constraints.Series) -> list[str]:
    """The base's releases whose Python the series supports, its default first."""
    return [r for r in dict.fromkeys((base.default_release, *base.releases))
            if (py := _python_of(base, r)) is None or series.supports(py)]


def _impossible_pair(base: BaseOS, release: str, python: constraints.PythonVersion,
                     series: constraints.Series) -> str:
    fixes = [f"--release {r}" for r in _fitting_releases(base, series)]
    others = [s for s in constraints.SERIES if s.supports(python)]
    if others:
        nearest = min(others, key=lambda s: abs(s.octavia_major - series.octavia_major))
        fixes.append(f"--agent-version {nearest.latest} ({nearest.name})")
    return (f"{base.name} {release} has Python {constraints.fmt_python(python)}, which octavia "
            f"{series.octavia_major}.x ({series.name}) does not support (it supports Python "
            f"{series.python_range}); use {' or '.join(fixes) or '--base-os debian'}")


def choose_release(opts: BuildOptions, base: BaseOS, series: constraints.Series | None) -> str:
    """--release if given and possible; else the base's default release if the agent's
    series supports its Python, or the first of the base's other releases that it does."""
    if opts.release:
        release = opts.release
        if base.name == "debian" and release not in base.releases:
            raise PlanError(f"Debian release '{release}' is not supported; use one of "
                            f"{', '.join(base.releases)}")
        python = _python_of(base, release)
        if series is not None and python is not None and not series.supports(python):
            raise PlanError(_impossible_pair(base, release, python, series))
        return release
    if series is None:
        return base.default_release
    fitting = _fitting_releases(base, series)
    if not fitting:
        python = _python_of(base, base.default_release)
        fixes = [f"--agent-version {s.latest} ({s.name})" for s in reversed(constraints.SERIES)
                 if python and s.supports(python)][:1]
        fixes += [f"--base-os {b}" for (b, _), py in RELEASE_PYTHON.items()
                  if series.supports(py)][:1]
        raise PlanError(
            f"no {base.name} release amp-image knows has a Python that octavia "
            f"{series.octavia_major}.x ({series.name}) supports (Python {series.python_range}); "
            f"use {' or '.join(fixes)}"
        )
    return fitting[0]


def _check_choices(opts: BuildOptions) -> None:
    if opts.compression not in QCOW2_COMPRESSION:
        raise PlanError(f"unknown qcow2 compression '{opts.compression}'; use "
                        f"{' or '.join(QCOW2_COMPRESSION)}")
    if opts.size_gb < 2:
        raise PlanError(f"image size {opts.size_gb} GB is too small; use --size 2 or more")
    for element in (*opts.extra_elements, *opts.replace_elements):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", element):
            raise PlanError(f"invalid element name '{element}'")
    if opts.root_password_ssh and not opts.root_password_hash:
        raise PlanError("--root-password-ssh needs a root password; set AMP_ROOT_PASSWORD, or "
                        "pass --root-password-file FILE or --root-password-prompt")
    if opts.root_password_ssh and not opts.sshd:
        raise PlanError("--root-password-ssh needs sshd; drop --no-sshd")
    for driver in opts.vf_drivers:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", driver):
            raise PlanError(f"invalid kernel module name '{driver}' in the VF driver list")


def _elements(opts: BuildOptions, base: BaseOS) -> tuple[str, ...]:
    if opts.replace_elements:
        elements = list(opts.replace_elements)
    else:
        elements = [base.element, *AMPHORA_ELEMENTS]
        if opts.sriov:
            elements.append("sriov-vf-drivers")
        # Restores and saves layers only when amp-image asks it to (DIB_AMP_LAYER_*).
        elements.append(LAYER_CACHE_ELEMENT)
    if opts.root_password_hash:
        elements.append("root-passwd")
    if not opts.sshd:
        elements.append("remove-sshd")
    if opts.cpu_pinning:
        elements.append("cpu-pinning")
    if opts.fips:
        elements.append("fips")
    if opts.package_pins:
        elements.append("pin-package-versions")
    elements.extend(opts.extra_elements)
    # Keep the first occurrence: DIB rejects nothing, but a repeated element
    # in the printed plan is noise.
    return tuple(dict.fromkeys(elements))


def snapshot_epoch(stamp: str) -> int:
    """snapshot.debian.org's timestamp (YYYYMMDDTHHMMSSZ) as seconds since the epoch."""
    try:
        when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise PlanError(f"--snapshot {stamp}: not a snapshot.debian.org timestamp; use "
                        "YYYYMMDDTHHMMSSZ, e.g. 20261120T000000Z") from None
    return int(when.replace(tzinfo=datetime.UTC).timestamp())


def _reproduce_env(opts: BuildOptions, release: str) -> dict[str, str]:
    env: dict[str, str] = {}
    epoch = opts.source_date_epoch
    if opts.snapshot:
        taken = snapshot_epoch(opts.snapshot)  # a malformed timestamp fails the plan
        epoch = taken if epoch is None else epoch
        main = f"{SNAPSHOT_ARCHIVE}/debian/{opts.snapshot}"
        security = f"{SNAPSHOT_ARCHIVE}/debian-security/{opts.snapshot}"
        # An old snapshot's Release files are past their Valid-Until.
        deb = "deb [check-valid-until=no]"
        env.update({
            "DIB_DISTRIBUTION_MIRROR": main, "DIB_DEBIAN_SECURITY_MIRROR": security,
            "DIB_APT_SOURCES_CONF": f"default:{deb} {main} {release} main\n"
                                    f"updates:{deb} {main} {release}-updates main\n"
                                    f"security:{deb} {security} {release}-security main",
            # The cached debootstrap tarball is of today's archive, not the snapshot's.
            "DIB_DEBOOTSTRAP_CACHE": "0", "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "0",
        })
    if opts.package_pins:
        env["DIB_AMP_PACKAGE_PINS"] = str(opts.work_dir / PACKAGE_PINS_FILE)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    return env


def _agent_env(opts: BuildOptions, series: constraints.Series | None,
               constraints_file: Path) -> dict[str, str]:
    src = opts.agent_source
    env = {
        "DIB_AMP_AGENT_SOURCE_TYPE": src.kind,
        "DIB_AMP_AGENT_VERSION": opts.agent_version if src.kind in ("pypi", "wheelhouse") else "",
        "DIB_AMP_AGENT_CONSTRAINTS": str(constraints_file),
    }
    # A wheelhouse brings its wheels; the other sources resolve the constraints' pins,
    # some of them without wheels: the element installs a compiler, build-only
    # (amphora-agent/package-installs.yaml names series.build_packages).
    if series is not None and series.build_packages and src.kind != "wheelhouse":
        env["DIB_AMP_AGENT_COMPILE"] = "1"
    if src.kind == "git":
        # Upstream's variables: DIB's source-repositories fetches the repository.
        env["DIB_REPOLOCATION_amphora_agent"] = src.location
        if src.ref:
            env["DIB_REPOREF_amphora_agent"] = src.ref
    elif src.kind != "pypi":
        env["DIB_AMP_AGENT_SOURCE"] = src.location
    return env


def make_plan(opts: BuildOptions, host: HostContext, elements_dir: Path) -> BuildPlan:
    """Resolve options into the elements, environment and DIB arguments of one build."""
    if opts.base_os in REMOVED_BASE_OSES:
        raise PlanError(
            f"base OS '{opts.base_os}' is not supported: amp-image builds and tests Debian "
            "only (its elements are Debian's); use --base-os debian"
        )
    try:
        base = BASE_OSES[opts.base_os]
    except KeyError:
        raise PlanError(
            f"unknown base OS '{opts.base_os}'; use one of {', '.join(BASE_OSES)}"
        ) from None
    arch = normalise_arch(opts.arch)
    series = agent_series(opts)
    constraints_file = opts.constraints_file or constraints.vendored_for(opts.agent_version)
    release = choose_release(opts, base, series)
    _check_choices(opts)
    image_format = format_from_output(opts.output, opts.image_format)
    image_name = image_name_for(opts.output, image_format)

    env: dict[str, str] = {
        "ARCH": arch,
        "DIB_RELEASE": release,
        "DIB_PYTHON_VERSION": "3",
        "DIB_IMAGE_CACHE": str(opts.cache_dir),
        "TMP_DIR": str(opts.work_dir / "tmp"),
        "ELEMENTS_PATH": ":".join(str(p) for p in (elements_dir, *opts.elements_paths)),
        "DIB_CLOUD_INIT_DATASOURCES": opts.datasources,
        "DIB_OCTAVIA_AMP_USE_NFTABLES": "True" if opts.use_nftables else "False",
        "DIB_GRUB_TIMEOUT": "0",
        "DIB_DEBIAN_COMPONENTS": "main",
        "DIB_AMP_SLIM": "1" if opts.slim else "0",
    }
    if base.name == "debian":
        # Keep the debootstrap result as a tarball in the cache and start from
        # it next time (apt then upgrades it): ~15 s off every warm build.
        env["DIB_DEBOOTSTRAP_CACHE"] = "1"
        env["DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"] = "1"
        env["DIB_DISTRIBUTION_MIRROR"] = host.distribution_mirror
        env["DIB_DEBIAN_SECURITY_MIRROR"] = security_mirror_for(host.distribution_mirror)
        env.update(_reproduce_env(opts, release))
    env.update(_agent_env(opts, series, constraints_file))
    if opts.sriov:
        env["DIB_AMP_VF_DRIVERS"] = " ".join(opts.vf_drivers)
    if host.ca_bundle:
        env["DIB_AMP_CA_BUNDLE"] = host.ca_bundle
        if opts.ca_in_image:
            env["DIB_AMP_CA_IN_IMAGE"] = "1"
    if opts.root_password_hash:
        # The hash itself reaches DIB as a file (dib.py writes it, mode 0600, for
        # the build only): DIB records its environment in the image's manifests.
        env["DIB_AMP_ROOT_PASSWORD_HASH_FILE"] = str(opts.work_dir / ROOT_PASSWORD_HASH_FILE)
        env["DIB_AMP_ROOT_PASSWORD_SSH"] = "1" if opts.root_password_ssh else "0"
    if opts.kernel_package:
        env["DIB_AMP_KERNEL_PACKAGE"] = opts.kernel_package
    if opts.trace:
        env["DIB_DEBUG_TRACE"] = "1"
    env.update(host.proxies)

    dib_args = ["-a", arch, "-o", str(opts.work_dir / "out" / image_name), "-t", image_format,
                "--image-size", str(opts.size_gb)]
    if image_format == "qcow2":
        dib_args += ["--qemu-img-options", f"compression_type={opts.compression}"]
    if not opts.use_tmpfs:
        dib_args.append("--no-tmpfs")
    if opts.trace:
        dib_args.append("-x")
    return BuildPlan(
        options=opts,
        elements=_elements(opts, base),
        env=env,
        dib_args=tuple(dib_args),
        image_name=image_name,
        image_format=image_format,
        constraints_file=constraints_file,
        series=series.name if series else "",
    )
