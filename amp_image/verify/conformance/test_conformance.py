"""Octavia conformance: what the controller asks of an amphora, through Octavia's driver.

A scenario: the steps run in file order against one amphora and build on each
other (agent config, VIP and member plugs, one load balancer with a listener of
every protocol, then health monitors, L7, limits, reload, delete, certificate
rotation).  Every call to the amphora goes through Octavia's
``HaproxyAmphoraLoadBalancerDriver`` with ``octavia.common.data_models``
objects, so the haproxy and LVS configurations are the controller's own
renderings.  Traffic is real: a client on the VIP bridge, servers on the member
bridge.  Member health is read from the amphora's heartbeats, decoded with
Octavia's ``status_message`` as the health manager reads it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time

import pytest
from octavia.amphorae.backends.health_daemon import status_message
from octavia.common import constants as consts
from octavia.common import exceptions as octavia_exceptions
from octavia_lib.common import constants as lib_consts

from amp_image.verify.conformance import backends as servers
from amp_image.verify.conformance import controller, network
from amp_image.verify.conformance.clients import (
    MEMBER_A,
    MEMBER_B,
    NS,
    der,
    http_get,
    members_answering,
    peer_certificate,
    refused,
    wait_until,
)
from amp_image.verify.conformance.heartbeats import (
    member_status,
    send_agent_config,
    wait_member,
)
from amp_image.verify.conformance.plugs import plug_vip
from amp_image.verify.pki import ThrowawayPKI

LISTENER_CN = "lb.conformance.example"
REDIRECT = "http://redirect.conformance.example/"
CONNECTION_LIMIT = 3

# port -> (listener protocol, pool protocol, member port, health monitor type)
LISTENERS = {
    80: (consts.PROTOCOL_HTTP, consts.PROTOCOL_HTTP, servers.HTTP_PORT,
         consts.HEALTH_MONITOR_HTTP),
    81: (consts.PROTOCOL_TCP, consts.PROTOCOL_TCP, servers.HTTP_PORT, consts.HEALTH_MONITOR_TCP),
    82: (consts.PROTOCOL_HTTP, consts.PROTOCOL_HTTP, servers.HTTP_PORT,
         consts.HEALTH_MONITOR_PING),
    443: (consts.PROTOCOL_TCP, consts.PROTOCOL_TCP, servers.TLS_PORT,
          consts.HEALTH_MONITOR_TLS_HELLO),
    8443: (consts.PROTOCOL_TERMINATED_HTTPS, consts.PROTOCOL_HTTP, servers.HTTP_PORT, None),
    8080: (consts.PROTOCOL_HTTP, consts.PROTOCOL_HTTP, servers.HTTP_PORT, None),
    5353: (consts.PROTOCOL_UDP, consts.PROTOCOL_UDP, servers.UDP_PORT,
           consts.HEALTH_MONITOR_UDP_CONNECT),
    9900: (lib_consts.PROTOCOL_SCTP, lib_consts.PROTOCOL_SCTP, 9900, None),
    9100: (lib_consts.PROTOCOL_PROMETHEUS, None, 0, None),
}
LIMITED_PORT = 8080  # connection limit and the L7 redirect policy


@pytest.fixture(scope="module")
def listener_pki() -> ThrowawayPKI:
    return ThrowawayPKI.create(LISTENER_CN)


@pytest.fixture(scope="module")
def lb(octavia, listener_pki):
    """The load balancer's listeners and pools, by listener port."""
    topology = octavia.topology
    tls_ref = controller.store_certificate(listener_pki.server.cert_pem,
                                           listener_pki.server.key_pem)
    listeners, pools = {}, {}
    for port, (protocol, pool_protocol, member_port, monitor) in LISTENERS.items():
        # nc -uz in the agent's udp_check.sh waits a second for an ICMP error, and
        # ping-wrapper.sh's ping has a 1 s deadline: with a 1 s timeout these checks
        # race haproxy's and keepalived's kill (under TCG load the reachable member
        # lost too), so they get 3 s.
        timing = ({"delay": 3, "timeout": 3}
                  if protocol == consts.PROTOCOL_UDP or monitor == consts.HEALTH_MONITOR_PING
                  else {})
        pool = (controller.pool(topology, pool_protocol, member_port, monitor, **timing)
                if pool_protocol else None)
        extra = {}
        if protocol == consts.PROTOCOL_TERMINATED_HTTPS:
            extra["tls_certificate_id"] = tls_ref
        if port == LIMITED_PORT:
            extra["connection_limit"] = CONNECTION_LIMIT
        listeners[port] = controller.listener(topology, protocol, port, pool, **extra)
        pools[port] = pool
    controller.redirect_policy(listeners[LIMITED_PORT], "/old", REDIRECT)
    return {"listeners": listeners, "pools": pools}


