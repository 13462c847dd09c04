"""Log offloading's parts that need no VM: the syslog lines rsyslog forwards, Octavia's
tenant flow log, the receiver, and the controller's rsyslog configuration (rendered
by octavia's own templater in the conformance harness venv, when it exists)."""

import os
import socket
import subprocess
import textwrap

import pytest
from conftest import ROOT

from amp_image.verify.conformance import harness_venv
from amp_image.verify.conformance.log_receiver import LogReceiver
from amp_image.verify.conformance.syslog_lines import (
    LOCAL0,
    parse_flow_log,
    parse_message,
    rsyslog_files,
    split_stream,
)

# Forwarded by rsyslogd 8.2302 (omfwd, UDP) from messages logged to the octavia socket
# with logger -u: the tenant rule (local0.=info) and the admin rule (local1.*).
FORWARDED_TENANT = b"<134>Dec  7 16:09:50 vm haproxy: tenant-flow-marker"
FORWARDED_ADMIN = b"<141>Dec  7 16:09:50 vm haproxy: admin-haproxy-marker"
FORWARDED_AGENT = b"<142>Dec  7 16:09:50 vm amphora-agent: admin-agent-marker"
# Octavia's log offloading guide: a tenant flow log entry as an rsyslog receiver gets it.
GUIDE_FLOW = (
    '5408b89aa45b48c69a53dca1aaec58db fd8f23df-960b-4b12-ba62-2b1dff661ee7 '
    '261ecfc2-9e8e-4bba-9ec2-3c903459a895 172.24.4.1 41152 12/Jun/2019:00:44:13.030 '
    '"GET / HTTP/1.1" 200 76 73 - "" e37e0e04-68a3-435b-876c-cffe4f2138a4 '
    '6f2720b3-27dc-4496-9039-1aafe2fee105 4 --')
GUIDE_LINE = ("<134>Jun 12 00:44:13 amphora-3e0239c3-5496-4215-b76c-6abbe18de573 "
              "haproxy[1644]: " + GUIDE_FLOW).encode()


def test_rfc3164_lines_as_rsyslog_forwards_them():
    tenant, admin, agent = map(parse_message, (FORWARDED_TENANT, FORWARDED_ADMIN,
                                               FORWARDED_AGENT))
    assert (tenant.facility, tenant.severity, tenant.local_facility) == (LOCAL0, 6, 0)
    assert (tenant.timestamp, tenant.hostname, tenant.tag, tenant.pid, tenant.text) == \
        ("Dec  7 16:09:50", "vm", "haproxy", "", "tenant-flow-marker")
    assert (admin.local_facility, admin.severity, admin.tag) == (1, 5, "haproxy")
    assert (agent.local_facility, agent.severity, agent.tag) == (1, 6, "amphora-agent")
    guide = parse_message(GUIDE_LINE + b"\n")
    assert (guide.hostname, guide.tag, guide.pid) == \
        ("amphora-3e0239c3-5496-4215-b76c-6abbe18de573", "haproxy", "1644")
    assert guide.text == GUIDE_FLOW


def test_rfc5424_line():
    line = ("<134>1 2026-12-07T16:09:50.718266+00:00 amphora-1 haproxy 1644 - - "
            "\ufeffhello there").encode()
    message = parse_message(line)
    assert (message.local_facility, message.timestamp, message.hostname, message.tag,
            message.pid, message.text) == (0, "2026-12-07T16:09:50.718266+00:00",
                                           "amphora-1", "haproxy", "1644", "hello there")
    structured = parse_message(b'<142>1 - host app - ID7 [x@1 a="b\\]"][y@2] text')
    assert (structured.pid, structured.text) == ("", "text")


def test_not_syslog():
    assert parse_message(b"hello") is None
    assert parse_message(b"<134>garbage") is None


def test_tcp_framing_line_feed_and_octet_counted():
    stream = FORWARDED_TENANT + b"\n" + FORWARDED_ADMIN + b"\n" + FORWARDED_AGENT[:20]
    frames, rest = split_stream(stream)
    assert frames == [FORWARDED_TENANT, FORWARDED_ADMIN] and rest == FORWARDED_AGENT[:20]
    counted = b"%d %s%d %s" % (len(FORWARDED_TENANT), FORWARDED_TENANT,
                               len(FORWARDED_ADMIN), FORWARDED_ADMIN[:10])
    frames, rest = split_stream(counted)
    assert frames == [FORWARDED_TENANT] and rest.endswith(FORWARDED_ADMIN[:10])


