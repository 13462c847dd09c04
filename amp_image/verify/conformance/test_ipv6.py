"""IPv6 and additional VIPs on the shared amphora: what octavia-tempest-plugin's
test_ipv6_traffic_ops (and the additional_vips of 2024.1) ask of an amphora.

The load balancer's VIP port carries a second VIP subnet, fd00:3::/64, as an
additional VIP (controller.make_topology; plugged with the VIP by plugs.plug_vip),
and the member port an IPv6 address beside its IPv4 one.  Every listener binds
both VIPs.  Runs after test_tls.py on the same VM, with listeners of its own that go
with the VM.  IPv6 allowed_cidrs reach the amphora only on an SR-IOV VIP (on other
ports Neutron's security groups apply them): test_sriov_driver.py proves them.
"""

from __future__ import annotations

import pytest
from octavia.common import constants as consts

from amp_image.verify.conformance import backends as servers
from amp_image.verify.conformance import clients, controller, network
from amp_image.verify.conformance.clients import MEMBER_A, MEMBER_B
from amp_image.verify.conformance.heartbeats import ensure_heartbeats, wait_member
from amp_image.verify.conformance.plugs import ensure_plugged

HTTP, TCP = consts.PROTOCOL_HTTP, consts.PROTOCOL_TCP
PORTS = {"ipv6-members": 8601, "mixed-members": 8602, "tcp-ipv6-members": 8603}


@pytest.fixture(scope="module")
def ipv6_listeners(octavia, amphora_host, backends, heartbeats):
    """This module's listeners on the shared amphora, in one update (the ports plugged
    and the heartbeats set up first if no module before did, -k)."""
    ensure_plugged(octavia, amphora_host)
    ensure_heartbeats(octavia, heartbeats)
    topology, web = octavia.topology, servers.HTTP_PORT
    v6_pool = controller.pool(topology, HTTP, web, consts.HEALTH_MONITOR_HTTP,
                              addresses=network.BACKENDS6, delay=2, timeout=2)
    made = {
        "ipv6-members": controller.listener(
            topology, HTTP, PORTS["ipv6-members"], v6_pool,
            insert_headers={"X-Forwarded-For": "true"}),
        "mixed-members": controller.listener(
            topology, HTTP, PORTS["mixed-members"],
            controller.pool(topology, HTTP, web, addresses=network.MIXED_BACKENDS)),
        "tcp-ipv6-members": controller.listener(
            topology, TCP, PORTS["tcp-ipv6-members"],
            controller.pool(topology, TCP, web, addresses=network.BACKENDS6)),
    }
    octavia.driver.update_amphora_listeners(octavia.lb, octavia.amp)
    octavia.driver.start(octavia.lb, octavia.amp)
    return made


def test_listeners_bind_both_vips(ipv6_listeners, amphora_host):
    """Additional VIP: every listener listens on the IPv4 VIP and the IPv6 one."""
    listening = amphora_host.check_output(f"{clients.NS} ss -ltnH")
    for port in PORTS.values():
        for address in (network.VIP, f"[{network.VIP6}]"):
            assert f"{address}:{port}" in listening, (address, port, listening)


@pytest.mark.parametrize("vip", [network.VIP, network.VIP6], ids=["IPv4 VIP", "IPv6 VIP"])
@pytest.mark.parametrize("name", ["ipv6-members", "mixed-members", "tcp-ipv6-members"])
def test_traffic_reaches_ipv6_and_mixed_members(ipv6_listeners, name, vip):
    """IPv6 members, and IPv4 and IPv6 members in one pool, behind either VIP (HTTP and
    TCP): both members answer."""
    seen = clients.wait_until(lambda: clients.members_answering(PORTS[name], vip=vip), 60,
                      f"{name} through {vip}")
    assert seen == {MEMBER_A, MEMBER_B}, seen


def test_ipv6_client_address_reaches_the_member(ipv6_listeners):
    """IPv6 VIP with insert_headers: the member sees the IPv6 client's address."""
    status, _, body = clients.http_get(PORTS["ipv6-members"], vip=network.VIP6)
    assert status == 200, body
    assert f"x-forwarded-for: {network.VIP6_GATEWAY}" in body, body


def test_health_monitor_on_ipv6_members(ipv6_listeners, heartbeats, backends):
    """HTTP health monitor on IPv6 members: both UP in the heartbeats; a member whose
    IPv6 server stops goes DOWN, and UP again when it returns."""
    pool = ipv6_listeners["ipv6-members"].default_pool
    b_index = next(index for index, member in enumerate(pool.members)
                   if member.ip_address == network.BACKENDS6[MEMBER_B])
    for index in range(len(pool.members)):
        wait_member(heartbeats, pool, index, "UP")
    server = backends[(MEMBER_B, f"http {network.BACKENDS6[MEMBER_B]}")]
    server.stop()
    try:
        wait_member(heartbeats, pool, b_index, "DOWN")
    finally:
        server.start()
    wait_member(heartbeats, pool, b_index, "UP")