# --- the agent and its heartbeats --------------------------------------------------

def test_driver_reaches_the_agent(octavia):
    """Driver get_info: API version discovery and the versions the controller checks."""
    info = octavia.driver.get_info(octavia.amp)
    assert octavia.amp.api_version == "1.0"
    assert info["api_version"] == "1.0"
    for key in ("haproxy_version", "keepalived_version", "ipvsadm_version", "hostname"):
        assert info.get(key), info
    assert octavia.driver.get_diagnostics(octavia.amp) is None  # a no-op in the driver


def test_agent_config_update_sends_heartbeats(octavia, heartbeats):
    """Agent config update (update_amphora_agent_config): heartbeats to the new controller."""
    message = send_agent_config(octavia, heartbeats)
    assert message["ver"] >= 3 and "listeners" in message and "pools" in message


def test_heartbeat_with_a_wrong_key_is_rejected(heartbeats):
    """Heartbeats: a receiver with another heartbeat_key rejects them (HMAC)."""
    assert heartbeats.raw and heartbeats.rejected == 0
    with pytest.raises(octavia_exceptions.InvalidHMACException):
        status_message.unwrap_envelope(heartbeats.raw[-1], "not-the-key")


# --- plugging ------------------------------------------------------------------------

def test_post_vip_plug(octavia, amphora_host):
    """VIP plug (post_vip_plug), an ordinary (non SR-IOV) port, with TCP notrack."""
    ruleset = plug_vip(octavia, amphora_host, network.VIP_MAC)
    assert 'iifname "eth1" meta l4proto tcp notrack' in ruleset, ruleset
    assert 'oifname "eth1" meta l4proto udp masquerade' in ruleset, ruleset


def test_post_network_plug(octavia, amphora_host, backends):
    """Member network plug (post_network_plug): an IPv4 and an IPv6 address on the port;
    the member subnets reach the backends over both."""
    octavia.driver.post_network_plug(
        octavia.amp, controller.member_port(octavia.topology, network.MEMBER_MAC), {})
    links = json.loads(amphora_host.check_output(f"{NS} ip -j addr"))
    member = [link for link in links if link.get("address") == network.MEMBER_MAC]
    assert member, links
    assigned = {a.get("local") for a in member[0]["addr_info"]}
    assert {network.MEMBER_PORT_IP, network.MEMBER6_PORT_IP} <= assigned, assigned
    for address in (*network.BACKENDS.values(), *network.BACKENDS6.values()):
        # An IPv6 address is usable once its duplicate address detection ends.
        ping = f"{NS} ping -c1 -W2 {address}"
        wait_until(lambda ping=ping: amphora_host.run_expect([0], ping), 30, ping)


# --- listeners ---------------------------------------------------------------------

def test_listeners_configured_and_started(octavia, lb, amphora_host):
    """Listener create (update_amphora_listeners, start): every protocol, started."""
    octavia.driver.update_amphora_listeners(octavia.lb, octavia.amp)
    octavia.driver.start(octavia.lb, octavia.amp)
    listening = amphora_host.check_output(f"{NS} ss -ltnH")
    for port, (protocol, *_rest) in LISTENERS.items():
        if protocol not in consts.LVS_PROTOCOLS:
            assert f"{network.VIP}:{port}" in listening, (port, listening)
    statuses = octavia.client.get_all_listeners(octavia.amp)
    assert {s["status"] for s in statuses} == {"ACTIVE"}, statuses


def test_http_listener_balances_both_members(lb):
    """HTTP listener: real requests reach both members."""
    assert wait_until(lambda: members_answering(80) == {MEMBER_A, MEMBER_B}, 60,
                      "both members answer through HTTP")


def test_tcp_listener(lb):
    """TCP listener: bytes pass to both members."""
    assert wait_until(lambda: members_answering(81) == {MEMBER_A, MEMBER_B}, 60,
                      "both members answer through TCP")


def test_https_passthrough_shows_the_member_certificate(lb, backend_pki):
    """TCP listener for HTTPS passthrough: the client sees the member's own certificate."""
    assert wait_until(lambda: peer_certificate(443) == der(backend_pki.server.cert_pem), 60,
                      "the member's certificate through port 443")
    context = ssl.create_default_context(cadata=backend_pki.ca.cert_pem.decode())
    context.check_hostname = False
    assert members_answering(443, tls=context) == {MEMBER_A, MEMBER_B}


