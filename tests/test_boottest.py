"""The boot-test harness without a VM: cleanup on early failures and on SIGTERM."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from amp_image.errors import PlanError
from amp_image.image.records import ImageRecord
from amp_image.verify import boottest
from amp_image.verify.vmspec import Flavor


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """TMPDIR for the code under test, so leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp


@pytest.mark.parametrize("failing", ["ssh_keypair", "_config_drive", "choose_accel"])
def test_booted_amphora_removes_its_files_on_an_early_failure(private_tmp, monkeypatch,
                                                              failing):
    """PKI, client files, SSH key and config drive go, whatever fails first."""
    def fail(*args, **kw):
        raise RuntimeError(f"{failing} failed")

    monkeypatch.setattr(boottest, failing, fail)
    monkeypatch.setattr(boottest, "read_image_record", lambda image: ImageRecord())
    with pytest.raises(RuntimeError, match=failing), \
            boottest.booted_amphora(private_tmp / "none.qcow2"):
        pytest.fail("never booted")
    assert list(private_tmp.iterdir()) == []


# --- the agent handshake probe, against local stand-ins for the agent -----------------

class StandInAgent:
    """A TLS server on 127.0.0.1 that answers like the agent: mutual TLS with
    client_ca.pem when ``ca`` is given, any client (or none) otherwise; silent
    (TCP only) with tls=False."""

    def __init__(self, pki, tmp_path: Path, *, verify_clients: bool = True,
                 tls: bool = True, tls_max: str = "TLSv1_3") -> None:
        import socket
        import ssl
        import threading

        self.files = pki.write_client_files(tmp_path / "client")
        server_pem = tmp_path / "server.pem"
        server_pem.write_bytes(pki.server_pem())
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(server_pem)
            self.ctx.maximum_version = ssl.TLSVersion[tls_max]
            if verify_clients:
                self.ctx.verify_mode = ssl.CERT_REQUIRED
                self.ctx.load_verify_locations(self.files["ca"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import ssl

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.ctx is None:
                self.held.append(conn)     # never a word
                continue
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def pki():
    from amp_image.verify.pki import ThrowawayPKI

    return ThrowawayPKI.create("amp-1")


def _probe(agent: StandInAgent, client: str | None, name: str = "amp-1", timeout=10):
    from amp_image.verify.agentapi import tls_handshake

    pem = agent.files[client] if client else None
    return tls_handshake("127.0.0.1", agent.port, name, agent.files["ca"], pem, timeout,
                         verdict_s=1)


@pytest.mark.parametrize("tls_max", ["TLSv1_3", "TLSv1_2"])
def test_handshake_probe_outcomes_against_an_agent(pki, tmp_path, tls_max):
    """TLS 1.3 refuses a client after the handshake, TLS 1.2 during it: both are refusals."""
    agent = StandInAgent(pki, tmp_path, tls_max=tls_max)
    try:
        assert _probe(agent, "client").outcome == "answered"
        rogue = _probe(agent, "rogue_client")
        assert rogue.outcome == "refused", rogue
        bare = _probe(agent, None)
        assert bare.outcome == "refused", bare
        other = _probe(agent, "client", name="another-amphora")
        assert other.outcome == "server-rejected", other
    finally:
        agent.close()


def test_handshake_probe_tells_acceptance_silence_and_no_connection_apart(pki, tmp_path):
    """What must fail the refusal checks: an agent that lets anyone in, one that
    says nothing, and a port nobody listens on."""
    import socket

    lax = StandInAgent(pki, tmp_path / "lax", verify_clients=False)
    silent = StandInAgent(pki, tmp_path / "silent", tls=False)
    try:
        assert _probe(lax, "rogue_client").outcome == "answered"
        assert _probe(lax, None).outcome == "answered"
        assert _probe(silent, "rogue_client", timeout=1).outcome == "timeout"
    finally:
        lax.close()
        silent.close()
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed_port = s.getsockname()[1]
    from amp_image.verify.agentapi import tls_handshake

    result = tls_handshake("127.0.0.1", closed_port, "amp-1", lax.files["ca"],
                           lax.files["rogue_client"], 2)
    assert result.outcome == "connect-error", result


@pytest.mark.parametrize("text,flavor", [
    ("1,1024,3", Flavor(1, 1024, 3)),
    ("2,1536,0", Flavor(2, 1536, None)),
])
def test_flavor_parses_as_openstack_flavor_create_takes_it(text, flavor):
    assert Flavor.parse(text) == flavor
    assert str(Flavor.parse(text)) == str(flavor)
    assert Flavor.parse(flavor.as_option()) == flavor


@pytest.mark.parametrize("text,problem", [
    ("1,1024", "is not VCPUS,RAM_MB,DISK_GB"),
    ("one,1024,3", "is not VCPUS,RAM_MB,DISK_GB"),
    ("0,1024,3", "at least 1 vCPU"),
    ("1,128,3", "256 MiB"),
])
def test_a_bad_flavor_is_refused_with_the_form_it_takes(text, problem):
    with pytest.raises(PlanError, match=problem):
        Flavor.parse(text)
