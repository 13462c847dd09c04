"""Octavia's scenario matrix on the shared amphora: what octavia-tempest-plugin's
scenario tests (test_pool, test_member, test_healthmonitor, test_l7policy,
test_l7rule, test_traffic_ops) ask of an amphora beyond test_conformance.py.

The last module on the shared VM (see conftest.py's ``amphora``), after
test_conformance.py's plugs, with listeners of its own on ports no other module uses.
They go with the VM: deleting them one by one through the driver (test_conformance.py
proves that) took 223 s here at 1 vCPU.  Everything goes
through Octavia's driver with ``data_models`` objects, and every claim is seen in
real traffic from the VIP bridge or in the amphora's heartbeats:

- session persistence SOURCE_IP, HTTP_COOKIE and APP_COOKIE, and SOURCE_IP for UDP;
- the algorithms SOURCE_IP (HTTP, TCP and UDP) and LEAST_CONNECTIONS (HTTP and TCP),
  member weights, backup members, an alternate monitor address and port, and an HTTP
  monitor's method, URL and expected codes;
- insert_headers (X-Forwarded-For/Port/Proto) and the listener's timeouts;
- L7 rules HOST_NAME, PATH, FILE_TYPE, HEADER and COOKIE (one inverted, two in one
  policy; compare types EQUAL_TO, STARTS_WITH, REGEX and CONTAINS) with the actions
  REJECT, REDIRECT_PREFIX and REDIRECT_TO_POOL;
- UDP over IPv6: IPv6 members, and one member of each family (and TCP with one of
  each family);
- TCP and UDP listeners on the same port number.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter

import pytest

from amp_image.verify.conformance import backends as servers
from amp_image.verify.conformance import network
from amp_image.verify.conformance.clients import (
    MEMBER_A,
    MEMBER_B,
    NS,
    http_get,
    members_answering,
    wait_until,
)
from amp_image.verify.conformance.heartbeats import ensure_heartbeats, wait_member
from amp_image.verify.conformance.matrix_listeners import (
    CLIENTS,
    CODES_MONITOR,
    HEAD_MONITOR,
    PORTS,
    UDP_LISTENERS,
    make_listeners,
)
from amp_image.verify.conformance.plugs import ensure_plugged


@pytest.fixture(scope="module")
def matrix(octavia, amphora_host, backends, heartbeats):
    """The matrix's listeners on the shared amphora, beside those of the modules before
    it.  It plugs the VIP and member ports, and has the amphora send heartbeats, only
    when no module before it did (-k)."""
    ensure_plugged(octavia, amphora_host)
    ensure_heartbeats(octavia, heartbeats)
    for address in CLIENTS:
        network.VIP_SEGMENT.add_address(address)
    listeners = make_listeners(octavia.topology)
    yield listeners
    for address in CLIENTS:
        network.VIP_SEGMENT.remove_address(address)


def _answers(port: int, tries: int = 6, **kw) -> Counter:
    """Which member answered each of `tries` requests."""
    counts: Counter = Counter()
    for _ in range(tries):
        status, _, body = http_get(port, **kw)
        assert status == 200, body
        counts[body.split()[0]] += 1
    return counts


def test_matrix_listeners_configured_and_started(octavia, matrix, amphora_host):
    """The matrix's listeners (update_amphora_listeners, start): every one listening."""
    octavia.driver.update_amphora_listeners(octavia.lb, octavia.amp)
    octavia.driver.start(octavia.lb, octavia.amp)
    listening = amphora_host.check_output(f"{NS} ss -ltnH")
    for name, port in PORTS.items():
        if name not in UDP_LISTENERS:
            assert f"{network.VIP}:{port}" in listening, (name, listening)
    assert wait_until(lambda: members_answering(PORTS["headers"]) == {MEMBER_A, MEMBER_B},
                      60, "both members behind the matrix's listeners")


# --- session persistence -------------------------------------------------------------

def _each_client_on_one_member(port: int, clients: list[str]) -> None:
    """Each client address always reaches one member, and not all the same one."""
    seen = set()
    for address in clients:
        counts = _answers(port, 4, source=address)
        assert len(counts) == 1, (address, counts)
        seen |= set(counts)
    assert seen == {MEMBER_A, MEMBER_B}, seen


def test_source_ip_persistence_keeps_each_client_on_one_member(matrix):
    """Session persistence SOURCE_IP: each client address stays on one member."""
    _each_client_on_one_member(PORTS["source-ip-persistence"], CLIENTS[:8])


