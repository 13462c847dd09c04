"""The controller's side of log offloading: the amphora's rsyslog configuration.

The controller's compute task (octavia/controller/worker/v2/tasks/compute_tasks.py)
renders ``/etc/rsyslog.d/10-rsyslog.conf`` with ``LoggingJinjaTemplater`` from its
``[amphora_agent]`` options and puts it on the amphora's config drive; cloud-init
writes it and restarts rsyslog.  Here the same templater renders it with the options
an operator sets to offload the logs and keep none on the amphora: a tenant and an
admin log target (this run's receiver, log_receiver.py, as the guest sees it),
``log_protocol``, and ``disable_local_log_storage``.
"""

from __future__ import annotations

from octavia.common.config import cfg
from octavia.common.jinja.logging import logging_jinja_cfg

from amp_image.verify.conformance.heartbeats import CONTROLLER_IN_GUEST

CONF = cfg.CONF
# Octavia's guide offloads to 10514; the admin logs get a port of their own here, so
# that the receiver tells which target each message was sent to.
PORTS = {"tenant": 10514, "admin": 10515}
# The shared amphora's config drive carries Octavia's default protocol.
ON_THE_DRIVE = "UDP"


def amphora_agent_options(protocol: str) -> dict[str, object]:
    """The [amphora_agent] options of octavia.conf that turn log offloading on."""
    return {"tenant_log_targets": [f"{CONTROLLER_IN_GUEST}:{PORTS['tenant']}"],
            "admin_log_targets": [f"{CONTROLLER_IN_GUEST}:{PORTS['admin']}"],
            "log_protocol": protocol,
            "disable_local_log_storage": True}


def rsyslog_conf(protocol: str = ON_THE_DRIVE) -> str:
    """10-rsyslog.conf as the controller renders it for the config drive, with these
    options set for the rendering only (CONF is left as it was)."""
    options = amphora_agent_options(protocol)
    for name, value in options.items():
        CONF.set_override(name, value, "amphora_agent")
    try:
        templater = logging_jinja_cfg.LoggingJinjaTemplater(
            CONF.amphora_agent.logging_template_override)
        return templater.build_logging_config()
    finally:
        for name in options:
            CONF.clear_override(name, "amphora_agent")
