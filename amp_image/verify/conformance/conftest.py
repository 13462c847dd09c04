"""Fixtures of the conformance run: networks, backends, heartbeats, the VM, the driver.

Everything here runs inside the run's private network namespace (see
network.py).  The VM is booted once for the whole run, with its VIP and
member NICs on the two bridges, and the agent's port forwarded 9443 -> 9443
so the controller's ``bind_port`` and the agent's are the same, as in a cloud.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from amp_image.verify import import_audit
from amp_image.verify.boottest import booted_amphora
from amp_image.verify.checks.plugin import flavor_option, image_under_test
from amp_image.verify.conformance import backends as backend_servers
from amp_image.verify.conformance import controller, log_offload, network
from amp_image.verify.conformance.heartbeats import HeartbeatReceiver
from amp_image.verify.conformance.log_receiver import LogReceiver
from amp_image.verify.pki import ThrowawayPKI
from amp_image.verify.vmspec import Flavor, Nic

AGENT_PORT = 9443
HEARTBEAT_INTERVAL = 2
RESULTS_KEY = pytest.StashKey[list]()
HOST_KEY = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amp-image")
    group.addoption("--conformance-report",
                    help="Write each scenario's outcome and duration (JSON) here.")
    group.addoption("--import-audit-dir",
                    help="Leave each VM's agent venv file times here when its scenarios end "
                         "(see amp_image.verify.import_audit).")


def record_venv_reads(config: pytest.Config, booted, name: str) -> None:
    """With --import-audit-dir: the VM's agent venv file times, before the VM goes."""
    target = config.getoption("--import-audit-dir")
    if not target:
        return
    try:
        listing = booted.testinfra_host().run(import_audit.LISTING_COMMAND)
    except Exception:  # a VM that no longer answers leaves no listing
        return
    if listing.rc == 0:
        (Path(target) / f"{name}.txt").write_text(listing.stdout)


STARTED_KEY = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = []
    config.stash[STARTED_KEY] = time.monotonic()


@pytest.fixture(scope="session")
def segments() -> None:
    network.create_segments()


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("certs")


