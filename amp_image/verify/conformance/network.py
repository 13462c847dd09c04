"""The conformance run's own L2 networks, inside its private network namespace.

``amp-image test --conformance`` runs pytest under ``unshare --net``: every
bridge, tap and address below lives and dies with that namespace, so nothing
is left on the host and no packet leaves it.

    br-vip  10.0.3.0/24  client and VIP subnet gateway 10.0.3.1; the amphora's
                         VIP NIC (tap) is plugged by the driver with 10.0.3.10
            fd00:3::/64  the additional IPv6 VIP fd00:3::10, client fd00:3::1
            10.0.5.0/24  the SR-IOV member subnet: backends 10.0.5.101 and .102,
                         reached through a VF on the igb PF's wire (10.0.5.20)
    br-mbr  10.0.4.0/24  gateway 10.0.4.1; backends 10.0.4.101 and .102 (real
                         servers); the amphora's member NIC gets 10.0.4.20
            fd00:4::/64  gateway fd00:4::1; backends fd00:4::101 and ::102; the
                         member NIC gets fd00:4::20 too
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from amp_image.verify.vmspec import Nic

VIP_CIDR = "10.0.3.0/24"
VIP_GATEWAY = "10.0.3.1"
VIP = "10.0.3.10"
MEMBER_CIDR = "10.0.4.0/24"
MEMBER_GATEWAY = "10.0.4.1"
MEMBER_PORT_IP = "10.0.4.20"
BACKENDS = {"member-a": "10.0.4.101", "member-b": "10.0.4.102"}
PREFIX = 24
VIP6_CIDR = "fd00:3::/64"
VIP6_GATEWAY = "fd00:3::1"
VIP6 = "fd00:3::10"
MEMBER6_CIDR = "fd00:4::/64"
MEMBER6_GATEWAY = "fd00:4::1"
MEMBER6_PORT_IP = "fd00:4::20"
BACKENDS6 = {"member-a": "fd00:4::101", "member-b": "fd00:4::102"}
# One member of each family: A at its IPv4 address, B at its IPv6 one.
MIXED_BACKENDS = {"member-a": BACKENDS["member-a"], "member-b": BACKENDS6["member-b"]}
SRIOV_MEMBER_CIDR = "10.0.5.0/24"
SRIOV_MEMBER_GATEWAY = "10.0.5.1"
SRIOV_MEMBER_PORT_IP = "10.0.5.20"
SRIOV_BACKENDS = {"member-a": "10.0.5.101", "member-b": "10.0.5.102"}
VIP_MAC = "52:54:00:cc:00:01"
MEMBER_MAC = "52:54:00:cc:00:02"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def in_private_netns() -> bool:
    """True in a fresh network namespace: no interface but loopback (never the host's)."""
    names = [line.split(":")[1].strip().split("@")[0]
             for line in ip("-o", "link", "show").splitlines()]
    return names == ["lo"]


@dataclass
class Segment:
    """A bridge with the host-side addresses on it (each ADDRESS/PREFIX)."""

    bridge: str
    addresses: tuple[str, ...]

    def create(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("link", "set", self.bridge, "up")
        for address in self.addresses:
            # nodad: an IPv6 address is usable at once (servers bind to it).
            ip("addr", "add", address, "dev", self.bridge,
               *(["nodad"] if ":" in address else []))

    def tap(self, name: str, mac: str, device: str = "virtio-net-pci",
            own_root_port: bool = False) -> Nic:
        """A persistent tap on this bridge for one VM NIC (QEMU opens it by name);
        remove it with delete_link once the VM is gone."""
        ip("tuntap", "add", "dev", name, "mode", "tap")
        ip("link", "set", name, "master", self.bridge, "up")
        return Nic(device=device, netdev=f"tap,ifname={name},script=no,downscript=no",
                   mac=mac, own_root_port=own_root_port)

    def remove_address(self, address: str) -> None:
        ip("addr", "del", f"{address}/{PREFIX}", "dev", self.bridge)

    def add_address(self, address: str) -> None:
        ip("addr", "replace", f"{address}/{PREFIX}", "dev", self.bridge)


def delete_link(name: str) -> None:
    ip("link", "del", name)


def tap_name(nic: Nic) -> str:
    return nic.netdev.split("ifname=", 1)[1].split(",", 1)[0]


def _with_prefix(addresses, prefix: int) -> tuple[str, ...]:
    return tuple(f"{address}/{prefix}" for address in addresses)


VIP_SEGMENT = Segment("br-vip", (
    *_with_prefix((VIP_GATEWAY,), PREFIX), *_with_prefix((VIP6_GATEWAY,), 64),
    *_with_prefix((SRIOV_MEMBER_GATEWAY, *SRIOV_BACKENDS.values()), PREFIX)))
MEMBER_SEGMENT = Segment("br-mbr", (
    *_with_prefix((MEMBER_GATEWAY, *BACKENDS.values()), PREFIX),
    *_with_prefix((MEMBER6_GATEWAY, *BACKENDS6.values()), 64)))


def create_segments() -> None:
    if not in_private_netns():
        raise RuntimeError("the conformance networks are made only in a fresh network "
                           "namespace; run through `amp-image test --conformance`")
    VIP_SEGMENT.create()
    MEMBER_SEGMENT.create()
