"""Checks against a booted amphora: over SSH (pytest-testinfra) and the agent's TLS API.

The fixtures come from ``amp_image.verify.checks.plugin``: ``amphora`` (the VM and its
agent API), ``amphora_host`` (SSH), ``image_record`` (the booted image's
/etc/amp-image, read over SSH) and ``amphora_record`` (the same record, read
from the image before it booted).  What an image may differ in (firewall
backend, VF drivers, sshd) is checked against its record, not assumed; a
check that does not apply to the image is skipped, naming the record.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from amp_image.builder import rootpw
from amp_image.image.records import (
    AGENT_RECORD,
    FIREWALL_RECORD,
    ROOT_PASSWORD_RECORD,
    SSHD_RECORD,
    VF_DRIVERS_RECORD,
)
from amp_image.poll import PollTimeout, poll_until
from amp_image.verify.serialconsole import can_log_in

# The firewall's package (nftables or iptables) follows the record: see
# test_firewall_package_as_recorded.
REQUIRED_PACKAGES = ("haproxy", "keepalived", "ipvsadm", "cryptsetup-bin", "cloud-init", "sos")
FIREWALL_PACKAGES = {"nftables": "nftables", "iptables": "iptables"}
FIREWALL_WORKS = {"nftables": "nft list ruleset", "iptables": "iptables -w -S"}
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
# How long boot may take to settle (systemctl is-system-running --wait).
BOOT_SETTLE_S = 300
# How long an image without sshd must show no SSH banner.
NO_SSHD_WATCH_S = 20
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NOT_SRIOV = (f"not applicable: no {VF_DRIVERS_RECORD} in the image (built with --no-sriov), "
             "so it promises no VF driver")


# --- packages -------------------------------------------------------------------------

# bookworm's main archive packages sos as sosreport (4.0).
PACKAGE_NAMES = {"sos": ("sos", "sosreport")}


@pytest.mark.parametrize("package", REQUIRED_PACKAGES)
def test_package_installed(amphora_host, package):
    names = PACKAGE_NAMES.get(package, (package,))
    assert any(amphora_host.package(name).is_installed for name in names), names


def test_firewall_package_as_recorded(amphora_host, image_record):
    firewall = image_record.firewall
    assert firewall in FIREWALL_PACKAGES, \
        f"{FIREWALL_RECORD} records AMP_FIREWALL={firewall!r}, not nftables or iptables"
    assert amphora_host.package(FIREWALL_PACKAGES[firewall]).is_installed


@pytest.mark.parametrize("compiler", COMPILERS)
def test_no_compiler(amphora_host, compiler):
    assert not amphora_host.exists(compiler)


# --- a clean boot ---------------------------------------------------------------------

def test_system_running(amphora_host):
    """Boot finished with every unit up: not degraded, not still starting."""
    result = amphora_host.run(f"timeout {BOOT_SETTLE_S} systemctl is-system-running --wait")
    state = result.stdout.strip() or f"(no answer in {BOOT_SETTLE_S} s, rc {result.rc})"
    if state != "running":
        failed = amphora_host.run("systemctl --failed --no-legend --plain").stdout.strip()
        pytest.fail(f"systemctl is-system-running: {state}; failed units:\n{failed or '(none)'}")


def test_console_shows_no_failed_unit(amphora):
    """From the host, so that it also runs for an image without sshd: systemd prints
    "[FAILED] Failed to start UNIT" on the serial console for a unit failing at boot."""
    console = ANSI_ESCAPE.sub("", amphora.machine.serial_text())
    failed = [line.strip() for line in console.splitlines() if "[FAILED]" in line]
    assert not failed, "units failed while booting (serial console):\n" + "\n".join(failed)


def test_no_failed_units(amphora_host):
    amphora_host.run(f"timeout {BOOT_SETTLE_S} systemctl is-system-running --wait")
    result = amphora_host.run("systemctl --failed --no-legend --plain")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "", f"failed units:\n{result.stdout}"


# --- services -------------------------------------------------------------------------

# Units amphora-base turns off: boot time for nothing on an amphora.
UNNEEDED_UNITS = {"grub-common.service": "masked", "e2scrub_reap.service": "disabled",
                  "e2scrub_all.timer": "disabled", "apt-daily.timer": "disabled",
                  "apt-daily-upgrade.timer": "disabled"}


@pytest.mark.parametrize("unit", sorted(UNNEEDED_UNITS))
def test_unneeded_unit_off(amphora_host, unit):
    state = amphora_host.run(f"systemctl is-enabled {unit}").stdout.strip()
    assert state == UNNEEDED_UNITS[unit], f"{unit}: {state}"

@pytest.mark.parametrize("unit", ["amphora-agent", "certs-ramfs", "certs-ramfs-prepare",
                                  "amphora-growroot", "prometheus-proxy"])
def test_service_active_and_enabled(amphora_host, unit):
    service = amphora_host.service(unit)
    assert service.is_running
    assert service.is_enabled


# The root file system's partition, its disk, and the ext4 on it, in bytes.
ROOT_SIZES = ('part=$(basename "$(findmnt -no SOURCE /)"); '
              'disk=$(basename "$(readlink -f /sys/class/block/$part/..)"); '
              'echo disk $(( $(cat /sys/class/block/$disk/size) * 512 )); '
              'echo partition $(( $(cat /sys/class/block/$part/size) * 512 )); '
              'dumpe2fs -h /dev/$part 2>/dev/null | '
              "awk -F: '/^Block count/ {n=$2} /^Block size/ {b=$2} "
              "END {print \"ext4\", n * b}'; "
              'echo df $(df --block-size=1 --output=size / | tail -1)')


def test_root_file_system_fills_the_flavors_disk(amphora, amphora_host):
    """The root partition and its ext4 grow to the flavor's disk at first boot
    (amphora-growroot): the space an operator's flavor gives beyond the image's 2 GiB
    is the amphora's, for haproxy's logs above all."""
    assert amphora_host.service("amphora-growroot").is_enabled
    journal = amphora_host.run("systemctl is-active amphora-growroot; "
                               "journalctl -b -u amphora-growroot --no-pager").stdout
    assert journal.startswith("active"), journal
    sizes = {name: int(value) for name, value in
             (line.split() for line in amphora_host.check_output(ROOT_SIZES).splitlines())}
    flavor = amphora.machine.spec.flavor
    if flavor.disk_gb:
        assert sizes["disk"] == flavor.disk_gb * 2**30, f"the VM's disk: {sizes}"
    # GPT keeps the first MiB and 33 sectors at the end; ext4 ends on a 4 KiB block.
    assert sizes["partition"] >= sizes["disk"] - 2**20 - 33 * 512, f"{sizes}\n{journal}"
    assert sizes["ext4"] > sizes["partition"] - 4096, f"{sizes}\n{journal}"
    # What df shows: the ext4 less its journal and inode tables (about 9% here).
    assert sizes["df"] >= 0.85 * sizes["disk"], f"{sizes}\n{journal}"


def test_cloud_init_finished_without_errors(amphora_host):
    result = amphora_host.run("cloud-init status --format json")
    status = json.loads(result.stdout)
    assert status["status"] == "done", status
    assert not status.get("errors"), status["errors"]


# What amphora-base's cloud-init configuration leaves to run at first boot
# (cloud-init analyze lists every module that ran, "config-<name>").
CLOUD_INIT_MODULES = {
    "seed_random", "bootcmd", "write_files", "set_hostname", "update_hostname",
    "update_etc_hosts", "users_groups", "ssh", "set_passwords", "timezone", "runcmd",
    "write_files_deferred", "scripts_vendor", "scripts_per_once", "scripts_per_boot",
    "scripts_per_instance", "scripts_user", "ssh_authkey_fingerprints", "keys_to_console",
    "final_message", "power_state_change"}


def test_cloud_init_runs_only_the_amphoras_modules(amphora_host):
    result = amphora_host.run("cloud-init analyze blame")
    assert result.rc == 0, result.stderr
    ran = {name.replace("-", "_")
           for name in re.findall(r"/config-([\w-]+)\)", result.stdout)}
    assert ran, f"no module in cloud-init analyze blame:\n{result.stdout}"
    assert ran <= CLOUD_INIT_MODULES, f"modules an amphora does not use ran: " \
        f"{sorted(ran - CLOUD_INIT_MODULES)}"
    # Modules with nothing to do are not run at all (write_files: the controller's
    # files arrive as config drive files, which the datasource writes).
    assert {"ssh", "runcmd", "scripts_user"} <= ran, sorted(ran)


@pytest.mark.parametrize("unit", ["ldconfig.service", "systemd-sysusers.service",
                                  "systemd-journal-catalog-update.service",
                                  "systemd-hwdb-update.service"])
def test_first_boot_repeats_no_build_time_update(amphora_host, unit):
    """amphora-base stamps /etc/.updated and /var/.updated: the build already did
    what these units' ConditionNeedsUpdate= would have them redo at first boot."""
    shown = amphora_host.run(f"systemctl show -p ConditionResult "
                             f"-p ConditionTimestampMonotonic {unit}").stdout
    checked = re.search(r"ConditionTimestampMonotonic=(\d+)", shown)
    assert checked and int(checked.group(1)) > 0, f"{unit} never came up at boot:\n{shown}"
    assert "ConditionResult=no" in shown, f"{unit} ran at first boot:\n{shown}"


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
    try:
        poll_until(lambda: amphora_host.run(
            f"grep -q {marker} /var/log/octavia-amphora.log").rc == 0, timeout=15)
    except PollTimeout:
        pytest.fail("message sent to the octavia socket never reached "
                    "/var/log/octavia-amphora.log")


