"""SR-IOV end to end: VFs of an emulated igb NIC as the amphora's VIP and member ports.

A scenario: the steps run in file order against one VM and build on each other
(VFs, then plugs, then a load balancer, then rules, traffic and a reboot).  The
harness acts as the physical host inside the guest (see
amp_image/verify/emulated_sriov.py) and as
the Octavia controller over the agent's mutual-TLS API.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from amp_image.poll import PollTimeout, poll_until
from amp_image.verify import emulated_sriov

NS = "ip netns exec amphora-haproxy"
LB_ID = str(uuid.uuid4())
LISTENERS = {emulated_sriov.ALLOWED_PORT: str(uuid.uuid4()),
             emulated_sriov.OTHER_PORT: str(uuid.uuid4())}


def rule(port: int, cidr: str = f"{emulated_sriov.GATEWAY}/32", protocol: str = "TCP") -> dict:
    return {"protocol": protocol, "cidr": cidr, "port": port}


@pytest.fixture(scope="module")
def vm(amphora):
    if amphora.sriov is None:
        pytest.fail("the SR-IOV scenario needs the VM booted with --amp-sriov")
    return amphora


@pytest.fixture(scope="module")
def ports(vm) -> dict[int, int]:
    return vm.sriov.host_ports


def netns_ruleset(host) -> str:
    return host.check_output(f"{NS} nft list ruleset")


def put_rules(vm, rules) -> None:
    response = vm.agent().put(f"interface/{emulated_sriov.VRRP_IP}/rules", json=rules)
    assert response.status_code == 200, response.text


def pf_name(host) -> str:
    return host.check_output(
        f"grep -l {emulated_sriov.PF_MAC} /sys/class/net/*/address | cut -d/ -f5")


def test_hot_plugged_vfs_get_their_driver_by_themselves(vm, amphora_host):
    """VFs appearing on the PCI bus are bound to igbvf by udev, with no help."""
    pf = pf_name(amphora_host)
    dev = f"/sys/class/net/{pf}/device"
    assert amphora_host.check_output(f"readlink -f {dev}/driver").endswith("/igb")
    amphora_host.run("modprobe -r igbvf")
    assert not amphora_host.file("/sys/module/igbvf").exists
    amphora_host.run_expect([0], f"ip link set {pf} up && echo 2 > {dev}/sriov_numvfs")
    try:
        drivers = poll_until(lambda: amphora_host.check_output(
            f"for v in {dev}/virtfn*; do basename $(readlink -f $v/driver) 2>/dev/null; "
            "done || true").split(), timeout=30, until=lambda d: d == ["igbvf", "igbvf"])
    except PollTimeout as late:
        drivers = late.last
    assert drivers == ["igbvf", "igbvf"]
    # Now as a host hands them out: fixed MACs, set before the VF driver binds.
    amphora_host.run_expect([0], f"echo 0 > {dev}/sriov_numvfs")
    emulated_sriov.install_host_side(amphora_host)
    links = amphora_host.check_output("ip -br link")
    assert emulated_sriov.VIP_VF_MAC in links and emulated_sriov.MEMBER_VF_MAC in links


def test_plug_sriov_vip(vm, amphora_host):
    body = {"subnet_cidr": emulated_sriov.NETWORK, "gateway": emulated_sriov.GATEWAY,
            "mac_address": emulated_sriov.VIP_VF_MAC, "vrrp_ip": emulated_sriov.VRRP_IP,
            "mtu": 1500,
            "host_routes": [], "is_sriov": True}
    response = vm.agent().post(f"plug/vip/{emulated_sriov.VIP}", json=body, timeout=180)
    assert response.status_code == 202, response.text
    eth1 = json.loads(amphora_host.check_output(f"{NS} ip -j addr show eth1"))[0]
    assert eth1["address"] == emulated_sriov.VIP_VF_MAC
    addresses = {(a["local"], a["prefixlen"]) for a in eth1["addr_info"] if a["family"] == "inet"}
    assert addresses == {(emulated_sriov.VIP, 32), (emulated_sriov.VRRP_IP, 24)}
    ruleset = netns_ruleset(amphora_host)
    assert "table inet amphora_table" in ruleset
    assert "policy drop;" in ruleset


def test_plug_sriov_member_port(vm, amphora_host):
    body = {"mac_address": emulated_sriov.MEMBER_VF_MAC, "mtu": 1500, "is_sriov": True,
            "fixed_ips": [{"ip_address": emulated_sriov.MEMBER_IP,
                           "subnet_cidr": emulated_sriov.NETWORK, "host_routes": []}]}
    response = vm.agent().post("plug/network", json=body, timeout=180)
    assert response.status_code == 202, response.text
    links = json.loads(amphora_host.check_output(f"{NS} ip -j addr"))
    member = [link for link in links if link["address"] == emulated_sriov.MEMBER_VF_MAC]
    assert member, links
    assert any(a["local"] == emulated_sriov.MEMBER_IP for a in member[0]["addr_info"])


def test_load_balancer_listens_on_the_vip(vm, amphora_host):
    agent = vm.agent()
    config = emulated_sriov.haproxy_config(LB_ID, LISTENERS)
    response = agent.put(f"loadbalancer/{vm.amphora_id}/{LB_ID}/haproxy", data=config,
                         timeout=120)
    assert response.status_code == 202, response.text
    response = agent.put(f"loadbalancer/{LB_ID}/start", timeout=120)
    assert response.status_code == 202, response.text
    listening = amphora_host.check_output(f"{NS} ss -ltnH")
    for port in LISTENERS:
        assert f"{emulated_sriov.VIP}:{port}" in listening


def test_rules_for_one_port_from_one_cidr(vm, amphora_host):
    put_rules(vm, [rule(emulated_sriov.ALLOWED_PORT)])
    ruleset = netns_ruleset(amphora_host)
    assert "table inet amphora_table" in ruleset
    assert "type filter hook input priority filter; policy drop;" in ruleset
    assert (f"ip saddr {emulated_sriov.GATEWAY} tcp dport {emulated_sriov.ALLOWED_PORT} accept"
            in ruleset)
    assert f"dport {emulated_sriov.OTHER_PORT}" not in ruleset
    assert amphora_host.file("/var/lib/octavia/nftables-vip.rules").exists


def test_allowed_port_reaches_the_listener(ports):
    assert emulated_sriov.wait_status(ports[emulated_sriov.ALLOWED_PORT], 200) == 200


def test_other_port_is_dropped(ports):
    assert emulated_sriov.http_status(ports[emulated_sriov.OTHER_PORT]) is None


def test_rule_from_another_cidr_does_not_admit(vm, ports):
    put_rules(vm, [rule(emulated_sriov.ALLOWED_PORT, cidr="192.0.2.0/24")])
    assert emulated_sriov.http_status(ports[emulated_sriov.ALLOWED_PORT]) is None


def test_new_rules_without_the_port_drop_it(vm, ports, amphora_host):
    put_rules(vm, [rule(emulated_sriov.OTHER_PORT)])
    assert f"tcp dport {emulated_sriov.ALLOWED_PORT}" not in netns_ruleset(amphora_host)
    assert emulated_sriov.http_status(ports[emulated_sriov.ALLOWED_PORT]) is None
    assert emulated_sriov.wait_status(ports[emulated_sriov.OTHER_PORT], 200) == 200


def test_plugging_an_unknown_mac_is_404(vm):
    body = {"mac_address": "52:54:00:de:ad:00", "fixed_ips": [], "mtu": 1500,
            "is_sriov": True}
    assert vm.agent().post("plug/network", json=body, timeout=180).status_code == 404


@pytest.mark.parametrize("body", [
    {"protocol": "TCP"},
    [{"protocol": "ICMP", "cidr": None, "port": 80}],
    [{"protocol": "TCP", "cidr": "10.0.3.2/32", "port": 70000}],
    "not a list",
])
def test_malformed_rules_are_400(vm, body):
    assert vm.agent().put(f"interface/{emulated_sriov.VRRP_IP}/rules", json=body).status_code == 400


def test_agent_keeps_serving_after_bad_input(vm, amphora_host, ports):
    assert vm.agent().get("info").status_code == 200
    assert f"tcp dport {emulated_sriov.OTHER_PORT}" in netns_ruleset(amphora_host)
    assert emulated_sriov.http_status(ports[emulated_sriov.OTHER_PORT]) == 200


def test_reboot_restores_rules_before_traffic(vm, amphora_host, ports):
    old_boot = amphora_host.file("/proc/sys/kernel/random/boot_id").content_string
    amphora_host.run("systemctl reboot")

    def back_from_the_reboot():
        host = vm.testinfra_host(fresh=True)
        new_boot = host.file("/proc/sys/kernel/random/boot_id").content_string
        return host if new_boot != old_boot else None

    time.sleep(5)
    try:
        # Any error: sshd is not back yet.
        host = poll_until(back_from_the_reboot, timeout=600, interval=5,
                          retry_on=(Exception,))
    except PollTimeout:
        host = None
    assert host is not None, "the amphora did not come back from the reboot"
    # sshd is up before the boot is: wait for systemd to finish starting units.
    state = host.run("timeout 300 systemctl is-system-running --wait").stdout.strip()
    diagnostics = host.run(
        "systemctl --no-pager status amp-test-sriov-host amphora-netns "
        f"haproxy-{LB_ID} 2>&1 | tail -40; ip -br link").stdout
    assert state in ("running", "degraded"), diagnostics
    ruleset = netns_ruleset(host)
    assert "policy drop;" in ruleset, diagnostics
    assert (f"ip saddr {emulated_sriov.GATEWAY} tcp dport {emulated_sriov.OTHER_PORT} accept"
            in ruleset)
    # The netns unit loads the rules before it brings the VIP up, and haproxy
    # starts only after it: nothing listened on the VIP unfiltered.
    unit = f"haproxy-{LB_ID}.service"
    netns_up = int(host.check_output(
        "systemctl show -P ActiveEnterTimestampMonotonic amphora-netns.service"))
    haproxy_up = int(host.check_output(
        f"systemctl show -P ExecMainStartTimestampMonotonic {unit}"))
    assert 0 < netns_up <= haproxy_up
    assert emulated_sriov.wait_status(ports[emulated_sriov.OTHER_PORT], 200, timeout=120) == 200
    assert emulated_sriov.http_status(ports[emulated_sriov.ALLOWED_PORT]) is None