def write_pair(directory: Path, name: str, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    return cert, key


@pytest.fixture(scope="session")
def backend_pki() -> ThrowawayPKI:
    """The members' own TLS identity (CN "backend"): what HTTPS passthrough shows.  Its
    CA also signs the client certificate a re-encrypting pool presents (CN
    "controller"), which the members' TLS servers name in their answers."""
    return ThrowawayPKI.create("backend")


@pytest.fixture(scope="session")
def backends(segments, backend_pki, certs_dir):
    """Each member's servers; HTTP and UDP also at its IPv6 address, HTTP at its
    address on the SR-IOV member subnet."""
    files = write_pair(certs_dir, "backend", backend_pki.server.cert_pem,
                       backend_pki.server.key_pem)
    client_ca = certs_dir / "backend-client-ca.crt"
    client_ca.write_bytes(backend_pki.ca.cert_pem)
    servers = backend_servers.Backends.start_all(network.BACKENDS, files, client_ca)
    for member, address in network.BACKENDS6.items():
        servers.add("http", member, address)
        servers.add("udp", member, address)
    for member, address in network.SRIOV_BACKENDS.items():
        servers.add("http", member, address)
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def heartbeats():
    receiver = HeartbeatReceiver(key=controller.HEARTBEAT_KEY).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def log_receiver():
    """The shared amphora's log targets (log_offload.py), listening before it boots."""
    receiver = LogReceiver(log_offload.PORTS).start()
    yield receiver
    receiver.stop()


def ordinary_nics() -> list[Nic]:
    """The VM's VIP and member NICs as ordinary (virtio) ports."""
    return [network.VIP_SEGMENT.tap("tap-vip0", network.VIP_MAC),
            network.MEMBER_SEGMENT.tap("tap-mbr0", network.MEMBER_MAC)]


@contextmanager
def own_amphora(request: pytest.FixtureRequest, nics: list[Nic], name: str,
                flavor: Flavor | None = None, rsyslog_conf: str | None = None):
    """A booted amphora on these NICs, gone (with its taps) when the block ends.
    rsyslog_conf: the controller's 10-rsyslog.conf for its config drive."""
    config = request.config
    workdir = config.getoption("--amp-workdir")
    try:
        with booted_amphora(image_under_test(config),
                            workdir=Path(workdir) / name if workdir else None,
                            accel=config.getoption("--amp-accel"),
                            boot=config.getoption("--amp-boot"), extra_nics=nics,
                            flavor=flavor or flavor_option(config),
                            host_ports={22: 22, AGENT_PORT: AGENT_PORT},
                            rsyslog_conf=rsyslog_conf) as booted:
            yield booted
            record_venv_reads(config, booted, name)
    finally:
        request.config.stash[HOST_KEY] = None
        for nic in nics:
            network.delete_link(network.tap_name(nic))


@pytest.fixture(scope="session")
def amphora(request, segments, log_receiver):
    """The amphora on ordinary ports, booted once and shared, in this order, by
    test_conformance.py (its VIP and member plugs, then every listener, deleted at
    its end), test_controller_pki.py (no listener), then test_tls.py, test_ipv6.py,
    test_logging.py and test_matrix.py (listeners of their own on the same plugs and
    on ports of their own, left to go with the VM; the matrix, whose UDP listeners
    make every later update reload keepalived three times, last).  Modules that need
    another VM (the SR-IOV VIP, ACTIVE_STANDBY's pair) override this fixture and run
    first (amp-image test --conformance orders them), so two VMs never share the two
    cores.  Its config drive carries the controller's rsyslog configuration for log
    offloading to log_receiver (test_logging.py)."""
    with own_amphora(request, ordinary_nics(), "ordinary-ports",
                     rsyslog_conf=log_offload.rsyslog_conf()) as booted:
        yield booted


@pytest.fixture(scope="module")
def amphora_host(request, amphora):
    host = amphora.testinfra_host()
    request.config.stash[HOST_KEY] = host
    return host


@dataclass
class Octavia:
    """The controller: Octavia's driver, its REST client, and the LB's objects."""

    driver: object
    client: object
    topology: controller.Topology

    @property
    def amp(self):
        return self.topology.amphora

    @property
    def lb(self):
        return self.topology.lb


def make_octavia(amphora, heartbeats, cert_dir: Path) -> Octavia:
    """The controller's driver and client, configured for this amphora's PKI."""
    controller.configure(client_pem=amphora.client_files["client"],
                         ca_pem=amphora.client_files["ca"], agent_port=AGENT_PORT,
                         cert_dir=cert_dir)
    controller.CONF.set_override("controller_ip_port_list", [heartbeats.controller],
                                 "health_manager")
    controller.CONF.set_override("heartbeat_interval", HEARTBEAT_INTERVAL, "health_manager")
    return Octavia(controller.driver(), controller.api_client(),
                   controller.make_topology(amphora.amphora_id))


@pytest.fixture(scope="session")
def octavia(amphora, heartbeats, tmp_path_factory) -> Octavia:
    """The shared amphora's controller and load balancer (one, as in a cloud)."""
    return make_octavia(amphora, heartbeats, tmp_path_factory.mktemp("cert-manager"))


# --- reporting ---------------------------------------------------------------------

JOURNAL = ("journalctl --no-pager -n 40 -u amphora-agent -u 'haproxy-*' "
           "-u 'octavia-keepalived*' -u amphora-netns -u prometheus-proxy -u rsyslog 2>&1")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.config.stash[RESULTS_KEY].append(
            {"scenario": item.name, "feature": feature_of(item), "outcome": report.outcome,
             "seconds": round(report.duration, 1), **dict(item.user_properties)})
        host = item.config.stash.get(HOST_KEY, None)
        if report.failed and host is not None:
            try:
                journal = host.run(JOURNAL).stdout
            except Exception as exc:  # noqa: BLE001  (the VM may be gone)
                journal = f"(journal unavailable: {exc})"
            report.sections.append(("amphora journal", journal))
    return report


def feature_of(item) -> str:
    doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
    return doc.rstrip(".")


def pytest_sessionfinish(session, exitstatus) -> None:
    target = session.config.getoption("--conformance-report")
    if target:
        wall = time.monotonic() - session.config.stash[STARTED_KEY]
        Path(target).write_text(json.dumps({"finished": time.time(),
                                            "wall_seconds": round(wall),
                                            "scenarios": session.config.stash[RESULTS_KEY]},
                                           indent=2) + "\n")