def test_terminated_https_serves_the_uploaded_certificate(lb, listener_pki):
    """TERMINATED_HTTPS listener: the certificate uploaded through the driver, verified."""
    context = ssl.create_default_context(cadata=listener_pki.ca.cert_pem.decode())
    seen = wait_until(lambda: members_answering(8443, tls=context, server_name=LISTENER_CN), 60,
                      "TLS-terminated answers")
    assert seen == {MEMBER_A, MEMBER_B}
    assert peer_certificate(8443, LISTENER_CN) == der(listener_pki.server.cert_pem)


def test_udp_listener(lb):
    """UDP listener (keepalived LVS through the driver's UDP path): datagrams reach members."""
    def answers() -> set[str]:
        return {(servers.udp_ask(network.VIP, 5353, b"ping") or "").split(" ")[0]
                for _ in range(6)}
    assert wait_until(lambda: answers() == {MEMBER_A, MEMBER_B}, 90,
                      "both members answer through UDP")


def test_sctp_listener_accepted_and_running(lb, amphora_host):
    """SCTP listener: the driver's LVS configuration is accepted and its service runs."""
    listener_id = lb["listeners"][9900].id
    assert amphora_host.service(f"octavia-keepalivedlvs-{listener_id}").is_running
    services = [line.split()[:2] for line in
                amphora_host.check_output(f"{NS} ipvsadm -Ln").splitlines()]
    assert ["SCTP", f"{network.VIP}:9900"] in services, services


def test_prometheus_listener_scrape(lb):
    """PROMETHEUS listener: a scrape returns haproxy's metrics under Octavia's names."""
    def scrape():
        status, _, body = http_get(9100, "/metrics")
        return body if status == 200 and "octavia_" in body else None
    body = wait_until(scrape, 90, "a metrics scrape")
    assert "octavia_loadbalancer" in body or "octavia_listener" in body, body[:500]


# --- health monitors ---------------------------------------------------------------

def _down_and_up(heartbeats, pool, stop, start) -> None:
    wait_member(heartbeats, pool, 0, "UP")
    stop()
    try:
        wait_member(heartbeats, pool, 0, "DOWN")
        assert member_status(heartbeats.latest(), pool.id, pool.members[1].id) == "UP"
    finally:
        start()
    wait_member(heartbeats, pool, 0, "UP")


@pytest.mark.parametrize("port,service", [(80, "http"), (81, "http"), (443, "tls"),
                                          (5353, "udp")],
                         ids=["HTTP", "TCP", "TLS-HELLO", "UDP-CONNECT"])
def test_health_monitor_marks_a_stopped_member_down_then_up(lb, heartbeats, backends, port,
                                                            service):
    """Health monitor: a stopped backend goes DOWN, and UP again once restarted."""
    backend = backends[(MEMBER_A, service)]
    _down_and_up(heartbeats, lb["pools"][port], backend.stop, backend.start)


def test_ping_health_monitor(lb, heartbeats):
    """Health monitor PING (ping-wrapper.sh): an unreachable member goes DOWN, then UP."""
    address = network.BACKENDS[MEMBER_A]
    _down_and_up(heartbeats, lb["pools"][82],
                 lambda: network.MEMBER_SEGMENT.remove_address(address),
                 lambda: network.MEMBER_SEGMENT.add_address(address))


# --- L7, limits, reload, delete ----------------------------------------------------

def test_l7_redirect_policy(lb):
    """L7 policy REDIRECT_TO_URL on a path prefix; other paths still reach the pool."""
    status, headers, _ = http_get(LIMITED_PORT, "/old/page")
    assert status == 302 and headers.get("location") == REDIRECT, headers
    assert http_get(LIMITED_PORT, "/new")[0] == 200


def test_connection_limit(lb):
    """Listener connection limit: connections beyond it wait until one closes."""
    held = [socket.create_connection((network.VIP, LIMITED_PORT), timeout=5)
            for _ in range(CONNECTION_LIMIT)]
    try:
        for conn in held:  # each holds its slot with an unfinished request
            conn.sendall(b"GET / HTTP/1.0\r\n")
        time.sleep(1)
        with pytest.raises(OSError):
            http_get(LIMITED_PORT, timeout=4)
    finally:
        for conn in held:
            conn.close()
    assert wait_until(lambda: http_get(LIMITED_PORT)[0] == 200, 30, "a slot frees up")