def test_http_cookie_persistence(matrix):
    """Session persistence HTTP_COOKIE: haproxy's SRV cookie pins the client's member."""
    port = PORTS["http-cookie"]
    assert set(_answers(port)) == {MEMBER_A, MEMBER_B}  # without the cookie: both
    _, headers, body = http_get(port)
    cookie = re.search(r"SRV=[^;, ]+", headers.get("set-cookie", ""))
    assert cookie, headers
    pinned = body.split()[0]
    assert _answers(port, headers={"Cookie": cookie[0]}) == Counter({pinned: 6})


def test_app_cookie_persistence(matrix):
    """Session persistence APP_COOKIE: the application's own cookie pins its member."""
    port = PORTS["app-cookie"]
    for member in (MEMBER_A, MEMBER_B):
        # The member's cookie is learnt from its answers (stick store-response) ...
        wait_until(lambda m=member: m in _answers(port), 30, f"{member} answering")
        cookie = {"Cookie": f"{servers.APP_COOKIE}={member}-session"}
        # ... and every request carrying it goes back there.
        assert _answers(port, headers=cookie) == Counter({member: 6})


def test_udp_source_ip_persistence(matrix):
    """Session persistence SOURCE_IP on UDP (LVS persistence_timeout): one member."""
    def every_datagram_answered() -> Counter | None:
        counts = Counter((servers.udp_ask(network.VIP, PORTS["udp-persistence"]) or "?")
                         .split()[0] for _ in range(6))
        return None if "?" in counts else counts
    counts = wait_until(every_datagram_answered, 90,
                        "UDP answers through the persistent listener")
    assert len(counts) == 1, counts


# --- algorithms, weights, backups, monitors ------------------------------------------

@pytest.mark.parametrize("listener", ["source-ip-algorithm", "tcp-source-ip"],
                         ids=["HTTP", "TCP"])
def test_source_ip_algorithm(matrix, listener):
    """Algorithm SOURCE_IP: a hash of the client address picks the member."""
    _each_client_on_one_member(PORTS[listener], CLIENTS[8:])


def _udp_members(vip: str, port: int, tries: int = 6, source: str | None = None) -> set[str]:
    """Which members answered `tries` datagrams ("?" for one that got no answer)."""
    return {(servers.udp_ask(vip, port, source=source) or "?").split()[0]
            for _ in range(tries)}


def test_udp_source_ip_algorithm(matrix):
    """Algorithm SOURCE_IP on UDP (LVS sh): each client address stays on one member."""
    port = PORTS["udp-source-ip"]
    wait_until(lambda: "?" not in _udp_members(network.VIP, port, 4, CLIENTS[0]), 90,
               "UDP answers through the sh listener")
    seen = set()
    for address in CLIENTS[8:]:
        members = _udp_members(network.VIP, port, 4, address)
        assert len(members) == 1 and "?" not in members, (address, members)
        seen |= members
    assert seen == {MEMBER_A, MEMBER_B}, seen


@pytest.mark.parametrize("listener", ["least-connections", "tcp-least-connections"],
                         ids=["HTTP", "TCP"])
def test_least_connections_avoids_the_busy_member(matrix, listener):
    """Algorithm LEAST_CONNECTIONS: new requests go to the member with fewer connections."""
    port = PORTS[listener]
    slow: dict[str, str] = {}
    worker = threading.Thread(target=lambda: slow.update(
        body=http_get(port, f"{servers.SLOW_PATH}5", timeout=15)[2]))
    worker.start()
    time.sleep(1)  # the slow request holds its connection to one member
    quick: Counter = Counter()
    for _ in range(4):
        quick += _answers(port, 1)
        # Until the amphora has closed the last connection it counts as the member's
        # (in TCP mode under TCG that takes a moment): a tie would be round robin.
        time.sleep(0.5)
    worker.join()
    busy = slow["body"].split()[0]
    assert len(quick) == 1 and busy not in quick, (busy, quick)


def test_member_weights(matrix):
    """Member weights 3:1: the heavier member takes three requests in four."""
    counts = _answers(PORTS["weights"], 12)
    assert counts[MEMBER_A] >= 8 and counts[MEMBER_B] >= 2, counts


