"""The config drive the Octavia controller gives an amphora (ISO9660, label config-2).

Layout as Nova writes it (openstack/latest/{meta_data,network_data}.json,
user_data, and the "personality" files under openstack/content/), read by
cloud-init's ConfigDrive datasource, which writes the files on first boot.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pycdlib
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from amp_image import PACKAGE_DIR

AGENT_CONF = "/etc/octavia/amphora-agent.conf"
SERVER_PEM = "/etc/octavia/certs/server.pem"
CLIENT_CA = "/etc/octavia/certs/client_ca.pem"
RSYSLOG_CONF = "/etc/rsyslog.d/10-rsyslog.conf"
BASE_CERT_DIR = "/var/lib/octavia/certs"


TEMPLATES = Environment(loader=FileSystemLoader(PACKAGE_DIR / "templates"),
                        undefined=StrictUndefined, keep_trailing_newline=True,
                        autoescape=False)


def agent_conf(amphora_id: str, controller: str | Sequence[str],
               topology: str = "SINGLE") -> str:
    """amphora-agent.conf as the controller renders it (from Octavia's template)."""
    controllers = [controller] if isinstance(controller, str) else list(controller)
    return TEMPLATES.get_template("amphora_agent_conf.template").render(
        debug=False,
        administrative_log_facility=1,
        user_log_facility=0,
        base_cert_dir=BASE_CERT_DIR,
        base_path="/var/lib/octavia",
        bind_host="::",
        bind_port=9443,
        haproxy_cmd="/usr/sbin/haproxy",
        respawn_count=2,
        respawn_interval=2,
        controller_list=controllers,
        heartbeat_interval=10,
        heartbeat_key="amp-image-test",
        agent_server_ca=CLIENT_CA,
        agent_server_cert=SERVER_PEM,
        agent_server_network_dir="",
        agent_request_read_timeout=180,
        amphora_id=amphora_id,
        amphora_udp_driver="keepalived_lvs",
        agent_tls_protocol="TLSv1.2",
        topology=topology,
    )


RSYSLOG = textwrap.dedent("""\
    # Tenant (local0) and administrative (local1) logs; a controller would
    # forward them to its log targets, the test keeps them on the amphora.
    local0.* /var/log/octavia-tenant-traffic.log
    local1.* /var/log/octavia-amphora.log
    """)

USER_DATA = textwrap.dedent("""\
    #cloud-config
    # What the controller sends (rsyslog picks up 10-rsyslog.conf), plus root
    # access for the test harness's key.
    disable_root: false
    runcmd:
      - systemctl restart rsyslog
    """)


@dataclass
class ConfigDrive:
    amphora_id: str
    files: dict[str, bytes]
    ssh_public_key: str = ""
    mgmt_mac: str = ""
    extra_meta: dict = field(default_factory=dict)

    def meta_data(self) -> dict:
        content = [{"path": path, "content_path": f"/content/{i:04d}"}
                   for i, path in enumerate(self.files)]
        meta = {
            "uuid": self.amphora_id,
            "name": f"amphora-{self.amphora_id}",
            "hostname": f"amphora-{self.amphora_id}",
            "availability_zone": "nova",
            "launch_index": 0,
            "project_id": "amp-image-test",
            "files": content,
            "meta": {},
            "devices": [],
        }
        if self.ssh_public_key:
            meta["public_keys"] = {"amp-image-test": self.ssh_public_key}
            meta["keys"] = [{"name": "amp-image-test", "type": "ssh",
                             "data": self.ssh_public_key}]
        meta.update(self.extra_meta)
        return meta

    def network_data(self) -> dict:
        link = {"id": "mgmt0", "type": "phy", "mtu": 1500}
        if self.mgmt_mac:
            link["ethernet_mac_address"] = self.mgmt_mac
        return {
            "links": [link],
            "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": "mgmt0",
                          "network_id": "lb-mgmt-net"}],
            "services": [],
        }

    def entries(self) -> dict[str, bytes]:
        tree = {
            "openstack/latest/meta_data.json": json.dumps(self.meta_data()).encode(),
            "openstack/latest/network_data.json": json.dumps(self.network_data()).encode(),
            "openstack/latest/vendor_data.json": b"{}",
            "openstack/latest/user_data": USER_DATA.encode(),
        }
        for i, data in enumerate(self.files.values()):
            tree[f"openstack/content/{i:04d}"] = data
        return tree

    def write(self, path: Path) -> Path:
        write_iso(path, self.entries(), label="config-2")
        return path


def _iso_name(part: str, is_file: bool) -> str:
    name = "".join(c if c.isalnum() else "_" for c in part.upper())
    return name + (";1" if is_file else "")


def write_iso(path: Path, entries: dict[str, bytes], label: str) -> None:
    """An ISO9660 image with Rock Ridge and Joliet names, like genisoimage -R -J."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=label)
    made: set[str] = set()
    for rel, data in entries.items():
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory in made:
                continue
            made.add(directory)
            iso.add_directory(
                "/" + "/".join(_iso_name(p, False) for p in parts[:depth]),
                rr_name=parts[depth - 1],
                joliet_path="/" + directory,
            )
        iso.add_fp(
            io.BytesIO(data), len(data),
            "/" + "/".join(_iso_name(p, i == len(parts) - 1) for i, p in enumerate(parts)),
            rr_name=parts[-1],
            joliet_path="/" + rel,
        )
    tmp = path.with_name(path.name + ".partial")
    iso.write(str(tmp))
    iso.close()
    tmp.replace(path)
