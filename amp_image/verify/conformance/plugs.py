"""The amphora's VIP and member ports, plugged through the driver as the controller's
flows plug them."""

from __future__ import annotations

import json

from amp_image.verify.conformance import controller, network
from amp_image.verify.conformance.clients import NS


def plug_vip(octavia, amphora_host, mac: str) -> str:
    """post_vip_plug through the driver; the NIC with that MAC becomes eth1 in the
    namespace with the VIP and VRRP addresses and the additional IPv6 VIP.  Returns the
    namespace's nft ruleset."""
    topology = octavia.topology
    octavia.driver.post_vip_plug(octavia.amp, octavia.lb, {}, controller.vrrp_port(topology, mac),
                                 topology.vip_subnet,
                                 additional_vip_data=controller.additional_vip_data(topology))
    eth1 = json.loads(amphora_host.check_output(f"{NS} ip -j addr show eth1"))[0]
    assert eth1["address"] == mac
    addresses = {a["local"] for a in eth1["addr_info"]}
    assert {network.VIP, octavia.amp.vrrp_ip, network.VIP6} <= addresses, addresses
    return amphora_host.check_output(f"{NS} nft list ruleset")


def ensure_plugged(octavia, amphora_host) -> None:
    """The VIP and member ports plugged, unless a module before did it (a module run
    alone with -k plugs them itself)."""
    if amphora_host.run(f"{NS} ip link show eth1").rc == 0:
        return
    plug_vip(octavia, amphora_host, network.VIP_MAC)
    octavia.driver.post_network_plug(
        octavia.amp, controller.member_port(octavia.topology, network.MEMBER_MAC), {})
