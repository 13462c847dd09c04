"""What a VM is given: its flavor (the seed's by default), its NICs and the rest of its
specification.  Plain values: vm.Machine boots one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from amp_image.errors import PlanError


@dataclass
class Nic:
    """An extra guest NIC: QEMU device model plus netdev options."""

    device: str
    netdev: str
    mac: str = ""
    # SR-IOV devices get their own PCIe root port, so their VFs have a bus.
    own_root_port: bool = False


@dataclass(frozen=True)
class Flavor:
    """What a Nova flavor gives the amphora: vCPUs, RAM, and the root disk in GiB (None:
    the image's own size, as a flavor with disk 0 boots it)."""

    vcpus: int
    ram_mb: int
    disk_gb: int | None = None

    def __str__(self) -> str:
        disk = f"{self.disk_gb} GiB disk" if self.disk_gb else "the image's disk size"
        return f"{self.vcpus} vCPU, {self.ram_mb} MiB, {disk}"

    @classmethod
    def parse(cls, text: str) -> Flavor:
        """VCPUS,RAM_MB,DISK_GB as `openstack flavor create --vcpus --ram --disk` takes
        them (DISK_GB 0: the image's own size)."""
        try:
            vcpus, ram_mb, disk_gb = (int(part) for part in text.split(","))
        except ValueError:
            raise PlanError(f"flavor {text!r} is not VCPUS,RAM_MB,DISK_GB (for example "
                            "1,1024,3)") from None
        if vcpus < 1 or ram_mb < 256 or disk_gb < 0:
            raise PlanError(f"flavor {text!r}: give at least 1 vCPU and 256 MiB of RAM, "
                            "and a disk of 0 GiB (the image's size) or more")
        return cls(vcpus, ram_mb, disk_gb or None)

    def as_option(self) -> str:
        """The VCPUS,RAM_MB,DISK_GB form parse reads."""
        return f"{self.vcpus},{self.ram_mb},{self.disk_gb or 0}"


# The seed's compute flavor for SR-IOV amphorae: `openstack flavor create --vcpus 1
# --ram 1024 --disk 3` (amp-image openstack-config prints it).
SEED_FLAVOR = Flavor(vcpus=1, ram_mb=1024, disk_gb=3)


@dataclass
class MachineSpec:
    image: Path
    workdir: Path
    config_drive: Path | None = None
    flavor: Flavor = SEED_FLAVOR
    arch: str = "amd64"
    machine: str = ""  # "": the platform's (q35, virt)
    accel: str = "tcg"
    direct_boot: tuple[Path, Path, str] | None = None
    mgmt_mac: str = "52:54:00:12:34:56"
    extra_nics: list[Nic] = field(default_factory=list)
    forward_ports: tuple[int, ...] = (22, 9443)
    # Fixed host ports for forward_ports (e.g. 9443 -> 9443 in a private network
    # namespace, so the agent's bind_port is the controller's); else free ones.
    host_ports: dict[int, int] | None = None
    # The host address the forwards listen on (another 127.x address lets two VMs
    # forward the same ports).
    host_address: str = "127.0.0.1"