def test_flow_log_fields_in_octavias_format():
    flow = parse_flow_log(GUIDE_FLOW)
    assert (flow.project_id, flow.lb_id, flow.listener_id) == (
        "5408b89aa45b48c69a53dca1aaec58db", "fd8f23df-960b-4b12-ba62-2b1dff661ee7",
        "261ecfc2-9e8e-4bba-9ec2-3c903459a895")
    assert (flow.client_ip, flow.client_port, flow.time, flow.request, flow.status) == (
        "172.24.4.1", "41152", "12/Jun/2019:00:44:13.030", "GET / HTTP/1.1", "200")
    assert (flow.bytes_read, flow.bytes_uploaded, flow.ssl_verify, flow.ssl_dn) == \
        ("76", "73", "-", "")
    assert (flow.pool_id, flow.member_id, flow.total_ms, flow.termination) == (
        "e37e0e04-68a3-435b-876c-cffe4f2138a4", "6f2720b3-27dc-4496-9039-1aafe2fee105",
        "4", "--")
    # Today's backend name is pool_id:listener_id.
    today = parse_flow_log(GUIDE_FLOW.replace("2138a4 ", "2138a4:listener-1 "))
    assert (today.pool_id, today.backend) == ("e37e0e04-68a3-435b-876c-cffe4f2138a4",
                                              "e37e0e04-68a3-435b-876c-cffe4f2138a4:listener-1")
    assert parse_flow_log("admin-haproxy-marker") is None


def test_rsyslog_files_of_debians_configuration():
    config = textwrap.dedent("""\
        # /var/log/commented.log
        *.*;auth,authpriv.none\t\t-/var/log/syslog
        auth,authpriv.*\t\t\t/var/log/auth.log
        :programname, startswith, "haproxy" {
          /var/log/haproxy.log
          stop
        }
        action(type="omfile" file="/var/log/omfile.log")
        *.emerg\t\t\t\t:omusrmsg:*
        """)
    assert rsyslog_files(config) == {"/var/log/syslog", "/var/log/auth.log",
                                     "/var/log/haproxy.log", "/var/log/omfile.log"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_receiver_keeps_udp_and_tcp_messages_by_target():
    port = free_port()
    receiver = LogReceiver({"tenant": port}).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(FORWARDED_TENANT, ("127.0.0.1", port))
        with socket.create_connection(("127.0.0.1", port)) as tcp:
            tcp.sendall(FORWARDED_ADMIN + b"\n" + GUIDE_LINE[:30])
            tcp.sendall(GUIDE_LINE[30:] + b"\n")
        got = receiver.wait_for(lambda r: r.transport == "TCP" and r.message is not None
                                and r.message.pid == "1644", 10, "the guide's line")
        assert parse_flow_log(got.message.text).client_port == "41152"
        assert {(r.target, r.transport, r.raw) for r in receiver.received()} == {
            ("tenant", "UDP", FORWARDED_TENANT), ("tenant", "TCP", FORWARDED_ADMIN),
            ("tenant", "TCP", GUIDE_LINE)}
        assert receiver.count() == 3
        assert len(receiver.matching(lambda r: r.transport == "TCP")) == 2
        assert receiver.matching(lambda r: True, since=3) == []
        with pytest.raises(AssertionError, match="no log message with nothing"):
            receiver.wait_for(lambda r: False, 1, "nothing")
    finally:
        receiver.stop()


RENDER = """
from amp_image.verify.conformance import log_offload
print(log_offload.rsyslog_conf("TCP"))
print("=====")
print(log_offload.rsyslog_conf())
print("=====")
print(log_offload.CONF.amphora_agent.admin_log_targets, log_offload.CONF.amphora_agent.log_protocol)
"""


def test_rendering_with_the_controllers_templater():
    # The conformance harness's venv (made here if no run made it yet; a lane booting
    # the conformance run at the same time waits for it).
    harness_python = harness_venv.ensure("19.0.0")
    out = subprocess.run([str(harness_python), "-W", "ignore", "-c", RENDER],
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, check=True).stdout
    tcp, udp, left = out.split("=====\n")
    for text, protocol in ((tcp, "TCP"), (udp, "UDP")):
        assert text.count(f'protocol="{protocol}"') == 2, text
        assert 'target="10.0.2.2"\n         port="10514"' in text
        assert 'target="10.0.2.2"\n         port="10515"' in text
        assert "local0.=info call tenant_forwarding\n" in text
        # Octavia 19.0.0's template glues disable_local_log_storage's "*.* stop" to the
        # admin rule (forward_all_logs off): rsyslog refuses the line and keeps logging
        # locally.  The amphora-agent element splits it (docs/conformance.md).
        assert text.rstrip().endswith("local1.* call admin_forwarding*.* stop"), text
    assert left.split() == ["None", "UDP"]  # the overrides were for the rendering only


FIX = ROOT / "amp_image/elements/amphora-agent/static/usr/local/bin/amphora-rsyslog-conf-fix"


def test_the_glued_stop_rule_is_split(tmp_path):
    """amphora-rsyslog-conf-fix (rsyslog.service's ExecStartPre) splits the line
    Octavia 19.0.0 renders, and leaves any other file as it is."""
    glued = tmp_path / "glued.conf"
    glued.write_text("}\nlocal1.* call admin_forwarding*.* stop")
    subprocess.run([str(FIX), str(glued)], check=True)
    assert glued.read_text() == "}\nlocal1.* call admin_forwarding\n*.* stop"
    for text in ("local0.=info call tenant_forwarding\n*.* stop",
                 "*.*;local0.none call admin_forwarding\n*.* stop",
                 "local1.* call admin_forwarding"):
        other = tmp_path / "other.conf"
        other.write_text(text)
        subprocess.run([str(FIX), str(other)], check=True)
        assert other.read_text() == text
    subprocess.run([str(FIX), str(tmp_path / "absent.conf")], check=True)
