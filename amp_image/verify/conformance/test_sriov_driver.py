"""The SR-IOV scenario through Octavia's driver: a VF of an emulated igb NIC as the VIP.

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

ALLOWED, OTHER = 80, 81


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


def rules(*ports: int) -> list[dict]:
    return [{"protocol": consts.PROTOCOL_TCP, "cidr": f"{network.VIP_GATEWAY}/32", "port": port}
            for port in ports]


def dropped(port: int) -> bool:
    """No answer at all (the drop-all table), not a refusal."""
    try:
        with socket.create_connection((network.VIP, port), timeout=3):
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