def test_backup_member_serves_only_when_the_others_are_down(matrix, backends):
    """Backup member: idle while the primary is up, serving when its health monitor
    marks the primary down."""
    port = PORTS["backup"]
    assert wait_until(lambda: _answers(port) == Counter({MEMBER_A: 6}), 60,
                      "the primary alone answering")
    primary = backends[(MEMBER_A, "http")]
    primary.stop()
    try:
        assert wait_until(lambda: _answers(port) == Counter({MEMBER_B: 6}), 60,
                          "the backup answering")
    finally:
        primary.start()
    assert wait_until(lambda: _answers(port) == Counter({MEMBER_A: 6}), 60,
                      "the primary answering again")


def test_alternate_monitor_address_and_port(matrix, heartbeats, backends):
    """Member monitor_address and monitor_port: the health monitor checks there, not
    at the member's own address and port."""
    pool = matrix["monitor-address"].default_pool
    wait_member(heartbeats, pool, 0, "UP")    # A, checked at B's address
    wait_member(heartbeats, pool, 1, "DOWN")  # B, checked at a closed port
    assert _answers(PORTS["monitor-address"]) == Counter({MEMBER_A: 6})
    other = backends[(MEMBER_B, "http")]
    other.stop()  # A's own server still runs; its monitor's target does not
    try:
        wait_member(heartbeats, pool, 0, "DOWN")
    finally:
        other.start()
    wait_member(heartbeats, pool, 0, "UP")


def _haproxy_cfg(octavia, amphora_host) -> str:
    """The haproxy configuration the agent runs for the load balancer."""
    return amphora_host.check_output(f"cat /var/lib/octavia/{octavia.lb.id}/haproxy.cfg")


def _monitor_lines(octavia, amphora_host, pool) -> str:
    config = _haproxy_cfg(octavia, amphora_host)
    return config.split(f"\nbackend {pool.id}")[1].split("\nbackend ")[0]


def test_http_monitor_method_url_and_codes_honoured(octavia, matrix, amphora_host,
                                                    heartbeats):
    """HTTP monitor's method, URL and expected codes: HEAD expecting 501 finds the
    members ONLINE (they answer HEAD with 501), GET expecting 404 finds them ERROR
    (they answer 200), and that listener then has no member to serve."""
    head = matrix["monitor-head"].default_pool
    codes = matrix["monitor-codes"].default_pool
    for pool, monitor in ((head, HEAD_MONITOR), (codes, CODES_MONITOR)):
        lines = _monitor_lines(octavia, amphora_host, pool)
        assert f"option httpchk {monitor['http_method']} {monitor['url_path']}" in lines, lines
        assert f"http-check expect rstatus {monitor['expected_codes']}" in lines, lines
    for index in (0, 1):
        wait_member(heartbeats, head, index, "UP")
        wait_member(heartbeats, codes, index, "DOWN")
    assert set(_answers(PORTS["monitor-head"])) == {MEMBER_A, MEMBER_B}
    assert http_get(PORTS["monitor-codes"])[0] == 503


# --- headers and timeouts ------------------------------------------------------------

def test_insert_headers(matrix):
    """insert_headers: X-Forwarded-For, X-Forwarded-Port and X-Forwarded-Proto."""
    _, _, body = http_get(PORTS["headers"], source=CLIENTS[0])
    echoed = dict(line.split(": ", 1) for line in body.splitlines()[1:])
    assert echoed.get("x-forwarded-for") == CLIENTS[0], body
    assert echoed.get("x-forwarded-port") == str(PORTS["headers"]), body
    assert echoed.get("x-forwarded-proto") == "http", body


def test_listener_timeouts_rendered(octavia, matrix, amphora_host):
    """Listener timeouts: all four in the haproxy configuration the agent runs."""
    config = _haproxy_cfg(octavia, amphora_host)
    section = config.split(f"frontend {matrix['timeouts'].id}")[1].split("\nfrontend ")[0]
    for line in ("timeout client 2000", "tcp-request inspect-delay 500",
                 "timeout connect 1000", "timeout server 1500"):
        assert line in config, (line, section)
    assert "timeout client 2000" in section, section


def test_member_data_timeout_answers_504(matrix):
    """timeout_member_data: a member slower than it gets the client a 504."""
    started = time.monotonic()
    status, _, _ = http_get(PORTS["timeouts"], f"{servers.SLOW_PATH}4", timeout=10)
    assert status == 504 and time.monotonic() - started < 3.5, status


