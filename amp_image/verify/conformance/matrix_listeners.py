"""The scenario matrix's load balancer as the controller's objects (test_matrix.py):
one listener per scenario, each on its own port, with its pool, members, monitor
and policies.  Building them sends nothing to the amphora."""

from __future__ import annotations

from octavia.common import constants as consts

from amp_image.verify.conformance import backends as servers
from amp_image.verify.conformance import controller, network
from amp_image.verify.conformance.clients import MEMBER_A, MEMBER_B

HTTP, TCP, UDP = consts.PROTOCOL_HTTP, consts.PROTOCOL_TCP, consts.PROTOCOL_UDP
SOURCE_IP, HTTP_COOKIE, APP_COOKIE = (consts.SESSION_PERSISTENCE_SOURCE_IP,
                                      consts.SESSION_PERSISTENCE_HTTP_COOKIE,
                                      consts.SESSION_PERSISTENCE_APP_COOKIE)
PORTS = {"source-ip-persistence": 80, "http-cookie": 81, "app-cookie": 82,
         "source-ip-algorithm": 83, "least-connections": 84, "weights": 85, "backup": 86,
         "monitor-address": 87, "headers": 88, "timeouts": 89, "l7": 90,
         "monitor-head": 91, "monitor-codes": 92, "tcp-source-ip": 93,
         "tcp-least-connections": 94, "tcp-mixed-members": 95,
         "same-port": 5354, "udp-persistence": 5355, "udp-source-ip": 5356,
         "udp-ipv6-members": 5357, "udp-mixed-members": 5358}
# The UDP listeners (no TCP socket on the VIP).
UDP_LISTENERS = ("udp-persistence", "udp-source-ip", "udp-ipv6-members", "udp-mixed-members")
# Client addresses on the VIP bridge besides the gateway (SOURCE_IP hashing).
CLIENTS = [f"10.0.3.{host}" for host in range(100, 116)]
CLOSED_PORT = 8  # nothing listens there on the members
TIMEOUTS = {"timeout_client_data": 2000, "timeout_member_connect": 1000,
            "timeout_member_data": 1500, "timeout_tcp_inspect": 500}
MONITOR = {"delay": 1, "timeout": 1}
# The members answer GET only: HEAD gets 501 (http.server's "Unsupported method"), so
# a monitor sending HEAD and expecting 501 finds them UP only if both are honoured,
# and one expecting 404 from GET finds them DOWN (they answer 200).
HEAD_MONITOR = {"http_method": "HEAD", "url_path": "/check/head", "expected_codes": "501"}
CODES_MONITOR = {"http_method": "GET", "url_path": "/check/codes", "expected_codes": "404"}
UDP_MONITOR = {"delay": 3, "timeout": 3}  # see test_conformance.py's lb fixture


def http_listener(topology, port: int, pool, **kw):
    return controller.listener(topology, HTTP, port, pool, **kw)


def l7_policies(topology, listener) -> None:
    only_a = controller.pool(topology, HTTP, servers.HTTP_PORT, members={MEMBER_A: {}})
    only_b = controller.pool(topology, HTTP, servers.HTTP_PORT, members={MEMBER_B: {}})
    rule = controller.l7policy
    starts, equal = consts.L7RULE_COMPARE_TYPE_STARTS_WITH, consts.L7RULE_COMPARE_TYPE_EQUAL_TO
    rule(listener, consts.L7POLICY_ACTION_REJECT, [
        {"type": consts.L7RULE_TYPE_PATH, "compare_type": starts, "value": "/private"},
        {"type": consts.L7RULE_TYPE_HEADER, "compare_type": equal, "key": "X-Token",
         "value": "secret", "invert": True}], position=1)
    rule(listener, consts.L7POLICY_ACTION_REDIRECT_PREFIX, [
        {"type": consts.L7RULE_TYPE_PATH, "compare_type": starts, "value": "/legacy"}],
        position=2, redirect_prefix="https://new.example", redirect_http_code=301)
    rule(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_HOST_NAME, "compare_type": equal,
         "value": "b.example"}], position=3, redirect_pool=only_b)
    rule(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_FILE_TYPE, "compare_type": equal, "value": "png"}],
        position=4, redirect_pool=only_a)
    rule(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_COOKIE, "compare_type": equal, "key": "tier",
         "value": "gold"}], position=5, redirect_pool=only_b)
    rule(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_HEADER, "compare_type": consts.L7RULE_COMPARE_TYPE_REGEX,
         "key": "X-Tenant", "value": "^blue-"}], position=6, redirect_pool=only_a)
    rule(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_PATH, "compare_type": consts.L7RULE_COMPARE_TYPE_CONTAINS,
         "value": "/cart/"}], position=7, redirect_pool=only_b)


