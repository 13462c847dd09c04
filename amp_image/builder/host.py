"""Build host prerequisites and facts: tools, device-mapper, CA bundle, proxies, mirror."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from amp_image.builder.options import HostContext
from amp_image.errors import HostError

# Host tools disk-image-create needs for a Debian build; the package that
# provides each is named in the error (scripts/setup-host installs them all).
REQUIRED_TOOLS = {
    "debootstrap": "debootstrap",
    "qemu-img": "qemu-utils",
    "losetup": "mount",
    "partx": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "sgdisk": "gdisk",
    "xz": "xz-utils",
    "zstd": "zstd",  # the layer cache's tarballs
}

PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
CA_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE")
APT_SOURCE_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")


def missing_tools(which=shutil.which) -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [f"{tool} (package {pkg})" for tool, pkg in REQUIRED_TOOLS.items()
            if which(tool, path=path) is None]


def check_tools() -> None:
    missing = missing_tools()
    if missing:
        raise HostError(
            f"missing build tools: {', '.join(missing)}; run scripts/setup-host (as root)"
        )


def check_root() -> None:
    if os.geteuid() != 0:
        raise HostError("image builds need root (loop devices, mounts, chroot); rerun as root")


def kernel_has_filesystem(name: str, module: str) -> bool:
    """The kernel has file system NAME built in or loaded, or as a module (MODULE, a glob
    under its kernel/fs) that mount would load."""
    if name in Path("/proc/filesystems").read_text().split():
        return True
    return any(Path(f"/lib/modules/{os.uname().release}/kernel/fs").glob(module))


def kernel_mounts_vfat() -> bool:
    return kernel_has_filesystem("vfat", "fat/vfat.ko*")


def check_vfat_tools() -> None:
    """A UEFI image on a host without vfat: its EFI partition is written with mtools."""
    if not kernel_mounts_vfat() and shutil.which("mcopy") is None:
        raise HostError("this host's kernel cannot mount the EFI system partition (no vfat) "
                        "and mtools is missing; run scripts/setup-host --arm64 (as root)")


def device_mapper_works() -> bool:
    """True when kpartx/dmsetup can map partitions (not in most CI containers)."""
    control = Path("/dev/mapper/control")
    if not control.exists():
        return False
    try:
        fd = os.open(control, os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return shutil.which("kpartx") is not None and shutil.which("dmsetup") is not None


def detect_ca_bundle(env: Mapping[str, str], explicit: str = "") -> str:
    """The CA bundle the host trusts, for pip inside the chroot.

    TLS-inspecting proxies put their CA only in the host's store; without it
    pip in the chroot fails with CERTIFICATE_VERIFY_FAILED.
    """
    if explicit:
        if not Path(explicit).is_file():
            raise HostError(f"--ca-bundle {explicit}: no such file")
        return str(Path(explicit).resolve())
    for var in CA_VARS:
        value = env.get(var, "")
        if value and Path(value).is_file():
            return str(Path(value).resolve())
    return ""


def proxy_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {var: env[var] for var in PROXY_VARS if env.get(var)}


def _apt_source_texts() -> list[str]:
    texts = []
    for entry in APT_SOURCE_FILES:
        path = Path(entry)
        files = sorted(path.glob("*.list")) + sorted(path.glob("*.sources")) if path.is_dir() \
            else [path]
        for file in files:
            try:
                texts.append(file.read_text())
            except OSError:
                continue
    return texts


def debian_mirror(texts: list[str] | None = None) -> str:
    """The Debian archive the host's own apt sources use (it is reachable from here)."""
    pattern = re.compile(r"(?m)^(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s+)(https?://\S+/debian)/?\s")
    for text in texts if texts is not None else _apt_source_texts():
        match = pattern.search(text)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def host_context(env: Mapping[str, str], ca_bundle: str = "", mirror: str = "") -> HostContext:
    return HostContext(
        distribution_mirror=mirror or debian_mirror(),
        ca_bundle=detect_ca_bundle(env, ca_bundle),
        proxies=proxy_settings(env),
    )