def test_client_data_timeout_closes_an_idle_client(matrix):
    """timeout_client_data: a client that stops sending is cut off."""
    with socket.create_connection((network.VIP, PORTS["timeouts"]), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n")  # and never the end of the request
        started = time.monotonic()
        answer = conn.recv(4096)  # a 408, or the close itself
        waited = time.monotonic() - started
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert 1.5 < waited < 6, waited


# --- L7 ----------------------------------------------------------------------------

def test_l7_reject_with_two_rules_one_inverted(matrix):
    """L7 REJECT on PATH STARTS_WITH and an inverted HEADER rule, both to match."""
    port = PORTS["l7"]
    assert http_get(port, "/private/x")[0] == 403
    assert http_get(port, "/private/x", headers={"X-Token": "secret"})[0] == 200
    assert http_get(port, "/public")[0] == 200


def test_l7_redirect_prefix(matrix):
    """L7 REDIRECT_PREFIX on PATH: the path kept under the new prefix."""
    status, headers, _ = http_get(PORTS["l7"], "/legacy/page")
    assert status == 301 and headers.get("location") == "https://new.example/legacy/page", \
        (status, headers)


@pytest.mark.parametrize("request_kw,member", [
    ({"headers": {"Host": "b.example"}}, MEMBER_B),
    ({"path": "/img/logo.png"}, MEMBER_A),
    ({"headers": {"Cookie": "tier=gold"}}, MEMBER_B),
    ({"headers": {"X-Tenant": "blue-7"}}, MEMBER_A),
], ids=["HOST_NAME", "FILE_TYPE", "COOKIE", "HEADER-REGEX"])
def test_l7_redirect_to_pool(matrix, request_kw, member):
    """L7 REDIRECT_TO_POOL: a matching request goes to the policy's one-member pool."""
    assert _answers(PORTS["l7"], **request_kw) == Counter({member: 6})


def test_l7_compare_type_contains(matrix):
    """L7 rule compare type CONTAINS (PATH): a path holding the value goes to the
    policy's pool; one that does not, to the default pool."""
    assert _answers(PORTS["l7"], path="/shop/cart/7") == Counter({MEMBER_B: 6})
    assert set(_answers(PORTS["l7"], path="/shop/carts")) == {MEMBER_A, MEMBER_B}


def test_l7_unmatched_requests_reach_the_default_pool(matrix):
    """L7: a request no rule matches reaches the default pool's two members."""
    assert set(_answers(PORTS["l7"], headers={"Host": "a.example"})) == {MEMBER_A, MEMBER_B}


# --- UDP over IPv6 ----------------------------------------------------------------

def test_udp_over_ipv6(matrix):
    """UDP over IPv6: a UDP listener with IPv6 members (UDP-CONNECT monitor checking
    them over IPv6) answers through the IPv6 VIP from both members."""
    port = PORTS["udp-ipv6-members"]
    assert wait_until(lambda: _udp_members(network.VIP6, port) == {MEMBER_A, MEMBER_B}, 90,
                      "both IPv6 members through UDP on the IPv6 VIP")


@pytest.mark.parametrize("vip", [network.VIP, network.VIP6], ids=["IPv4 VIP", "IPv6 VIP"])
def test_tcp_mixed_members(matrix, vip):
    """TCP with an IPv4 and an IPv6 member (haproxy): both answer through either VIP."""
    seen = wait_until(lambda: members_answering(PORTS["tcp-mixed-members"], vip=vip), 60,
                      f"the mixed TCP pool through {vip}")
    assert seen == {MEMBER_A, MEMBER_B}, seen


def test_udp_mixed_members_by_vip_family(matrix):
    """UDP with an IPv4 and an IPv6 member: LVS has a virtual server per VIP family,
    each with that family's members: the IPv4 VIP reaches member A (IPv4), the IPv6
    VIP member B (IPv6)."""
    port = PORTS["udp-mixed-members"]
    assert wait_until(lambda: _udp_members(network.VIP, port) == {MEMBER_A}, 90,
                      "member A alone through the IPv4 VIP")
    assert wait_until(lambda: _udp_members(network.VIP6, port) == {MEMBER_B}, 90,
                      "member B alone through the IPv6 VIP")


# --- TCP and UDP on one port --------------------------------------------------------

def test_tcp_and_udp_listeners_on_the_same_port(matrix):
    """TCP and UDP listeners on the same port number: both carry traffic."""
    port = PORTS["same-port"]
    assert members_answering(port) == {MEMBER_A, MEMBER_B}
    assert wait_until(lambda: _udp_members(network.VIP, port) == {MEMBER_A, MEMBER_B}, 90,
                      "both members through UDP on the TCP listener's port")

