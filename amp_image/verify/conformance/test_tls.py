"""TLS on the shared amphora beyond SNI and ALPN: what octavia-tempest-plugin's
barbican_scenario/test_tls_barbican asks of an amphora.

Runs after test_conformance.py on the shared VM, with listeners of its own (they go
with the VM, as the later modules' do).  The CA certificates and CRLs are stored as the
controller's cert manager holds secrets, and the driver uploads them as it does
from Barbican; every claim is seen by a real TLS client on the VIP bridge or by
the members' TLS servers:

- client authentication MANDATORY and OPTIONAL with a CA and a CRL: no
  certificate, a revoked one, one from another CA and a valid one;
- the X-SSL-Client-* headers, and the L7 rules SSL_CONN_HAS_CERT,
  SSL_VERIFY_RESULT and SSL_DN_FIELD;
- HSTS, and the listener's tls_versions and ciphers;
- pool re-encryption to HTTPS members, verified against the pool's CA and CRL,
  with the pool's client certificate;
- a malformed CRL or CA is refused, and the listeners already there keep serving.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from octavia.amphorae.drivers.haproxy import exceptions as driver_exceptions
from octavia.common import constants as consts

from amp_image.verify.conformance import clients, controller, network
from amp_image.verify.conformance.clients import MEMBER_A, MEMBER_B, http_get, members_answering
from amp_image.verify.conformance.plugs import ensure_plugged
from amp_image.verify.conformance.tls_listeners import (
    HSTS_MAX_AGE,
    LISTENER_CN,
    ONLY_CIPHER,
    PORTS,
    ClientPKI,
    client_auth_listener,
    client_context,
    make_listeners,
)

MALFORMED = {"CRL": b"-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n",
             "CA": b"-----BEGIN CERTIFICATE-----\nbm90IGEgQ0E=\n-----END CERTIFICATE-----\n"}


def tls_refusal(port: int, context: ssl.SSLContext) -> str:
    """The reason the listener gives for refusing this client's TLS session (an alert's
    name, e.g. SSLV3_ALERT_CERTIFICATE_REVOKED); fails if it serves the client.  Under
    TLS 1.3 the server's verdict on a client certificate comes after the client's
    handshake ends, so it is read with the first answer."""
    try:
        status, _, _ = http_get(port, tls=context, server_name=LISTENER_CN)
    except ssl.SSLError as refusal:
        return refusal.reason or str(refusal)
    except (ConnectionResetError, BrokenPipeError) as cut:
        return f"connection cut: {cut}"
    raise AssertionError(f"port {port} served the client (HTTP {status})")


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory) -> ClientPKI:
    return ClientPKI(tmp_path_factory.mktemp("tls-clients"))


@pytest.fixture(scope="module")
def tls_listeners(octavia, amphora_host, backends, backend_pki, client_pki):
    """This module's listeners on the shared amphora, in one update.  It plugs the VIP
    and member ports only when no module before it did (run alone with -k)."""
    ensure_plugged(octavia, amphora_host)
    made = make_listeners(octavia.topology, client_pki, backend_pki)
    octavia.driver.update_amphora_listeners(octavia.lb, octavia.amp)
    octavia.driver.start(octavia.lb, octavia.amp)
    return made


def test_tls_listeners_configured_and_started(tls_listeners, amphora_host):
    """TLS listeners with client CA, CRL, HSTS and re-encrypting pools: every one
    listening."""
    listening = amphora_host.check_output(f"{clients.NS} ss -ltnH")
    for name, port in PORTS.items():
        if name != "malformed":
            assert f"{network.VIP}:{port}" in listening, (name, listening)
    clients.wait_until(lambda: members_answering(PORTS["reencrypt"]) == {MEMBER_A, MEMBER_B}, 60,
               "both members behind the re-encrypting pool")


# --- client authentication ----------------------------------------------------------

def test_mandatory_client_auth_serves_only_a_valid_client(tls_listeners, client_pki):
    """Client authentication MANDATORY with CA and CRL: a valid client is served; none,
    a revoked one and one from another CA are refused."""
    port = PORTS["mandatory"]
    status, _, body = http_get(port, tls=client_pki.context("client-a"),
                               server_name=LISTENER_CN)
    assert status == 200, body
    refusals = {client: tls_refusal(port, client_pki.context(client))
                for client in (None, "revoked", "other-ca")}
    assert "CERTIFICATE_REQUIRED" in refusals[None] or "HANDSHAKE_FAILURE" in refusals[None], \
        refusals
    assert "CERTIFICATE_REVOKED" in refusals["revoked"], refusals
    assert "UNKNOWN_CA" in refusals["other-ca"], refusals


def _echoed(body: str) -> dict[str, str]:
    """The request headers a member echoed (lower-case names), quotes stripped."""
    pairs = (line.partition(": ") for line in body.splitlines()[1:] if ": " in line)
    return {name: value.strip('"') for name, _, value in pairs}


def test_ssl_client_headers_describe_the_client(tls_listeners, client_pki):
    """insert_headers X-SSL-Client-*: the members see the client certificate's facts."""
    client = client_pki.clients["client-a"]
    status, _, body = http_get(PORTS["mandatory"], tls=client_pki.context("client-a"),
                               server_name=LISTENER_CN)
    assert status == 200, body
    seen = _echoed(body)
    der = client.cert.public_bytes(Encoding.DER)
    assert seen["x-ssl-client-verify"] == "0", seen
    assert seen["x-ssl-client-has-cert"] == "1", seen
    assert seen["x-ssl-client-cn"] == "client-a", seen
    assert "/CN=client-a" in seen["x-ssl-client-dn"], seen
    assert f"/CN={client_pki.CA_NAME}" in seen["x-ssl-issuer"], seen
    assert seen["x-ssl-client-sha1"].lower() == hashlib.sha1(der).hexdigest(), seen
    for edge in ("x-ssl-client-not-before", "x-ssl-client-not-after"):
        assert re.fullmatch(r"\d{12}Z", seen[edge]), seen


