"""Log offloading on the shared amphora: what an operator gets from Octavia's
``[amphora_agent] tenant_log_targets``, ``admin_log_targets``, ``log_protocol`` and
``disable_local_log_storage``.

The shared amphora boots with the controller's own ``10-rsyslog.conf`` on its config
drive (conftest.py, log_offload.py): both targets on this run's receiver
(log_receiver.py; the guest's 10.0.2.2), UDP (Octavia's default), and no local log
storage.  This module adds one HTTP listener of its own (port 7000) through the
driver, sends real requests through it, and reads what arrives at the targets:

- the tenant flow log of each request, in Octavia's ``user_log_format``, its fields
  (project, load balancer, listener, client address and port, request, status,
  bytes, pool, member, termination) those of the request sent;
- the administrative logs (LOCAL1): haproxy's, the agent's, and anything logged to
  the socket they use;
- nothing of them written on the amphora's disk;
- the same over TCP: the configuration rendered again with ``log_protocol = TCP`` and
  installed as cloud-init installs the drive's (the file, then an rsyslog restart).

Runs after test_ipv6.py and before test_matrix.py on the same VM; its listener, on a
port of its own, goes with the VM as theirs do.
"""

from __future__ import annotations

import base64
import socket
import uuid

import pytest
from octavia.common import constants as consts

from amp_image.verify.configdrive import RSYSLOG_CONF
from amp_image.verify.conformance import backends as servers
from amp_image.verify.conformance import controller, log_offload, network
from amp_image.verify.conformance.clients import MEMBER_A, MEMBER_B, wait_until
from amp_image.verify.conformance.log_receiver import LogReceiver, Received
from amp_image.verify.conformance.plugs import ensure_plugged
from amp_image.verify.conformance.syslog_lines import (
    INFO,
    FlowLog,
    parse_flow_log,
    rsyslog_files,
)

PORT = 7000  # no other module's
CLOSED_PORT = 8  # nothing listens there on the members: member B's monitor fails
OCTAVIA_SOCKET = "/run/rsyslog/octavia/log"  # where haproxy and the agent log
USER_FACILITY, ADMIN_FACILITY = 0, 1  # Octavia's defaults: LOCAL0 and LOCAL1
ARRIVAL = 60  # seconds for a message to reach its target
BYTE_SLACK = 24  # haproxy's byte counts against the client's (see assert_flow_fields)


@pytest.fixture(scope="module")
def listener(octavia, amphora_host, backends):
    """One HTTP listener, its pool's member B monitored at a closed port (haproxy
    marks it DOWN and logs that as an administrative message)."""
    ensure_plugged(octavia, amphora_host)
    pool = controller.pool(octavia.topology, consts.PROTOCOL_HTTP, servers.HTTP_PORT,
                           consts.HEALTH_MONITOR_HTTP,
                           members={MEMBER_A: {}, MEMBER_B: {"monitor_port": CLOSED_PORT}},
                           delay=1, timeout=1)
    new = controller.listener(octavia.topology, consts.PROTOCOL_HTTP, PORT, pool)
    octavia.driver.update_amphora_listeners(octavia.lb, octavia.amp)
    octavia.driver.start(octavia.lb, octavia.amp)
    wait_until(lambda: Sent(f"/ready-{uuid.uuid4().hex}").status == 200, 60,
               "the logging listener answering")
    return new


class Sent:
    """One request from the VIP bridge's client address, and what came back."""

    def __init__(self, path: str):
        self.path = path
        self.request = f"GET {path} HTTP/1.0\r\nHost: vip\r\n\r\n".encode()
        with socket.create_connection((network.VIP, PORT), timeout=5,
                                      source_address=(network.VIP_GATEWAY, 0)) as conn:
            self.client_port = conn.getsockname()[1]
            conn.sendall(self.request)
            self.answer = b""
            while chunk := conn.recv(4096):
                self.answer += chunk
        head, _, body = self.answer.partition(b"\r\n\r\n")
        self.status = int(head.split()[1])
        self.member = body.split()[0].decode() if body.strip() else ""


def marker(kind: str) -> str:
    return f"amp-image-{kind}-{uuid.uuid4().hex}"


