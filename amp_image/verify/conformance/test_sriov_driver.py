"""The SR-IOV scenario through Octavia's driver: VFs of an emulated igb NIC as the VIP
and as a member port.

As in amp_image/verify/checks/test_sriov.py, the harness plays the physical
host inside the guest (VFs with fixed MACs, see
amp_image/verify/emulated_sriov.py); here the igb
PF's wire is a tap on the VIP bridge, so the client on that bridge reaches the
VIP through the VF.  The controller's side is Octavia's: ``post_vip_plug``
with a ``direct`` VIP port (``is_sriov``), listeners rendered by its
templates, and ``set_interface_rules``.  The rule list itself is what the
controller's GetAmphoraFirewallRules task reads from its database (listener
ports and allowed CIDRs); without that database the test writes the list in
the same shape.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from octavia.common import constants as consts

from amp_image.verify import emulated_sriov
from amp_image.verify.conformance import controller, network
from amp_image.verify.conformance.clients import (
    MEMBER_A,
    MEMBER_B,
    NS,
    members_answering,
    wait_until,
)
from amp_image.verify.conformance.conftest import make_octavia, own_amphora
from amp_image.verify.conformance.plugs import plug_vip
from amp_image.verify.vmspec import Flavor

ALLOWED, OTHER, BEHIND_MEMBER_VF = 80, 81, 82


# The run's one 2-vCPU amphora (the others boot with the seed's 1 vCPU): the SR-IOV
# host's VFs come up in the guest beside the agent, and a second vCPU keeps the
# interrupt load of the emulated igb off the agent's.
FLAVOR = Flavor(vcpus=2, ram_mb=1024, disk_gb=3)


@pytest.fixture(scope="module")
def amphora(request, segments):
    """A VM of its own: its VIP NIC is the emulated igb PF."""
    nics = [network.VIP_SEGMENT.tap("tap-igb0", emulated_sriov.PF_MAC, device="igb",
                                    own_root_port=True),
            network.MEMBER_SEGMENT.tap("tap-mbr0", network.MEMBER_MAC)]
    with own_amphora(request, nics, request.module.__name__, FLAVOR) as booted:
        yield booted


@pytest.fixture(scope="module")
def octavia(amphora, heartbeats, tmp_path_factory):
    return make_octavia(amphora, heartbeats, tmp_path_factory.mktemp("sriov-cert-manager"))


@pytest.fixture(scope="module")
def sriov_lb(octavia, backends):
    octavia.topology = controller.make_topology(octavia.amp.id, vnic_type=consts.VNIC_TYPE_DIRECT)
    for port in (ALLOWED, OTHER):
        pool = controller.pool(octavia.topology, consts.PROTOCOL_HTTP, 80)
        controller.listener(octavia.topology, consts.PROTOCOL_HTTP, port, pool)
    return octavia


def rules(*ports: int, cidr: str = f"{network.VIP_GATEWAY}/32") -> list[dict]:
    return [{"protocol": consts.PROTOCOL_TCP, "cidr": cidr, "port": port} for port in ports]


def dropped(port: int, vip: str = network.VIP) -> bool:
    """No answer at all (the drop-all table), not a refusal."""
    try:
        with socket.create_connection((vip, port), timeout=3):
            return False
    except ConnectionRefusedError:
        return False
    except OSError:
        return True


def test_vfs_appear_with_their_macs(amphora_host):
    """SR-IOV: the host side makes two VFs with fixed MACs; igbvf binds them."""
    emulated_sriov.install_host_side(amphora_host)
    assert emulated_sriov.VIP_VF_MAC in amphora_host.check_output("ip -br link")


def test_post_vip_plug_of_an_sriov_port(sriov_lb, amphora_host):
    """SR-IOV VIP plug (post_vip_plug, vnic_type direct): drop-all table, no TCP notrack."""
    ruleset = plug_vip(sriov_lb, amphora_host, emulated_sriov.VIP_VF_MAC)
    assert "table inet amphora_table" in ruleset and "policy drop;" in ruleset, ruleset
    assert "notrack" not in ruleset, ruleset
    sriov_lb.driver.post_network_plug(
        sriov_lb.amp, controller.member_port(sriov_lb.topology, network.MEMBER_MAC), {})
    # The member port is an ordinary one, but behind an SR-IOV VIP's drop policy its
    # TCP must stay tracked, or the backends' replies would be dropped.
    assert "notrack" not in amphora_host.check_output(f"{NS} nft list ruleset")


def test_listeners_behind_the_sriov_vip(sriov_lb):
    """Listeners on an SR-IOV VIP: configured and started; dropped before any rule."""
    sriov_lb.driver.update_amphora_listeners(sriov_lb.lb, sriov_lb.amp)
    sriov_lb.driver.start(sriov_lb.lb, sriov_lb.amp)
    time.sleep(2)
    assert dropped(ALLOWED) and dropped(OTHER)


def test_set_interface_rules_admits_one_port(sriov_lb):
    """set_interface_rules: the allowed port answers from both members, the other is dropped."""
    sriov_lb.driver.set_interface_rules(sriov_lb.amp, sriov_lb.amp.vrrp_ip, rules(ALLOWED))
    assert wait_until(lambda: members_answering(ALLOWED, timeout=15) == {MEMBER_A, MEMBER_B}, 120,
                      "both members through the allowed port")
    assert dropped(OTHER)


def test_new_rules_replace_the_old(sriov_lb):
    """set_interface_rules again: the rules are replaced, not added to."""
    sriov_lb.driver.set_interface_rules(sriov_lb.amp, sriov_lb.amp.vrrp_ip, rules(OTHER))
    assert wait_until(lambda: members_answering(OTHER, timeout=15) == {MEMBER_A, MEMBER_B}, 120,
                      "both members through the newly allowed port")
    assert dropped(ALLOWED)


def test_ipv6_vip_behind_the_sriov_firewall(sriov_lb):
    """SR-IOV firewall for the additional IPv6 VIP: an IPv6 allowed CIDR admits its port
    (neighbour discovery works under the default drop), the other port is dropped."""
    sriov_lb.driver.set_interface_rules(
        sriov_lb.amp, sriov_lb.amp.vrrp_ip,
        rules(OTHER) + rules(ALLOWED, cidr=f"{network.VIP6_GATEWAY}/128"))
    assert wait_until(lambda: members_answering(ALLOWED, timeout=15, vip=network.VIP6)
                      == {MEMBER_A, MEMBER_B}, 120, "both members through the IPv6 rule")
    assert dropped(OTHER, vip=network.VIP6)
    assert dropped(ALLOWED)  # the IPv6 rule admits no IPv4 client
    assert members_answering(OTHER) == {MEMBER_A, MEMBER_B}


def _vf_counters(amphora_host, mac: str) -> tuple[str, int]:
    """(name, packets sent) of the namespace's interface with that MAC."""
    links = json.loads(amphora_host.check_output(f"{NS} ip -j -s link"))
    link = next(each for each in links if each.get("address") == mac)
    return link["ifname"], link["stats64"]["tx"]["packets"]