def test_optional_client_auth_routes_by_certificate(tls_listeners, client_pki):
    """Client authentication OPTIONAL with L7 rules SSL_CONN_HAS_CERT, SSL_VERIFY_RESULT
    and SSL_DN_FIELD: no certificate reaches the default pool, each client its own
    member; a revoked client is still refused."""
    port, name = PORTS["optional"], {"server_name": LISTENER_CN}
    assert members_answering(port, tls=client_pki.context(), **name) == {MEMBER_A, MEMBER_B}
    assert members_answering(port, tls=client_pki.context("client-a"), **name) == {MEMBER_A}
    assert members_answering(port, tls=client_pki.context("client-b"), **name) == {MEMBER_B}
    assert "CERTIFICATE_REVOKED" in tls_refusal(port, client_pki.context("revoked"))


# --- the listener's TLS settings ----------------------------------------------------

def test_hsts_header_on_every_answer(tls_listeners):
    """HSTS: max-age, includeSubDomains and preload in Strict-Transport-Security."""
    status, headers, body = http_get(PORTS["hsts-versions"], tls=client_context(),
                                     server_name=LISTENER_CN)
    assert status == 200, body
    assert headers.get("strict-transport-security") == \
        f"max-age={HSTS_MAX_AGE}; includeSubDomains; preload;", headers


def test_tls_versions_and_ciphers_are_the_listeners(tls_listeners):
    """tls_versions and tls_ciphers: TLS 1.2 with the one cipher; TLS 1.3 and other
    ciphers refused."""
    port = PORTS["hsts-versions"]
    tls12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    with socket.create_connection((network.VIP, port), timeout=5) as raw, \
            client_context(versions=tls12).wrap_socket(raw) as conn:
        assert conn.version() == "TLSv1.2" and conn.cipher()[0] == ONLY_CIPHER, conn.cipher()
    only13 = client_context(versions=(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3))
    assert "PROTOCOL_VERSION" in tls_refusal(port, only13) or \
        "UNSUPPORTED_PROTOCOL" in tls_refusal(port, only13)
    other = client_context(versions=tls12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "HANDSHAKE_FAILURE" in tls_refusal(port, other)


# --- re-encryption to the members ---------------------------------------------------

def test_pool_reencrypts_with_its_client_certificate(tls_listeners):
    """Pool re-encryption (tls_enabled, CA, CRL, client certificate): the members are
    reached over TLS and see the pool's client certificate."""
    for _ in range(4):
        status, _, body = http_get(PORTS["reencrypt"])
        assert status == 200, body
        assert _echoed(body).get("x-peer-cn") == "controller", body


@pytest.mark.parametrize("name", ["reencrypt-revoked-member", "reencrypt-other-ca"])
def test_pool_refuses_members_its_ca_or_crl_rejects(tls_listeners, name):
    """Pool re-encryption verifies the members: one whose certificate the pool's CRL
    revokes, or that another CA signed, gets no request."""
    status, _, body = http_get(PORTS[name])
    assert status == 503, (status, body)


# --- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("part", ["CRL", "CA"])
def test_malformed_client_ca_or_crl_is_refused_and_listeners_keep_serving(
        octavia, tls_listeners, client_pki, part, caplog):
    """A malformed client CRL or CA through the driver: the agent refuses the update,
    naming the file in haproxy's configuration check, and the listeners already there
    keep serving."""
    refs = dict(tls_listeners["refs"])
    refs["client_crl" if part == "CRL" else "client_ca"] = controller.store_secret(
        MALFORMED[part])
    bad = client_auth_listener(octavia.topology, PORTS["malformed"],
                                consts.CLIENT_AUTH_MANDATORY, refs)
    try:
        with pytest.raises(driver_exceptions.InvalidRequest):
            octavia.driver.update_amphora_listeners(octavia.lb, octavia.amp)
    finally:
        controller.drop_listener(octavia.lb, bad)
    # The driver raises a bare InvalidRequest and logs the agent's answer.
    answers = [r.getMessage() for r in caplog.records if "result code 400" in r.getMessage()]
    bad_file = hashlib.sha1(MALFORMED[part]).hexdigest() + ".pem"  # the driver's name
    assert any(bad_file in answer for answer in answers), answers
    status, _, body = http_get(PORTS["mandatory"], tls=client_pki.context("client-a"),
                               server_name=LISTENER_CN)
    assert status == 200, body
    assert members_answering(PORTS["reencrypt"]) == {MEMBER_A, MEMBER_B}