def test_hostname_from_metadata(amphora_host, amphora):
    assert amphora_host.check_output("hostname") == f"amphora-{amphora.amphora_id}"


# --- what the image records about itself ----------------------------------------------

def test_record_read_before_boot_is_the_booted_images(image_record, amphora_record):
    """The harness chose how to reach the amphora (SSH or not) from the record it read
    before booting; it must be the record the booted image carries."""
    assert image_record.sshd == amphora_record.sshd
    assert image_record.firewall == amphora_record.firewall
    assert image_record.sriov == amphora_record.sriov
    assert image_record.vf_driver_files == amphora_record.vf_driver_files
    assert image_record.agent == amphora_record.agent


def test_image_records_agent_source(image_record):
    assert image_record.agent.get("AMPHORA_AGENT_VERSION"), \
        f"{AGENT_RECORD} has no AMPHORA_AGENT_VERSION: {image_record.agent}"
    assert image_record.agent.get("AMPHORA_AGENT_SOURCE_TYPE"), image_record.agent


def test_sshd_as_recorded(amphora, amphora_record):
    """From the host, so that it also runs for an image without sshd: the SSH port
    forwarded to the amphora shows an SSH banner if and only if the image has sshd."""
    if amphora_record.has_sshd:
        assert amphora.machine.ssh_banner(), \
            f"{SSHD_RECORD} records AMP_SSHD={amphora_record.sshd or '(none: sshd)'}, " \
            "but nothing answers SSH"
        return
    # The agent answers, so boot is over; give a would-be sshd time to start anyway.
    try:
        poll_until(amphora.machine.ssh_banner, timeout=NO_SSHD_WATCH_S, interval=2)
    except PollTimeout:
        return  # no SSH server answered all along
    pytest.fail(f"{SSHD_RECORD} records AMP_SSHD=absent, but an SSH server answers")


