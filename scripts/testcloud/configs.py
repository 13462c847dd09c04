"""The services' configuration files (pure: state and paths in, ini sections out)."""

from __future__ import annotations

import configparser
import io
import json
from pathlib import Path

from testcloud.layout import CloudDir, State

Sections = dict[str, dict[str, str]]

SERVICE_PROJECT = "service"
REGION = "RegionOne"
# The seed's SR-IOV compute host, as nova-compute names itself.
COMPUTE_HOST = "sriov-host.example.org"


def render(sections: Sections) -> str:
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keep keys as written
    for name, options in sections.items():
        if name != "DEFAULT":
            parser.add_section(name)
        for key, value in options.items():
            parser.set(name, key, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def service_auth(state: State, user: str) -> dict[str, str]:
    """keystoneauth password options for a service's own user in the service project."""
    return {
        "auth_url": state.auth_url,
        "auth_type": "password",
        "username": user,
        "password": state.passwords[user],
        "project_name": SERVICE_PROJECT,
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region_name": REGION,
    }


def authtoken(state: State, user: str) -> dict[str, str]:
    return {"www_authenticate_uri": state.auth_url, **service_auth(state, user)}


def logging_to(cloud: CloudDir, name: str) -> dict[str, str]:
    return {"log_file": str(cloud.logs / f"{name}.log"), "debug": "False"}


def keystone(cloud: CloudDir, state: State) -> Sections:
    home = cloud.service("keystone")
    return {
        "DEFAULT": logging_to(cloud, "keystone"),
        "database": {"connection": f"{state.database}/keystone"},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": str(home / "fernet-keys")},
        "credential": {"key_repository": str(home / "credential-keys")},
        # bcrypt's fewest rounds: every client start authenticates, and the tests start
        # hundreds (a cloud of generated passwords that lives for one test run).
        "identity": {"password_hash_rounds": "4"},
    }


def glance(cloud: CloudDir, state: State) -> Sections:
    home = cloud.service("glance")
    return {
        "DEFAULT": {**logging_to(cloud, "glance"), "enabled_backends": "file:file"},
        "database": {"connection": f"{state.database}/glance"},
        "keystone_authtoken": authtoken(state, "glance"),
        "paste_deploy": {"flavor": "keystone",
                         "config_file": str(home / "glance-api-paste.ini")},
        "glance_store": {"default_backend": "file"},
        "file": {"filesystem_store_datadir": str(home / "images")},
        "os_glance_staging_store": {"filesystem_store_datadir": str(home / "staging")},
        "os_glance_tasks_store": {"filesystem_store_datadir": str(home / "tasks")},
        "oslo_concurrency": {"lock_path": str(home / "locks")},
    }


def placement(cloud: CloudDir, state: State) -> Sections:
    return {
        "DEFAULT": logging_to(cloud, "placement"),
        "placement_database": {"connection": f"{state.database}/placement"},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": authtoken(state, "placement"),
    }


def nova(cloud: CloudDir, state: State) -> Sections:
    """One nova.conf for the API, the conductor and the compute host (each process
    names its own log file on its command line)."""
    home = cloud.service("nova")
    return {
        "DEFAULT": {
            "host": COMPUTE_HOST,
            "compute_driver": "fake.FakeDriver",
            "transport_url": state.transport_url,
            "state_path": str(home / "state"),
            "instances_path": str(home / "instances"),
            "my_ip": "127.0.0.1",
            "debug": "False",
        },
        "api": {"auth_strategy": "keystone"},
        "wsgi": {"api_paste_config": str(home / "api-paste.ini")},
        "api_database": {"connection": f"{state.database}/nova_api"},
        "database": {"connection": f"{state.database}/nova"},
        "keystone_authtoken": authtoken(state, "nova"),
        "placement": {**service_auth(state, "nova"), "valid_interfaces": "public"},
        "oslo_concurrency": {"lock_path": str(home / "locks")},
        "scheduler": {"discover_hosts_in_cells_interval": "-1"},
        "vnc": {"enabled": "False"},
    }


def octavia(cloud: CloudDir, state: State, name: str = "octavia", port: int = 0,
            database: str = "octavia") -> Sections:
    """The Octavia API's; name, port and database differ for an older one beside it."""
    return {
        "DEFAULT": {**logging_to(cloud, name), "transport_url": state.transport_url},
        "api_settings": {
            "bind_host": "127.0.0.1",
            "bind_port": str(port or state.ports["octavia"]),
            "auth_strategy": "keystone",
            "enabled_provider_drivers": "amphora:The Octavia Amphora driver.",
            "default_provider_driver": "amphora",
        },
        "database": {"connection": f"{state.database}/{database}"},
        "keystone_authtoken": authtoken(state, "octavia"),
        # What the amphora provider checks a flavor profile's compute_flavor with.
        "service_auth": service_auth(state, "octavia"),
        "nova": {"region_name": REGION, "endpoint_type": "public"},
        "oslo_messaging": {"topic": "octavia_prov"},
    }


CONFIGS = {"keystone": keystone, "glance": glance, "placement": placement, "nova": nova,
           "octavia": octavia}
CONFIG_FILES = {"keystone": "keystone.conf", "glance": "glance-api.conf",
                "placement": "placement.conf", "nova": "nova.conf",
                "octavia": "octavia.conf"}


def config_path(cloud: CloudDir, service: str) -> Path:
    return cloud.service(service) / CONFIG_FILES[service]


def clouds_yaml(state: State, name: str) -> str:
    """The clouds.yaml entry of the cloud's admin (JSON is YAML)."""
    return json.dumps({"clouds": {name: {
        "auth": {"auth_url": state.auth_url, "username": "admin",
                 "password": state.passwords["admin"], "project_name": "admin",
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": REGION, "identity_api_version": "3",
    }}}, indent=2) + "\n"
