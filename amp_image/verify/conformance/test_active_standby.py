"""ACTIVE_STANDBY through Octavia's driver: two amphorae, keepalived VRRP, a failover.

Two VMs share the VIP bridge (one L2 segment) and the member bridge.  The
controller's calls are the ones its ACTIVE_STANDBY flows make: agent config
with the topology, VIP and member plugs on both, listeners on both,
``update_vrrp_conf`` (Octavia's keepalived template, unicast VRRP between the
two VRRP addresses) and ``start_vrrp_service``, then ``start``.  A client on
the VIP bridge keeps requesting while the MASTER's VM is killed: the VIP must
move to the BACKUP, and the gap between the last answer before and the first
after is measured.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import pytest
from octavia.amphorae.backends.agent import agent_jinja_cfg
from octavia.common import constants as consts
from octavia.common import data_models as models

from amp_image.poll import PollTimeout, poll_until
from amp_image.verify.boottest import booted_amphora
from amp_image.verify.checks.plugin import image_under_test
from amp_image.verify.conformance import controller, network
from amp_image.verify.conformance.clients import (
    MEMBER_A,
    MEMBER_B,
    NS,
    http_get,
    members_answering,
    wait_until,
)
from amp_image.verify.conformance.conftest import AGENT_PORT, Octavia, record_venv_reads

ROLES = (("MASTER", consts.ROLE_MASTER, 100, "127.0.0.2", "10.0.3.11", "10.0.4.21"),
         ("BACKUP", consts.ROLE_BACKUP, 90, "127.0.0.3", "10.0.3.12", "10.0.4.22"))


@pytest.fixture(scope="module")
def pair(request, segments):
    """Two booted amphorae, one after the other (two TCG boots at once would
    share the two cores and take as long)."""
    config = request.config
    with ExitStack() as stack:
        booted = []
        for index, (_name, *_rest, address, _vrrp, _member) in enumerate(ROLES, start=1):
            nics = [network.VIP_SEGMENT.tap(f"tap-vip{index}", f"52:54:00:cc:0{index}:01"),
                    network.MEMBER_SEGMENT.tap(f"tap-mbr{index}", f"52:54:00:cc:0{index}:02")]
            for nic in nics:
                stack.callback(network.delete_link, network.tap_name(nic))
            booted.append(stack.enter_context(booted_amphora(
                image_under_test(config), accel=config.getoption("--amp-accel"),
                boot=config.getoption("--amp-boot"), extra_nics=nics,
                host_ports={22: 22, AGENT_PORT: AGENT_PORT}, host_address=address,
                controller_pki=booted[0].pki if booted else None)))
        yield booted
        # The MASTER was killed for the failover: only the BACKUP can still answer.
        record_venv_reads(config, booted[1], f"{request.module.__name__}-backup")


@pytest.fixture(scope="module")
def ha(pair, heartbeats, backends, tmp_path_factory):
    """The controller's view: one load balancer, two amphorae, a VRRP group."""
    first = pair[0]
    controller.configure(client_pem=first.client_files["client"], ca_pem=first.client_files["ca"],
                         agent_port=AGENT_PORT, cert_dir=tmp_path_factory.mktemp("ha-certs"))
    controller.CONF.set_override("controller_ip_port_list", [heartbeats.controller],
                                 "health_manager")
    controller.CONF.set_override("heartbeat_interval", 2, "health_manager")
    topology = controller.make_topology(first.amphora_id)
    lb = topology.lb
    lb.topology = consts.TOPOLOGY_ACTIVE_STANDBY
    lb.vrrp_group = models.VRRPGroup(load_balancer_id=lb.id, vrrp_group_name=lb.id[:8],
                                     vrrp_auth_type=consts.VRRP_AUTH_DEFAULT,
                                     vrrp_auth_pass=lb.id[-8:], advert_int=1)
    lb.amphorae = []
    for booted, (_name, role, priority, address, vrrp_ip, _member) in zip(pair, ROLES,
                                                                         strict=True):
        lb.amphorae.append(models.Amphora(
            id=booted.amphora_id, load_balancer_id=lb.id, load_balancer=lb,
            status=consts.AMPHORA_ALLOCATED, lb_network_ip=address, vrrp_ip=vrrp_ip,
            ha_ip=network.VIP, vrrp_port_id=controller.new_id(), ha_port_id=lb.vip.port_id,
            role=role, vrrp_priority=priority, vrrp_id=1))
    pool = controller.pool(topology, consts.PROTOCOL_HTTP, 80, consts.HEALTH_MONITOR_HTTP)
    controller.listener(topology, consts.PROTOCOL_HTTP, 80, pool)
    return Octavia(controller.driver(), controller.api_client(), topology)