def make_listeners(topology) -> dict[str, object]:
    """The matrix's listeners, by name; each default pool holds both members unless
    said otherwise."""
    pool = controller.pool
    web = servers.HTTP_PORT
    made = {
        "source-ip-persistence": pool(topology, HTTP, web, persistence={"type": SOURCE_IP}),
        "http-cookie": pool(topology, HTTP, web, persistence={"type": HTTP_COOKIE}),
        "app-cookie": pool(topology, HTTP, web, persistence={
            "type": APP_COOKIE, "cookie_name": servers.APP_COOKIE}),
        "source-ip-algorithm": pool(topology, HTTP, web, algorithm=consts.LB_ALGORITHM_SOURCE_IP),
        "least-connections": pool(topology, HTTP, web,
                                  algorithm=consts.LB_ALGORITHM_LEAST_CONNECTIONS),
        "weights": pool(topology, HTTP, web, members={MEMBER_A: {"weight": 3},
                                                      MEMBER_B: {"weight": 1}}),
        "backup": pool(topology, HTTP, web, consts.HEALTH_MONITOR_HTTP,
                       members={MEMBER_A: {}, MEMBER_B: {"backup": True}}, **MONITOR),
        # A is checked at B's address, B at a port where nothing listens.
        "monitor-address": pool(topology, HTTP, web, consts.HEALTH_MONITOR_HTTP, members={
            MEMBER_A: {"monitor_address": network.BACKENDS[MEMBER_B], "monitor_port": web},
            MEMBER_B: {"monitor_port": CLOSED_PORT}}, **MONITOR),
        "headers": pool(topology, HTTP, web),
        "timeouts": pool(topology, HTTP, web),
        "l7": pool(topology, HTTP, web),
        "monitor-head": pool(topology, HTTP, web, consts.HEALTH_MONITOR_HTTP,
                             **MONITOR, **HEAD_MONITOR),
        "monitor-codes": pool(topology, HTTP, web, consts.HEALTH_MONITOR_HTTP,
                              **MONITOR, **CODES_MONITOR),
    }
    listeners = {name: http_listener(topology, PORTS[name], made[name])
                 for name in ("source-ip-persistence", "http-cookie", "app-cookie",
                              "source-ip-algorithm", "least-connections", "weights",
                              "backup", "monitor-address", "l7", "monitor-head",
                              "monitor-codes")}
    listeners["headers"] = http_listener(
        topology, PORTS["headers"], made["headers"],
        insert_headers={"X-Forwarded-For": "true", "X-Forwarded-Port": "true",
                        "X-Forwarded-Proto": "true"})
    listeners["timeouts"] = http_listener(topology, PORTS["timeouts"], made["timeouts"],
                                           **TIMEOUTS)
    l7_policies(topology, listeners["l7"])
    same = PORTS["same-port"]
    listeners["same-port-tcp"] = controller.listener(topology, TCP, same,
                                                     pool(topology, TCP, web))
    listeners["same-port-udp"] = controller.listener(
        topology, UDP, same, pool(topology, UDP, servers.UDP_PORT,
                                  consts.HEALTH_MONITOR_UDP_CONNECT, **UDP_MONITOR))
    listeners["udp-persistence"] = controller.listener(
        topology, UDP, PORTS["udp-persistence"],
        pool(topology, UDP, servers.UDP_PORT, consts.HEALTH_MONITOR_UDP_CONNECT,
             persistence={"type": SOURCE_IP, "persistence_timeout": 60,
                          "persistence_granularity": "255.255.255.255"}, **UDP_MONITOR))
    for name, algorithm in (("tcp-source-ip", consts.LB_ALGORITHM_SOURCE_IP),
                            ("tcp-least-connections", consts.LB_ALGORITHM_LEAST_CONNECTIONS)):
        listeners[name] = controller.listener(topology, TCP, PORTS[name],
                                              pool(topology, TCP, web, algorithm=algorithm))
    listeners["udp-source-ip"] = controller.listener(
        topology, UDP, PORTS["udp-source-ip"],
        pool(topology, UDP, servers.UDP_PORT, consts.HEALTH_MONITOR_UDP_CONNECT,
             algorithm=consts.LB_ALGORITHM_SOURCE_IP, **UDP_MONITOR))
    # UDP over IPv6: the members' IPv6 addresses (checked over IPv6 by the monitor), and
    # one of each family (LVS keeps a group per VIP family: each reaches its own).
    listeners["udp-ipv6-members"] = controller.listener(
        topology, UDP, PORTS["udp-ipv6-members"],
        pool(topology, UDP, servers.UDP_PORT, consts.HEALTH_MONITOR_UDP_CONNECT,
             addresses=network.BACKENDS6, **UDP_MONITOR))
    listeners["udp-mixed-members"] = controller.listener(
        topology, UDP, PORTS["udp-mixed-members"],
        pool(topology, UDP, servers.UDP_PORT, addresses=network.MIXED_BACKENDS))
    listeners["tcp-mixed-members"] = controller.listener(
        topology, TCP, PORTS["tcp-mixed-members"],
        pool(topology, TCP, web, addresses=network.MIXED_BACKENDS))
    return listeners
