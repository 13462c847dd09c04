"""Who and what can reach a booted amphora: root's password, sshd, the ports that
listen, and the agent's TLS API as the controller calls it (from the host, over
mutual TLS).  The fixtures are those of test_amphora.py (``amp_image.verify.checks.plugin``);
``amp-image test`` runs this module after it.
"""

from __future__ import annotations

import os

import pytest

from amp_image.builder import rootpw
from amp_image.image.records import ROOT_PASSWORD_RECORD
from amp_image.verify.serialconsole import can_log_in

# GET /1.0/details, by octavia major version: octavia/amphorae/backends/agent/
# api_server/amphora_info.py (compile_amphora_details), with the keepalived LVS
# driver's additions (its _SUBSCRIBED_AMP_COMPILE: keepalived, ipvsadm).  The
# same in 18.0.1 and 19.0.0.
_DETAILS_KEYS = frozenset({
    "hostname", "haproxy_version", "api_version", "networks", "active", "haproxy_count",
    "cpu_count", "cpu", "memory", "disk", "load", "active_tuned_profiles", "topology",
    "topology_status", "listeners", "packages",
    "lvs_listener_process_count", "keepalived_version", "ipvsadm_version",
})
# octavia 14.0.2 to 19.0.0 build /details in amphora_info.py with the same keys (their
# sources differ in style and in 19's tolerance of a missing tuned profile only).
DETAILS_KEYS = dict.fromkeys(range(14, 20), _DETAILS_KEYS)
DETAILS_CPU_KEYS = {"total", "user", "system", "soft_irq"}
DETAILS_MEMORY_KEYS = {"total", "free", "buffers", "cached", "swap_used", "shared", "slab"}
DETAILS_DISK_KEYS = {"used", "available"}
# cloud-init makes the host keys at first boot (amphora-base's cloud-init
# configuration asks for these); no RSA (its key generation costs seconds of
# first boot), and OpenSSH 10 has no DSA.
HOST_KEY_TYPES = ("ecdsa", "ed25519")
NO_HOST_KEY_TYPES = ("rsa", "dsa")


# --- security -------------------------------------------------------------------------

DEBUG_IMAGE = (f"not applicable: {ROOT_PASSWORD_RECORD} records a root password (a debug "
               "image, built with -r or AMP_ROOT_PASSWORD)")

def test_no_root_password(amphora_host, image_record):
    if image_record.root_password:
        pytest.skip(DEBUG_IMAGE)
    field = amphora_host.check_output("getent shadow root").split(":")[1]
    assert field in ("*", "!", "!*", "!!") or field.startswith("!"), "root has a password"


def test_sshd_password_logins_as_recorded(amphora_host, image_record):
    """Key only, unless the image was built with --root-password-ssh."""
    config = amphora_host.check_output("sshd -T")
    wanted = "yes" if image_record.root_password_ssh else "no"
    assert f"passwordauthentication {wanted}" in config


def _root_password(record) -> str:
    if not record.root_password:
        pytest.skip(f"not applicable: no {ROOT_PASSWORD_RECORD}, root has no password")
    password = os.environ.get(rootpw.ENV_VAR, "")
    if not password:
        pytest.skip(f"not checked: {ROOT_PASSWORD_RECORD} says root has a password; set "
                    f"{rootpw.ENV_VAR} to it for amp-image test to log in with it")
    return password


def test_root_logs_in_on_the_serial_console(amphora, amphora_record):
    """A debug image (-r): root's password works on ttyS0, and only that password."""
    password = _root_password(amphora_record)
    console = amphora.machine.console_socket
    # Results bound first: pytest would print the call, password and all, on a failure.
    wrong_logs_in = can_log_in(console, "root", password + "-wrong")
    assert not wrong_logs_in, "a wrong password logs in"
    right_logs_in = can_log_in(console, "root", password)
    assert right_logs_in, "root's password did not log in"


def test_root_password_over_ssh_as_recorded(amphora, amphora_host, image_record):
    """Password logins over SSH work only when asked (--root-password-ssh)."""
    password = _root_password(image_record)
    logs_in = amphora.ssh_password_login("root", password)  # bound: see above
    assert logs_in is image_record.root_password_ssh


