"""What a build is asked for: the build options, the agent's source, what is known of
the host, and their defaults.  Plain values: nothing here reads a file or the host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from amp_image.builder import constraints
from amp_image.builder.element_defaults import default_vf_drivers

DEFAULT_OUTPUT = "amphora-x64-haproxy.qcow2"
DEFAULT_AGENT_VERSION = constraints.DEFAULT_AGENT_VERSION
DEFAULT_SIZE_GB = 2
# Room for about four layers of the default image (a packages and an agent layer
# are ~250 and ~300 MiB compressed).
DEFAULT_LAYER_CACHE_BYTES = 4 << 30
# DIB's own default image cache, shared with diskimage-create.sh.
DEFAULT_CACHE_DIR = "~/.cache/image-create"
DEFAULT_WORK_DIR = "~/.cache/amp-image/work"
IMAGE_FORMATS = ("qcow2", "raw", "tar", "vhd")
# zstd-compressed qcow2 converts ~4x faster than zlib here and is smaller; it
# needs QEMU >= 5.1 to read.  zlib is for clouds with older compute hosts.
QCOW2_COMPRESSION = ("zstd", "zlib")


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
    """What was learned about the build host (see host.py)."""

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
    work_dir: Path = Path(DEFAULT_WORK_DIR)
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
    # The sriov-vf-drivers element's default unless given (read when first needed).
    vf_drivers: tuple[str, ...] = field(default_factory=default_vf_drivers)
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
