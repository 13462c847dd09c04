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
import re
import time

import pytest

from amp_image.image.records import (
    AGENT_RECORD,
    FIREWALL_RECORD,
    SSHD_RECORD,
    VF_DRIVERS_RECORD,
)
from amp_image.poll import PollTimeout, poll_until

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
