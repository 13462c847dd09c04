"""The Octavia controller's side, made of Octavia's own code.

The driver is ``HaproxyAmphoraLoadBalancerDriver`` from the installed
``octavia`` release: it renders haproxy, LVS and keepalived configuration
with the controller's Jinja templates and talks to the agent through
``AmphoraAPIClient1_0``.  Configuration is an oslo.config set up in code, and
certificates come from Octavia's ``local_cert_manager`` (files on disk), the
one cert manager that needs no cloud.  The load balancer is described with
``octavia.common.data_models`` objects, as the controller's flows load them
from its database.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from octavia.amphorae.drivers.haproxy import rest_api_driver
from octavia.certificates.manager.local import LocalCertManager
from octavia.common import constants as consts
from octavia.common import data_models as models
from octavia.common.config import cfg
from octavia.network import data_models as net_models
from oslo_log import log as oslo_log

from amp_image.verify.conformance import network

CONF = cfg.CONF
HEARTBEAT_KEY = "amp-image-conformance-key"
PROJECT = "amp-image-conformance"
MTU = 1500


def configure(*, client_pem: Path, ca_pem: Path, agent_port: int, cert_dir: Path) -> None:
    """What octavia.conf would say, for a controller reaching the amphora at 127.0.0.1."""
    # [DEFAULT] debug, which the agent config renders; an earlier scenario module
    # may have registered it already.
    with contextlib.suppress(cfg.ArgsAlreadyParsedError):
        oslo_log.register_options(CONF)
    CONF([], project="octavia", default_config_files=[], default_config_dirs=[])
    overrides = {
        "haproxy_amphora": {
            "client_cert": str(client_pem),
            "server_ca": str(ca_pem),
            "bind_port": agent_port,
            "connection_max_retries": 60,
            "connection_retry_interval": 2,
            "rest_request_read_timeout": 180,
        },
        "certificates": {"cert_manager": "local_cert_manager", "storage_path": str(cert_dir)},
        "health_manager": {"heartbeat_key": HEARTBEAT_KEY},
        "amphora_agent": {"agent_tls_protocol": "TLSv1.2"},
    }
    for group, values in overrides.items():
        for key, value in values.items():
            CONF.set_override(key, value, group)
    cert_dir.mkdir(parents=True, exist_ok=True)


def driver() -> rest_api_driver.HaproxyAmphoraLoadBalancerDriver:
    return rest_api_driver.HaproxyAmphoraLoadBalancerDriver()


def api_client() -> rest_api_driver.AmphoraAPIClient1_0:
    """The driver's REST client, for calls the driver only makes inside controller flows."""
    return rest_api_driver.AmphoraAPIClient1_0()


def store_certificate(cert_pem: bytes, key_pem: bytes) -> str:
    """Register a listener certificate the way Barbican would hold it; returns its ref."""
    return LocalCertManager.store_cert(None, cert_pem, key_pem)


def store_secret(pem: bytes) -> str:
    """Register a CA certificate or a CRL the way Barbican would hold the secret; returns
    its ref.  LocalCertManager has no store for secrets: its get_secret reads
    <storage_path>/<ref>.crt, so that file is what is written."""
    ref = new_id()
    secret = Path(CONF.certificates.storage_path) / f"{ref}.crt"
    secret.write_bytes(pem)
    secret.chmod(0o600)
    return ref


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Topology:
    """The load balancer's objects, as the controller's database holds them."""

    amphora: models.Amphora
    lb: models.LoadBalancer
    vip_subnet: net_models.Subnet
    member_subnet: net_models.Subnet
    vip6_subnet: net_models.Subnet
    member6_subnet: net_models.Subnet
    sriov_member_subnet: net_models.Subnet


def subnet(cidr: str, gateway: str) -> net_models.Subnet:
    return net_models.Subnet(id=new_id(), cidr=cidr, gateway_ip=gateway,
                             ip_version=6 if ":" in cidr else 4, host_routes=[])