def test_ssh_host_keys_made_at_first_boot(amphora_host):
    """cloud-init makes them (DIB's runtime-ssh-host-keys unit is masked: it
    stops at DSA, which OpenSSH 10 dropped); none was baked into the image."""
    missing = [t for t in HOST_KEY_TYPES
               if not amphora_host.file(f"/etc/ssh/ssh_host_{t}_key").exists]
    assert not missing, f"no {missing} host keys"
    unwanted = [t for t in NO_HOST_KEY_TYPES
                if amphora_host.file(f"/etc/ssh/ssh_host_{t}_key").exists]
    assert not unwanted, f"{unwanted} host keys made"


def test_only_sshd_and_agent_listen_on_tcp(amphora_host, image_record):
    listening = amphora_host.socket.get_listening_sockets()
    ports = sorted({int(s.rsplit(":", 1)[1]) for s in listening if s.startswith("tcp")})
    assert ports == ([22, 9443] if image_record.has_sshd else [9443]), listening


# --- the agent, from the host, over mutual TLS ----------------------------------------

def test_agent_info(amphora):
    response = amphora.agent().get("info")
    assert response.status_code == 200
    info = response.json()
    assert info["api_version"] == "1.0"
    for key in ("haproxy_version", "keepalived_version", "ipvsadm_version"):
        assert info.get(key), f"{key} missing from {info}"
    assert info["hostname"] == f"amphora-{amphora.amphora_id}"


def test_agent_details(amphora, amphora_record):
    """Every key this agent version's /details returns, with sane values for an
    amphora that has no load balancer yet."""
    version = amphora_record.agent.get("AMPHORA_AGENT_VERSION", "")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else None
    if major not in DETAILS_KEYS:
        pytest.fail(f"no /details key list for octavia {version or '(not recorded)'}; add "
                    "it from octavia/amphorae/backends/agent/api_server/amphora_info.py")
    response = amphora.agent().get("details")
    assert response.status_code == 200, response.text
    details = response.json()
    missing = sorted(DETAILS_KEYS[major] - details.keys())
    assert not missing, f"/details of octavia {version} lacks {missing}: {details}"
    assert details["api_version"] == "1.0"
    assert details["hostname"] == f"amphora-{amphora.amphora_id}"
    assert details["active"] is True
    assert (details["topology"], details["topology_status"]) == ("SINGLE", "OK")
    for key in ("haproxy_version", "keepalived_version", "ipvsadm_version"):
        assert isinstance(details[key], str) and details[key].strip(), (key, details[key])
    assert details["cpu_count"] >= 1
    assert set(details["cpu"]) == DETAILS_CPU_KEYS, details["cpu"]
    assert set(details["memory"]) == DETAILS_MEMORY_KEYS, details["memory"]
    assert details["memory"]["total"] > 0
    assert set(details["disk"]) == DETAILS_DISK_KEYS, details["disk"]
    assert details["disk"]["used"] > 0 and details["disk"]["available"] > 0, details["disk"]
    assert len(details["load"]) == 3, details["load"]
    assert isinstance(details["networks"], dict), details["networks"]
    assert (details["listeners"], details["haproxy_count"],
            details["lvs_listener_process_count"]) == ([], 0, 0)


def test_agent_handshake_probe_gets_an_answer(amphora):
    """The probe the refusal checks use gets through with the controller's certificate."""
    result = amphora.handshake(client="client")
    assert result.outcome == "answered", str(result)
    assert result.detail.startswith("HTTP/1.") and " 200 " in result.detail, str(result)


def test_agent_refuses_client_without_certificate(amphora):
    result = amphora.handshake(client=None)
    assert result.outcome == "refused", \
        f"expected the agent to end the TLS handshake (alert or reset); got {result}"


def test_agent_refuses_certificate_from_another_ca(amphora):
    result = amphora.handshake(client="rogue_client")
    assert result.outcome == "refused", \
        f"expected the agent to end the TLS handshake (alert or reset); got {result}"


def test_agent_certificate_names_the_amphora(amphora):
    # The controller checks the certificate's name against the amphora id; a
    # client expecting another id must fail verification.
    result = amphora.handshake(expect_id="another-amphora")
    assert result.outcome == "server-rejected", str(result)
    assert "mismatch" in result.detail.lower(), str(result)