def _amphorae(ha: Octavia):
    return list(zip(ha.lb.amphorae, ROLES, strict=True))


def test_both_amphorae_take_the_active_standby_config(ha, heartbeats):
    """ACTIVE_STANDBY: agent config with the topology on both; both send heartbeats."""
    for amp, _role in _amphorae(ha):
        config = agent_jinja_cfg.AgentJinjaTemplater().build_agent_config(
            amp.id, consts.TOPOLOGY_ACTIVE_STANDBY)
        ha.driver.update_amphora_agent_config(amp, config.encode())
    for amp, _role in _amphorae(ha):
        heartbeats.wait_for(lambda m, amp_id=amp.id: m.get("id") == amp_id, 60, f"{amp.id}")


def test_plugs_and_listeners_on_both(ha):
    """ACTIVE_STANDBY: VIP and member plugs, listeners, on each amphora."""
    topology = ha.topology
    for index, (amp, (*_r, vrrp_ip, member_ip)) in enumerate(_amphorae(ha), start=1):
        port = controller.vrrp_port(topology, f"52:54:00:cc:0{index}:01")
        port.fixed_ips[0].ip_address = vrrp_ip
        ha.driver.post_vip_plug(amp, ha.lb, {}, port, topology.vip_subnet,
                                additional_vip_data=[])
        member = controller.member_port(topology, f"52:54:00:cc:0{index}:02")
        member.fixed_ips[0].ip_address = member_ip
        ha.driver.post_network_plug(amp, member, {})
        ha.driver.update_amphora_listeners(ha.lb, amp)
        amp.vrrp_interface = ha.driver.get_interface_from_ip(amp, amp.vrrp_ip)
        assert amp.vrrp_interface == "eth1"


def test_vrrp_elects_the_master(ha, pair):
    """ACTIVE_STANDBY: keepalived configured (update_vrrp_conf), started; MASTER has the VIP."""
    net_config = {amp.id: {"vip_subnet": ha.topology.vip_subnet.to_dict(recurse=True),
                           "additional_vip_data": []} for amp in ha.lb.amphorae}
    for amp, _role in _amphorae(ha):
        ha.driver.update_vrrp_conf(ha.lb, net_config, amp)
        ha.driver.start_vrrp_service(amp)
        ha.driver.start(ha.lb, amp)

    def vip_holders() -> list[bool]:
        return [network.VIP in booted.testinfra_host().check_output(f"{NS} ip -br addr")
                for booted in pair]
    assert wait_until(lambda: vip_holders() == [True, False], 90, "the VIP on the MASTER only")
    assert wait_until(lambda: members_answering(80) == {MEMBER_A, MEMBER_B}, 60,
                      "both members through the VIP")


def test_failover_moves_the_vip_to_the_backup(ha, pair, record_property):
    """ACTIVE_STANDBY failover: the MASTER's VM dies, the BACKUP takes the VIP; gap measured."""
    assert http_get(80)[0] == 200
    pair[0].machine.stop()  # the MASTER amphora is gone, as when its compute host dies
    killed = time.monotonic()
    try:
        poll_until(lambda: http_get(80, timeout=1)[0] == 200, interval=0.1,
                   timeout=120 - (time.monotonic() - killed), retry_on=(OSError,))
        first_ok = time.monotonic()
    except PollTimeout:
        first_ok = None
    assert first_ok is not None, "no answer through the VIP within 120 s of the MASTER's death"
    gap = round(first_ok - killed, 2)
    record_property("failover_gap_s", gap)
    backup = pair[1].testinfra_host()
    assert network.VIP in backup.check_output(f"{NS} ip -br addr")
    neighbour = json.loads(_ip_json("neigh", "show", network.VIP))
    assert neighbour and neighbour[0]["lladdr"] == "52:54:00:cc:02:01", neighbour
    assert members_answering(80) == {MEMBER_A, MEMBER_B}
    print(f"failover gap: {gap} s from the MASTER's death to the first answer from the BACKUP")


def _ip_json(*args: str) -> str:
    return network.ip("-j", *args)