def _haproxy_workers(host, lb_id: str) -> set[str]:
    """The load balancer's haproxy worker PIDs: children of its unit's master process.
    (Not pgrep -f on the id: that also matches the shell running pgrep.)"""
    master = host.check_output(f"systemctl show -P MainPID haproxy-{lb_id}.service")
    if master in ("", "0"):
        return set()
    return set(host.check_output(f"pgrep -P {master} || true").split())


def test_lvs_listener_delete(octavia, lb, amphora_host):
    """LVS listener delete (driver delete, its UDP/SCTP path): each keepalived service
    stops and its virtual server leaves IPVS; haproxy's listeners keep serving.  Before
    the reload and the haproxy deletes: each of those reloads every LVS listener left
    again (and each update re-uploads it), about 20 s a listener under TCG; every update
    above already reloaded them through the same agent call the driver's reload makes."""
    gone = [lb["listeners"][5353], lb["listeners"][9900]]
    for listener in gone:
        controller.delete_listener(octavia.driver, octavia.lb, listener)
    units = [amphora_host.service(f"octavia-keepalivedlvs-{li.id}") for li in gone]
    wait_until(lambda: not any(unit.is_running for unit in units), 60,
               "both keepalived LVS services stopped")
    virtual = amphora_host.check_output(f"{NS} ipvsadm -Ln")
    assert f"{network.VIP}:5353" not in virtual and f"{network.VIP}:9900" not in virtual
    assert members_answering(80) == {MEMBER_A, MEMBER_B}


def test_reload_keeps_serving(octavia, lb, amphora_host):
    """Config reload (driver reload): new haproxy workers, no failed request."""
    before = _haproxy_workers(amphora_host, octavia.lb.id)
    assert before, "no haproxy worker before the reload"
    octavia.driver.reload(octavia.lb, octavia.amp)
    assert members_answering(80) == {MEMBER_A, MEMBER_B}
    after = wait_until(lambda: _haproxy_workers(amphora_host, octavia.lb.id) - before,
                       30, "a new haproxy worker")
    assert after


def test_listener_delete(octavia, lb):
    """Listener delete (driver delete): its port closes, the others keep serving."""
    octavia.driver.delete(lb["listeners"][81])
    wait_until(lambda: refused(81), 30, "port 81 closed")
    assert members_answering(80) == {MEMBER_A, MEMBER_B}


# --- certificates --------------------------------------------------------------------

def test_server_certificate_rotation(octavia, amphora):
    """Certificate rotation (upload_cert_amp): the agent serves the new certificate over mTLS."""
    new = amphora.pki.issue_server(octavia.amp.id)
    octavia.driver.upload_cert_amp(octavia.amp, new.cert_pem + new.key_pem)
    fingerprint = hashlib.sha256(der(new.cert_pem)).hexdigest()

    def served() -> bool:
        context = ssl.create_default_context(cadata=amphora.pki.ca.cert_pem.decode())
        context.load_cert_chain(str(amphora.client_files["client"]))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", amphora.machine.ports[9443]), 5) as raw, \
                context.wrap_socket(raw) as conn:
            return hashlib.sha256(conn.getpeercert(True)).hexdigest() == fingerprint
    wait_until(served, 60, "the rotated certificate on the agent's port")
    assert octavia.driver.get_info(octavia.amp)["api_version"] == "1.0"


def test_last_listeners_deleted(octavia, lb, amphora_host):
    """Load balancer teardown: deleting the last listener stops haproxy and removes its
    certificate.  The others but the TERMINATED_HTTPS one leave in one update: what the
    amphora holds after their deletes one by one, each the update test_listener_delete
    drove (one each would cost about 30 s under TCG).  Then the last one's delete takes
    the driver's other path (no haproxy listener left: delete, not update)."""
    last = lb["listeners"][8443]
    for listener in [li for li in octavia.lb.listeners if li is not last]:
        controller.drop_listener(octavia.lb, listener)
    octavia.driver.update(octavia.lb)
    wait_until(lambda: refused(80), 60, "port 80 closed")
    assert peer_certificate(8443)
    octavia.driver.delete(last)
    unit = amphora_host.service(f"haproxy-{octavia.lb.id}")
    wait_until(lambda: not unit.is_running, 60, "haproxy stopped")
    assert refused(8443)
    assert octavia.lb.listeners == []
