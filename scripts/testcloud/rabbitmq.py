"""RabbitMQ from Debian's package: a node of the cloud's own (its data, cookie and
epmd under the cloud's folder, every port on loopback; the system's rabbitmq-server
service is never started)."""

from __future__ import annotations

import shutil
import socket

from testcloud import daemons
from testcloud.layout import CloudDir, State, write_private

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def start(cloud: CloudDir, state: State) -> None:
    """Start the node; wait_ready() waits for it (it takes ~10 s, so the databases are
    set up meanwhile)."""
    if not shutil.which(SERVER):
        raise daemons.DaemonError(f"{SERVER} not found; run scripts/setup-host --cloud "
                                  f"(installs rabbitmq-server)")
    home = cloud.service("rabbitmq")
    (home / "mnesia").mkdir(parents=True, mode=0o700)
    write_private(home / "enabled_plugins", "[].\n")
    write_private(home / "rabbitmq.conf", "\n".join((
        f"listeners.tcp.1 = 127.0.0.1:{state.ports['rabbitmq']}",
        "default_user = amp",
        f"default_pass = {state.passwords['rabbitmq']}",
        "loopback_users = none",
        "",
    )))
    daemons.start(cloud, "rabbitmq", [SERVER], extra_env={
        "HOME": str(home),  # its Erlang cookie
        "RABBITMQ_NODENAME": "amp-test-cloud@localhost",
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(cloud.logs),
        "RABBITMQ_DIST_PORT": str(state.ports["rabbitmq_dist"]),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_PORT": str(state.ports["epmd"]),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }, cwd=home)


def wait_ready(cloud: CloudDir, state: State) -> None:
    daemons.wait_for(cloud, "rabbitmq", lambda: _accepts(state.ports["rabbitmq"]),
                     timeout=120)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False