def make_topology(amphora_id: str, *, vnic_type: str = consts.VNIC_TYPE_NORMAL) -> Topology:
    lb_id = new_id()
    amphora = models.Amphora(
        id=amphora_id, load_balancer_id=lb_id, compute_id=new_id(), status=consts.AMPHORA_ALLOCATED,
        lb_network_ip="127.0.0.1", vrrp_ip=network.VIP.rsplit(".", 1)[0] + ".11",
        ha_ip=network.VIP, vrrp_port_id=new_id(), ha_port_id=new_id(),
        role=consts.ROLE_STANDALONE)
    vip_subnet = subnet(network.VIP_CIDR, network.VIP_GATEWAY)
    vip6_subnet = subnet(network.VIP6_CIDR, network.VIP6_GATEWAY)
    vip = models.Vip(load_balancer_id=lb_id, ip_address=network.VIP, subnet_id=vip_subnet.id,
                     network_id=new_id(), port_id=amphora.ha_port_id, vnic_type=vnic_type)
    lb = models.LoadBalancer(id=lb_id, project_id=PROJECT, enabled=True, vip=vip,
                             amphorae=[amphora], listeners=[], pools=[],
                             topology=consts.TOPOLOGY_SINGLE,
                             provisioning_status=consts.ACTIVE)
    # The second VIP subnet on the VIP's port (additional_vips, 2024.1 and later).
    lb.additional_vips = [models.AdditionalVip(
        load_balancer_id=lb_id, ip_address=network.VIP6, subnet_id=vip6_subnet.id,
        network_id=vip.network_id, port_id=vip.port_id, load_balancer=lb)]
    amphora.load_balancer = lb
    return Topology(amphora, lb, vip_subnet,
                    subnet(network.MEMBER_CIDR, network.MEMBER_GATEWAY), vip6_subnet,
                    subnet(network.MEMBER6_CIDR, network.MEMBER6_GATEWAY),
                    subnet(network.SRIOV_MEMBER_CIDR, network.SRIOV_MEMBER_GATEWAY))


def additional_vip_data(topology: Topology) -> list[net_models.AdditionalVipData]:
    """What the controller's flow hands post_vip_plug for the additional VIPs."""
    subnets = {topology.vip6_subnet.id: topology.vip6_subnet}
    return [net_models.AdditionalVipData(ip_address=vip.ip_address,
                                         subnet=subnets[vip.subnet_id])
            for vip in topology.lb.additional_vips]


def vrrp_port(topology: Topology, mac: str) -> net_models.Port:
    return net_models.Port(id=topology.amphora.vrrp_port_id, mac_address=mac,
                           network=net_models.Network(id=topology.lb.vip.network_id, mtu=MTU),
                           fixed_ips=[net_models.FixedIP(subnet_id=topology.vip_subnet.id,
                                                         ip_address=topology.amphora.vrrp_ip,
                                                         subnet=topology.vip_subnet)])


def member_port(topology: Topology, mac: str) -> net_models.Port:
    """The member network's port: an IPv4 and an IPv6 address."""
    return _port(mac, consts.VNIC_TYPE_NORMAL,
                 [(topology.member_subnet, network.MEMBER_PORT_IP),
                  (topology.member6_subnet, network.MEMBER6_PORT_IP)])


def sriov_member_port(topology: Topology, mac: str) -> net_models.Port:
    """A member port that is a VF (vnic_type direct, allow_member_sriov)."""
    return _port(mac, consts.VNIC_TYPE_DIRECT,
                 [(topology.sriov_member_subnet, network.SRIOV_MEMBER_PORT_IP)])


def _port(mac: str, vnic_type: str, addresses: list[tuple[net_models.Subnet, str]]
          ) -> net_models.Port:
    return net_models.Port(id=new_id(), mac_address=mac, vnic_type=vnic_type,
                           network=net_models.Network(id=new_id(), mtu=MTU),
                           fixed_ips=[net_models.FixedIP(subnet_id=each.id, ip_address=address,
                                                         subnet=each)
                                      for each, address in addresses])


def health_monitor(pool_id: str, kind: str, **kw) -> models.HealthMonitor:
    values = {"delay": 1, "timeout": 1, "fall_threshold": 1, "rise_threshold": 1,
              "enabled": True, "provisioning_status": consts.ACTIVE}
    if kind == consts.HEALTH_MONITOR_HTTP:
        values |= {"http_method": "GET", "url_path": "/health", "expected_codes": "200"}
    values |= kw
    return models.HealthMonitor(id=new_id(), project_id=PROJECT, pool_id=pool_id, type=kind,
                                **values)


