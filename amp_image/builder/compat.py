"""What amp-image can build: the base OSes and their releases' Python, the
architectures, and the agent's OpenStack series (the one series resolver: the
command line's choice in :func:`choose_agent`, checked in :func:`agent_series`).
Pure: tables and the choices made from them."""

from __future__ import annotations

from dataclasses import dataclass

from amp_image.builder import constraints
from amp_image.builder.options import DEFAULT_AGENT_VERSION, AgentSource, BuildOptions
from amp_image.errors import PlanError, one_of


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


def base_os_named(name: str) -> BaseOS:
    if name in REMOVED_BASE_OSES:
        raise PlanError(
            f"base OS '{name}' is not supported: amp-image builds and tests Debian "
            "only (its elements are Debian's); use --base-os debian"
        )
    return one_of(BASE_OSES, name, "base OS")


def normalise_arch(arch: str) -> str:
    return one_of(ARCH_ALIASES, arch, "architecture", choices=sorted(ARCH_ALIASES))


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


def _given_release(release: str, base: BaseOS, series: constraints.Series | None) -> str:
    if base.name == "debian" and release not in base.releases:
        raise PlanError(f"Debian release '{release}' is not supported; use one of "
                        f"{', '.join(base.releases)}")
    python = _python_of(base, release)
    if series is not None and python is not None and not series.supports(python):
        raise PlanError(_impossible_pair(base, release, python, series))
    return release


def _no_fitting_release(base: BaseOS, series: constraints.Series) -> PlanError:
    python = _python_of(base, base.default_release)
    fixes = [f"--agent-version {s.latest} ({s.name})" for s in reversed(constraints.SERIES)
             if python and s.supports(python)][:1]
    fixes += [f"--base-os {b}" for (b, _), py in RELEASE_PYTHON.items()
              if series.supports(py)][:1]
    return PlanError(
        f"no {base.name} release amp-image knows has a Python that octavia "
        f"{series.octavia_major}.x ({series.name}) supports (Python {series.python_range}); "
        f"use {' or '.join(fixes)}"
    )


def choose_release(opts: BuildOptions, base: BaseOS, series: constraints.Series | None) -> str:
    """--release if given and possible; else the base's default release if the agent's
    series supports its Python, or the first of the base's other releases that it does."""
    if opts.release:
        return _given_release(opts.release, base, series)
    if series is None:
        return base.default_release
    fitting = _fitting_releases(base, series)
    if not fitting:
        raise _no_fitting_release(base, series)
    return fitting[0]
