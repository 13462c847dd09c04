"""The controller's PKI as operators make it, against the real agent: a client
certificate and a CA made with openssl as Octavia's certificate guide makes them (and
three ways operators get them wrong), trusted by the shared amphora's agent one at a
time, each accepted or refused as ``amp-image check-certs`` predicts.

Runs on the shared amphora after test_conformance.py; it touches no listener and
puts the agent's client_ca.pem back after each case.
"""

from __future__ import annotations

import base64
import socket
import ssl

import pytest

from amp_image.image.python_version import parse_python_version
from amp_image.verify.certs.check import check_client
from amp_image.verify.guide_pki import make_guide_pki


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The controller PKI made with openssl as Octavia's certificate guide makes it."""
    return make_guide_pki(tmp_path_factory.mktemp("guide") / "pki", ca_bits=2048)


@pytest.fixture(scope="module")
def agent_python(amphora_host) -> tuple[int, int]:
    return parse_python_version(amphora_host.check_output("python3 --version").split()[1])


def _agent_accepts(amphora, amphora_host, trusted_ca: bytes, client_pem) -> bool:
    """Trust trusted_ca for clients (the agent reads client_ca.pem on every connection),
    then call GET /info with client_pem, verifying the agent as the controller does."""
    ca_file = "/etc/octavia/certs/client_ca.pem"
    original = amphora_host.file(ca_file).content
    amphora_host.run_expect([0], f"echo {base64.b64encode(trusted_ca).decode()} | base64 -d "
                                 f"> {ca_file}")
    try:
        context = ssl.create_default_context(cadata=amphora.pki.ca.cert_pem.decode())
        context.check_hostname = False
        context.load_cert_chain(str(client_pem))
        with socket.create_connection(("127.0.0.1", amphora.machine.ports[9443]), 10) as raw, \
                context.wrap_socket(raw) as conn:
            conn.sendall(b"GET /1.0/info HTTP/1.0\r\nHost: amphora\r\n\r\n")
            status_line = conn.recv(4096).split(b"\r\n", 1)[0].split()
            return len(status_line) > 1 and status_line[1] == b"200"
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False
    finally:
        amphora_host.run_expect([0], f"echo {base64.b64encode(original).decode()} | base64 -d "
                                     f"> {ca_file}")


@pytest.mark.parametrize("client,trusted", [
    ("client_cert_and_key", "client_ca"),
    ("v1_client_cert_and_key", "client_ca"),
    ("legacy_client_cert_and_key", "legacy_client_ca"),
    ("other_ca_client_cert_and_key", "client_ca"),
], ids=["guide", "v1-client", "CA-without-keyUsage", "other-CA"])
def test_controller_pki_as_operators_make_it(amphora, amphora_host, guide, agent_python,
                                             client, trusted):
    """Controller PKI: the real agent decides as `amp-image check-certs` predicts."""
    ca, cert = getattr(guide, trusted), getattr(guide, client)
    predicted = check_client(ca, cert, agent_python=agent_python)
    assert _agent_accepts(amphora, amphora_host, ca.read_bytes(), cert) == predicted.accepted, \
        predicted.reason
    expected = {"client_cert_and_key": True, "v1_client_cert_and_key": True,
                "other_ca_client_cert_and_key": False,
                # Python >= 3.13 verifies with X509_STRICT (trixie); 3.11 does not (bookworm).
                "legacy_client_cert_and_key": agent_python < (3, 13)}[client]
    assert predicted.accepted == expected, predicted.reason