def pool(topology: Topology, protocol: str, member_port_number: int,
         monitor: str | None = None, *, algorithm: str = consts.LB_ALGORITHM_ROUND_ROBIN,
         persistence: dict | None = None, members: dict[str, dict] | None = None,
         tls: dict | None = None, addresses: dict[str, str] = network.BACKENDS,
         **monitor_kw) -> models.Pool:
    """A pool of the backends, by name: members maps each chosen backend to its Member
    options (weight, backup, monitor_address, ...); default both, weight 1.
    addresses: each backend's address (default its IPv4 one on the member network).
    persistence: the SessionPersistence's options (type, cookie_name, ...);
    tls: the Pool's TLS options (tls_enabled, ca_tls_certificate_id, ...)."""
    pool_id = new_id()
    chosen = members if members is not None else {name: {} for name in network.BACKENDS}
    new_members = [models.Member(id=new_id(), project_id=PROJECT, pool_id=pool_id,
                                 ip_address=addresses[name],
                                 protocol_port=member_port_number,
                                 subnet_id=topology.member_subnet.id,
                                 operating_status=consts.NO_MONITOR,
                                 provisioning_status=consts.ACTIVE,
                                 **({"weight": 1, "backup": False, "enabled": True} | options))
                   for name, options in chosen.items()]
    new = models.Pool(id=pool_id, project_id=PROJECT, protocol=protocol,
                      lb_algorithm=algorithm, enabled=True,
                      members=new_members, load_balancer=topology.lb,
                      load_balancer_id=topology.lb.id, listeners=[], l7policies=[],
                      provisioning_status=consts.ACTIVE, operating_status=consts.ONLINE,
                      **({"tls_enabled": False} | (tls or {})))
    for member in new_members:
        member.pool = new
    if persistence:
        new.session_persistence = models.SessionPersistence(pool_id=pool_id, pool=new,
                                                            **persistence)
    if monitor:
        new.health_monitor = health_monitor(pool_id, monitor, **monitor_kw)
        new.health_monitor.pool = new
    topology.lb.pools.append(new)
    return new


def listener(topology: Topology, protocol: str, port: int, default_pool: models.Pool | None,
             **kw) -> models.Listener:
    new = models.Listener(id=new_id(), project_id=PROJECT, protocol=protocol, protocol_port=port,
                          load_balancer=topology.lb, load_balancer_id=topology.lb.id,
                          default_pool=default_pool,
                          default_pool_id=default_pool.id if default_pool else None,
                          pools=[default_pool] if default_pool else [], l7policies=[],
                          enabled=True, provisioning_status=consts.ACTIVE,
                          operating_status=consts.ONLINE,
                          **({"insert_headers": {}, "sni_containers": [], "allowed_cidrs": []}
                             | kw))
    if default_pool:
        default_pool.listeners.append(new)
    topology.lb.listeners.append(new)
    return new


def l7policy(new_listener: models.Listener, action: str, rules: list[dict], *,
             position: int, **kw) -> models.L7Policy:
    """An L7 policy with its rules (each a dict of L7Rule options: type, compare_type,
    value, key, invert); kw: redirect_pool, redirect_url, redirect_prefix, ..."""
    if "redirect_pool" in kw:
        kw["redirect_pool_id"] = kw["redirect_pool"].id
    policy = models.L7Policy(id=new_id(), listener_id=new_listener.id, listener=new_listener,
                             action=action, position=position, enabled=True,
                             provisioning_status=consts.ACTIVE, l7rules=[], **kw)
    for rule in rules:
        policy.l7rules.append(models.L7Rule(
            id=new_id(), l7policy_id=policy.id, l7policy=policy, enabled=True,
            provisioning_status=consts.ACTIVE, **({"invert": False} | rule)))
    new_listener.l7policies.append(policy)
    target = kw.get("redirect_pool")
    if target is not None:
        target.l7policies.append(policy)
        if target not in new_listener.pools:  # the listener renders a backend per pool
            new_listener.pools.append(target)
            target.listeners.append(new_listener)
    return policy


def redirect_policy(new_listener: models.Listener, path_prefix: str, url: str
                    ) -> models.L7Policy:
    return l7policy(new_listener, consts.L7POLICY_ACTION_REDIRECT_TO_URL,
                    [{"type": consts.L7RULE_TYPE_PATH,
                      "compare_type": consts.L7RULE_COMPARE_TYPE_STARTS_WITH,
                      "value": path_prefix}],
                    position=1, redirect_url=url, redirect_http_code=302)


def delete_listener(driver, lb: models.LoadBalancer, gone: models.Listener) -> None:
    """A listener deleted through the driver and gone from the controller's objects.
    The driver drops a haproxy listener from the LB itself; an LVS listener leaves the
    controller's database when its delete flow ends."""
    driver.delete(gone)
    if gone in lb.listeners:
        lb.listeners.remove(gone)


def drop_listener(lb: models.LoadBalancer, gone: models.Listener) -> None:
    """A listener gone from the controller's objects only (a create flow that reverts,
    or a delete whose update is still to come): the load balancer, its pools and its
    policies' pools."""
    lb.listeners.remove(gone)
    for each in gone.pools:
        each.listeners.remove(gone)
        if not each.listeners:
            lb.pools.remove(each)