def flow_log_of(sent: Sent, transport: str):
    def matches(received: Received) -> bool:
        flow = parse_flow_log(received.message.text) if received.message else None
        return (received.target == "tenant" and received.transport == transport
                and flow is not None and sent.path in flow.request)
    return matches


def wait_flow_log(log_receiver: LogReceiver, sent: Sent, transport: str) -> Received:
    return log_receiver.wait_for(flow_log_of(sent, transport), ARRIVAL,
                                 f"the tenant flow log of GET {sent.path} over {transport}")


def log_to_octavia_socket(amphora_host, facility: int, text: str) -> None:
    """A message as haproxy and the agent log one: to the octavia socket, LOCALn."""
    amphora_host.run_expect([0], f"logger -u {OCTAVIA_SOCKET} -p local{facility}.info "
                                 f"-t amp-image {text}")


def admin_text(log_receiver: LogReceiver, text: str, transport: str, since: int = 0
               ) -> Received:
    return log_receiver.wait_for(
        lambda r: (r.target == "admin" and r.transport == transport and r.message is not None
                   and text in r.message.text), ARRIVAL,
        f"{text!r} at the admin target over {transport}", since)


def install_rsyslog_conf(amphora_host, text: str) -> None:
    """As cloud-init installs the config drive's file: write it, restart rsyslog."""
    encoded = base64.b64encode(text.encode()).decode()
    amphora_host.run_expect([0], f"echo {encoded} | base64 -d > {RSYSLOG_CONF} && "
                                 "systemctl restart rsyslog")


# --- the configuration ---------------------------------------------------------------

def test_controller_rsyslog_conf_from_the_config_drive(amphora_host):
    """Log offloading configuration: the controller's 10-rsyslog.conf (LoggingJinjaTemplater,
    tenant and admin targets, disable_local_log_storage) in place and valid for rsyslog."""
    on_disk = amphora_host.file(RSYSLOG_CONF).content_string
    # Line breaks aside: the image splits the line Octavia's template glues
    # (amphora-agent's amphora-rsyslog-conf-fix).
    assert "".join(on_disk.split()) == "".join(log_offload.rsyslog_conf().split()), on_disk
    check = amphora_host.run("rsyslogd -N1 2>&1")
    assert "10-rsyslog.conf" not in check.stdout, check.stdout


# --- UDP, the config drive's protocol ----------------------------------------------

def test_tenant_flow_log_arrives_in_octavias_format(octavia, listener, log_receiver,
                                                    amphora, record_property):
    """Tenant flow log offloading (tenant_log_targets, UDP): one entry per request, in
    Octavia's user_log_format, with the request's own values."""
    sent = Sent(f"/flow-{uuid.uuid4().hex}")
    assert sent.status == 200, sent.answer[:200]
    received = wait_flow_log(log_receiver, sent, "UDP")
    record_property("flow_log", received.raw.decode(errors="replace"))
    header = received.message
    assert (header.local_facility, header.severity, header.tag) == \
        (USER_FACILITY, INFO, "haproxy"), received.raw
    assert header.hostname == f"amphora-{amphora.amphora_id}", received.raw
    flow = parse_flow_log(header.text)
    assert_flow_fields(flow, sent, octavia.lb.id, listener, member(listener, sent.member).id)


def member(listener, name: str):
    """The listener's pool member of a backend, by the name it answers with."""
    return next(m for m in listener.default_pool.members
                if m.ip_address == network.BACKENDS[name])


def assert_flow_fields(flow: FlowLog, sent: Sent, lb_id: str, listener, member_id: str) -> None:
    expected = {"project_id": controller.PROJECT, "lb_id": lb_id, "listener_id": listener.id,
                "client_ip": network.VIP_GATEWAY, "client_port": str(sent.client_port),
                "request": f"GET {sent.path} HTTP/1.0", "status": "200",
                "backend": f"{listener.default_pool.id}:{listener.id}",
                "member_id": member_id}
    seen = {name: getattr(flow, name) for name in expected}
    assert seen == expected, flow
    # haproxy counts the bytes of the messages as it handles them (it rewrites HTTP/1.0
    # headers), so its counts come near the client's, not to the byte: seen here, 222
    # read for 227 received and 77 uploaded for 66 sent.
    for counted, client_side in ((flow.bytes_read, sent.answer), (flow.bytes_uploaded,
                                                                  sent.request)):
        assert abs(int(counted) - len(client_side)) <= BYTE_SLACK, (flow, len(client_side))
    assert flow.total_ms.isdigit() and flow.termination.startswith("--"), flow


