"""What QEMU and this host can run: each architecture's emulated cloud platform, as
Nova's libvirt driver sets it up, and the accelerator (KVM where a probe boot shows it
works, else TCG; the verdict cached per host kernel and QEMU version)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amp_image.builder.binfmt import host_arch, is_foreign
from amp_image.errors import HostError

ACCEL_CACHE = Path("~/.cache/amp-image/accel.json").expanduser()


@dataclass(frozen=True)
class Platform:
    """How QEMU emulates one architecture's cloud guest, as Nova's libvirt driver sets it up."""

    qemu: str
    machine: str
    # -cpu by accelerator ("tcg", "kvm"); none given: QEMU's default.
    cpu: dict[str, str] = field(default_factory=dict)
    # UEFI firmware (code, variable store template); None boots SeaBIOS.
    firmware: tuple[Path, Path] | None = None
    # UEFI: the root disk first in the boot order (bootindex), or firmware with fresh
    # variables tries the network (iPXE) before it.  SeaBIOS boots the disk as it is.
    disk_bootindex: bool = False
    # The config drive: an IDE CD-ROM on x86; the virt machine has no IDE, so a SCSI
    # CD-ROM on virtio-scsi (Nova's default bus for aarch64 guests).
    scsi_cdrom: bool = False
    setup_hint: str = "scripts/setup-host"

    def cpu_args(self, accel: str) -> list[str]:
        return ["-cpu", self.cpu[accel]] if accel in self.cpu else []


PLATFORMS = {
    "amd64": Platform("qemu-system-x86_64", "q35"),
    "arm64": Platform(
        "qemu-system-aarch64", "virt",
        # pauth-impdef (TCG only): a cheap pointer-authentication hash, several times
        # faster than the architected QARMA one and invisible to the guest.
        cpu={"tcg": "max,pauth-impdef=on", "kvm": "host"},
        firmware=(Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
        disk_bootindex=True, scsi_cdrom=True, setup_hint="scripts/setup-host --arm64"),
}


def platform_for(arch: str) -> Platform:
    try:
        platform = PLATFORMS[arch]
    except KeyError:
        raise HostError(f"no QEMU set-up for {arch} images; amp-image boots "
                        f"{', '.join(PLATFORMS)}") from None
    missing = [str(p) for p in (platform.firmware or ()) if not p.is_file()]
    if shutil.which(platform.qemu) is None or missing:
        raise HostError(f"{' and '.join([platform.qemu, *missing])} not found, needed to boot "
                        f"{arch} images; run {platform.setup_hint} (as root)")
    return platform


def qemu_version(arch: str = "amd64") -> str:
    qemu = platform_for(arch).qemu
    return subprocess.run([qemu, "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def _accel_cache_key(arch: str) -> str:
    return f"{os.uname().release}|{qemu_version(arch)}"


def choose_accel(probe: Callable[[str], bool], requested: str = "auto",
                 arch: str = "amd64") -> tuple[str, str]:
    """Pick kvm or tcg by booting, not by the existence of /dev/kvm.

    ``probe(accel)`` boots the guest and says whether its kernel got going.
    The verdict is cached per host kernel and QEMU version.  Returns
    (accel, reason).
    """
    if is_foreign(arch):
        if requested == "kvm":
            raise HostError(f"KVM cannot run {arch} guests on this {host_arch()} host; "
                            "use --accel tcg (or auto)")
        return "tcg", f"{arch} guest on an {host_arch()} host: emulated"
    if requested in ("kvm", "tcg"):
        return requested, "requested"
    if not kvm_usable():
        return "tcg", "/dev/kvm not usable"
    key = _accel_cache_key(arch)
    try:
        cached = json.loads(ACCEL_CACHE.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key], "cached probe"
    accel = "kvm" if probe("kvm") else "tcg"
    cached[key] = accel
    ACCEL_CACHE.parent.mkdir(parents=True, exist_ok=True)
    ACCEL_CACHE.write_text(json.dumps(cached))
    return accel, "probed by booting" + ("" if accel == "kvm" else ": KVM guest did not boot")