# --- SR-IOV readiness -----------------------------------------------------------------

def test_firewall_as_recorded(amphora_host, image_record):
    """The backend the agent programs (nftables, or iptables for --iptables) works."""
    firewall = image_record.firewall
    assert firewall in FIREWALL_WORKS, \
        f"{FIREWALL_RECORD} records AMP_FIREWALL={firewall!r}, not nftables or iptables"
    result = amphora_host.run(FIREWALL_WORKS[firewall])
    assert result.rc == 0, f"{FIREWALL_WORKS[firewall]}: {result.stderr}"


def test_vf_drivers_recorded_for_the_running_kernel(amphora_host, image_record):
    if not image_record.sriov:
        pytest.skip(NOT_SRIOV)
    assert image_record.vf_drivers, f"{VF_DRIVERS_RECORD} lists no VF driver"
    kernel = amphora_host.check_output("uname -r")
    here = {d.module: d.path for d in image_record.vf_driver_files if d.kernel == kernel}
    missing = [m for m in image_record.vf_drivers if m not in here]
    assert not missing, f"{VF_DRIVERS_RECORD} has no entry for {missing} on kernel {kernel}"
    absent = [path for path in here.values() if not amphora_host.file(path).exists]
    assert not absent, f"recorded VF driver files missing: {absent}"


def test_every_vf_driver_loads(amphora_host, image_record):
    if not image_record.sriov:
        pytest.skip(NOT_SRIOV)
    assert image_record.vf_drivers, f"{VF_DRIVERS_RECORD} lists no VF driver"
    failures = []
    for module in image_record.vf_drivers:
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
    """sos 4.10 (trixie) or bookworm's sosreport 4.0: either answers for `sos report`."""
    result = amphora_host.run("sos report --help")
    assert result.rc == 0, result.stderr
    assert "report" in result.stdout.lower()


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