def test_admin_logs_arrive(octavia, listener, log_receiver, amphora_host):
    """Administrative log offloading (admin_log_targets, UDP): haproxy's and the agent's
    LOCAL1 messages reach the admin target."""
    member_b = member(listener, MEMBER_B)
    haproxy = log_receiver.wait_for(
        lambda r: (r.target == "admin" and r.message is not None
                   and r.message.tag == "haproxy" and member_b.id in r.message.text),
        ARRIVAL, f"haproxy's message about member {member_b.id} (DOWN) at the admin target")
    assert haproxy.message.local_facility == ADMIN_FACILITY, haproxy.raw
    start = log_receiver.count()
    octavia.client.get_details(octavia.amp)  # the agent logs each request it serves
    admin_text(log_receiver, "/details", "UDP", since=start)
    text = marker("admin")
    log_to_octavia_socket(amphora_host, ADMIN_FACILITY, text)
    assert admin_text(log_receiver, text, "UDP").message.local_facility == ADMIN_FACILITY
    # Each target gets its own facility only.
    for target, facility in (("tenant", ADMIN_FACILITY), ("admin", USER_FACILITY)):
        assert not log_receiver.matching(lambda r, t=target, f=facility: (
            r.target == t and r.message is not None and r.message.local_facility == f))


def test_nothing_written_on_the_amphora_disk(listener, log_receiver, amphora_host,
                                             record_property):
    """disable_local_log_storage: the offloaded logs are written nowhere on the amphora:
    no trace of them under /var/log, and no file of rsyslog's own grows."""
    before = file_sizes(amphora_host)
    sent = Sent(f"/local-{uuid.uuid4().hex}")
    admin = marker("admin-local")
    log_to_octavia_socket(amphora_host, ADMIN_FACILITY, admin)
    wait_flow_log(log_receiver, sent, "UDP")
    admin_text(log_receiver, admin, "UDP")
    traces = amphora_host.run(
        f"grep -rlF -D skip -e {sent.path} -e {admin} /var/log").stdout.split()
    grown = sorted(path for path, size in file_sizes(amphora_host).items()
                   if size > before.get(path, 0))
    record_property("grown_under_var_log", grown)
    config = amphora_host.run("cat /etc/rsyslog.conf /etc/rsyslog.d/*.conf").stdout
    assert traces == [], f"offloaded logs written on the amphora: {traces}"
    assert sorted(rsyslog_files(config) & set(grown)) == [], grown


def file_sizes(amphora_host) -> dict[str, int]:
    out = amphora_host.check_output("find /var/log -type f -printf '%s %p\\n'")
    return {path: int(size) for size, path in (line.split(" ", 1) for line in out.splitlines())}


# --- TCP ---------------------------------------------------------------------------

def test_tcp_log_protocol(octavia, listener, log_receiver, amphora_host):
    """log_protocol TCP: the tenant flow log and the admin logs over TCP, from the
    controller's configuration rendered again with TCP."""
    install_rsyslog_conf(amphora_host, log_offload.rsyslog_conf("TCP"))
    try:
        sent = wait_until(lambda: checked(Sent(f"/tcp-{uuid.uuid4().hex}")), 30,
                          "the listener answering after the rsyslog restart")
        flow = parse_flow_log(wait_flow_log(log_receiver, sent, "TCP").message.text)
        assert flow.listener_id == listener.id and flow.client_port == str(sent.client_port)
        text = marker("admin-tcp")
        log_to_octavia_socket(amphora_host, ADMIN_FACILITY, text)
        admin_text(log_receiver, text, "TCP")
    finally:
        install_rsyslog_conf(amphora_host, log_offload.rsyslog_conf())


def checked(sent: Sent) -> Sent:
    assert sent.status == 200, sent.answer[:200]
    return sent