def test_sriov_member_port_carries_member_traffic(sriov_lb, amphora_host):
    """SR-IOV member port (allow_member_sriov): post_network_plug of a VF (vnic_type
    direct); a pool on its subnet is served through that VF."""
    sriov_lb.driver.post_network_plug(
        sriov_lb.amp, controller.sriov_member_port(sriov_lb.topology,
                                                   emulated_sriov.MEMBER_VF_MAC), {})
    vf, sent_before = _vf_counters(amphora_host, emulated_sriov.MEMBER_VF_MAC)
    addresses = amphora_host.check_output(f"{NS} ip -br addr show {vf}")
    assert network.SRIOV_MEMBER_PORT_IP in addresses, addresses
    pool = controller.pool(sriov_lb.topology, consts.PROTOCOL_HTTP, 80,
                           addresses=network.SRIOV_BACKENDS)
    controller.listener(sriov_lb.topology, consts.PROTOCOL_HTTP, BEHIND_MEMBER_VF, pool)
    sriov_lb.driver.update_amphora_listeners(sriov_lb.lb, sriov_lb.amp)
    sriov_lb.driver.set_interface_rules(sriov_lb.amp, sriov_lb.amp.vrrp_ip,
                                        rules(BEHIND_MEMBER_VF))
    assert wait_until(lambda: members_answering(BEHIND_MEMBER_VF, timeout=15)
                      == {MEMBER_A, MEMBER_B}, 120, "both members through the member VF")
    _, sent_after = _vf_counters(amphora_host, emulated_sriov.MEMBER_VF_MAC)
    assert sent_after >= sent_before + 6, (sent_before, sent_after)
