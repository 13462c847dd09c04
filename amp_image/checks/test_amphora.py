"""Checks against a booted amphora: over SSH (pytest-testinfra) and the agent's TLS API.

The ``amphora`` and ``amphora_host`` fixtures come from ``amp_image.checks.plugin``.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

REQUIRED_PACKAGES = ("haproxy", "keepalived", "ipvsadm", "nftables", "cryptsetup-bin",
                     "cloud-init", "sos")
COMPILERS = ("gcc", "cc", "g++", "c++", "make")
HAPROXY_SYSCTLS = {
    "net.ipv4.ip_nonlocal_bind": "1",
    "net.core.somaxconn": "65534",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.ip_local_port_range": "1025\t65534",
    "net.ipv4.tcp_mtu_probing": "1",
    "net.ipv4.tcp_keepalive_time": "300",
    "net.core.rmem_max": "67108864",
    "net.core.wmem_max": "67108864",
    "net.ipv4.tcp_rmem": "4096\t87380\t33554432",
    "net.ipv4.ping_group_range": "0\t2147483647",
}


def _vf_drivers(amphora_host) -> list[str]:
    text = amphora_host.file("/etc/amp-image/vf-drivers").content_string
    return [line.split()[0] for line in text.splitlines() if line.strip()]


# --- packages -------------------------------------------------------------------------

@pytest.mark.parametrize("package", REQUIRED_PACKAGES)
def test_package_installed(amphora_host, package):
    assert amphora_host.package(package).is_installed


@pytest.mark.parametrize("compiler", COMPILERS)
def test_no_compiler(amphora_host, compiler):
    assert not amphora_host.exists(compiler)


# --- services -------------------------------------------------------------------------

@pytest.mark.parametrize("unit", ["amphora-agent", "certs-ramfs", "prometheus-proxy"])
def test_service_active_and_enabled(amphora_host, unit):
    service = amphora_host.service(unit)
    assert service.is_running
    assert service.is_enabled


def test_cloud_init_finished_without_errors(amphora_host):
    result = amphora_host.run("cloud-init status --format json")
    status = json.loads(result.stdout)
    assert status["status"] == "done", status
    assert not status.get("errors"), status["errors"]


def test_config_drive_files_written(amphora_host, amphora):
    conf = amphora_host.file("/etc/octavia/amphora-agent.conf")
    assert conf.exists
    assert f"amphora_id = {amphora.amphora_id}" in conf.content_string
    assert amphora_host.file("/etc/octavia/certs/server.pem").exists
    assert amphora_host.file("/etc/octavia/certs/client_ca.pem").exists


def test_base_cert_dir_on_encrypted_ramdisk(amphora_host):
    mount = amphora_host.mount_point("/var/lib/octavia/certs")
    assert mount.exists
    assert mount.device == "/dev/mapper/certfs-ramfs"
    status = amphora_host.run("cryptsetup status certfs-ramfs")
    assert status.rc == 0, status.stderr
    assert "LUKS" in status.stdout and "/dev/ram0" in status.stdout


def test_rsyslog_octavia_socket_delivers(amphora_host):
    """haproxy and the agent log to this socket; the controller's rsyslog file routes it."""
    assert amphora_host.service("rsyslog").is_running
    assert amphora_host.file("/run/rsyslog/octavia/log").is_socket
    marker = f"amp-image-check-{time.time_ns()}"
    amphora_host.run_expect([0], f"logger -u /run/rsyslog/octavia/log -p local1.info {marker}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if amphora_host.run(f"grep -q {marker} /var/log/octavia-amphora.log").rc == 0:
            return
        time.sleep(1)
    pytest.fail("message sent to the octavia socket never reached /var/log/octavia-amphora.log")


def test_hostname_from_metadata(amphora_host, amphora):
    assert amphora_host.check_output("hostname") == f"amphora-{amphora.amphora_id}"


# --- SR-IOV readiness -----------------------------------------------------------------

def test_nftables_works(amphora_host):
    result = amphora_host.run("nft list ruleset")
    assert result.rc == 0, result.stderr
    firewall = amphora_host.file("/etc/amp-image/firewall").content_string.strip()
    assert firewall == "AMP_FIREWALL=nftables"


def test_vf_driver_list_recorded(amphora_host):
    drivers = _vf_drivers(amphora_host)
    for required in ("iavf", "ixgbevf", "igbvf", "mlx5_core", "mlx4_core", "bnxt_en",
                     "qede", "ice", "i40e"):
        assert required in drivers


def test_every_vf_driver_loads(amphora_host):
    failures = []
    for module in _vf_drivers(amphora_host):
        result = amphora_host.run(f"modprobe {module}")
        if result.rc != 0:
            failures.append(f"{module}: {result.stderr.strip()}")
        elif not amphora_host.file(f"/sys/module/{module}").exists:
            failures.append(f"{module}: not in /sys/module after modprobe")
    assert not failures


@pytest.mark.parametrize("key,value", sorted(HAPROXY_SYSCTLS.items()))
def test_haproxy_sysctl(amphora_host, key, value):
    assert amphora_host.check_output(f"sysctl -n {key}") == value


def test_ping_wrapper_as_haproxy_runs_it(amphora_host):
    """PING health monitors: haproxy (user nobody) runs the wrapper with the member's
    address in HAPROXY_SERVER_ADDR; up is exit 0, an address nobody answers is not."""
    wrapper = amphora_host.file("/var/lib/octavia/ping-wrapper.sh")
    assert wrapper.mode == 0o755
    run = "runuser -u nobody -- env HAPROXY_SERVER_ADDR={} /var/lib/octavia/ping-wrapper.sh"
    assert amphora_host.run(run.format("127.0.0.1")).rc == 0
    assert amphora_host.run(run.format("::1")).rc == 0
    # An address that answers nothing, without sending a packet off the VM.
    amphora_host.run_expect([0], "ip route replace blackhole 198.51.100.7/32")
    try:
        assert amphora_host.run(run.format("198.51.100.7")).rc != 0
    finally:
        amphora_host.run("ip route del blackhole 198.51.100.7/32")


def test_sos_report_runs(amphora_host):
    assert "sos" in amphora_host.check_output("sos --version 2>&1 || true").lower()


# --- security -------------------------------------------------------------------------

def test_no_root_password(amphora_host):
    field = amphora_host.check_output("getent shadow root").split(":")[1]
    assert field in ("*", "!", "!*", "!!") or field.startswith("!"), "root has a password"


def test_sshd_key_only(amphora_host):
    config = amphora_host.check_output("sshd -T")
    assert "passwordauthentication no" in config


def test_only_sshd_and_agent_listen_on_tcp(amphora_host):
    listening = amphora_host.socket.get_listening_sockets()
    ports = sorted({int(s.rsplit(":", 1)[1]) for s in listening if s.startswith("tcp")})
    assert ports == [22, 9443], listening


def test_image_records_agent_source(amphora_host):
    text = amphora_host.file("/etc/amp-image/amphora-agent").content_string
    assert "AMPHORA_AGENT_VERSION=" in text


# --- the agent, from the host, over mutual TLS ----------------------------------------

def test_agent_info(amphora):
    response = amphora.agent().get("info")
    assert response.status_code == 200
    info = response.json()
    assert info["api_version"] == "1.0"
    for key in ("haproxy_version", "keepalived_version", "ipvsadm_version"):
        assert info.get(key), f"{key} missing from {info}"
    assert info["hostname"] == f"amphora-{amphora.amphora_id}"


def test_agent_details(amphora):
    response = amphora.agent().get("details")
    assert response.status_code == 200
    details = response.json()
    assert details["api_version"] == "1.0"
    assert "networks" in details or "interfaces" in details or "load" in details


def test_agent_refuses_client_without_certificate(amphora):
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        amphora.agent(client=None).get("info")


def test_agent_refuses_certificate_from_another_ca(amphora):
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        amphora.agent(client="rogue_client").get("info")


def test_agent_certificate_names_the_amphora(amphora):
    # The controller checks the certificate's name against the amphora id; a
    # client expecting another id must fail verification.
    with pytest.raises(requests.exceptions.SSLError):
        amphora.agent(expect_id="another-amphora").get("info")
