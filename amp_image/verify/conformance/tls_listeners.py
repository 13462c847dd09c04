"""The TLS module's client PKI and load balancer as the controller's objects
(test_tls.py): a CA for the load balancer's users with its clients and CRL, and the
listeners with their certificates, CAs and CRLs stored as the cert manager holds
them.  Building them sends nothing to the amphora."""

from __future__ import annotations

import ssl
from pathlib import Path

from octavia.common import constants as consts

from amp_image.verify.conformance import backends as servers
from amp_image.verify.conformance import controller
from amp_image.verify.conformance.clients import MEMBER_A, MEMBER_B
from amp_image.verify.pki import ThrowawayPKI, issue_ca, issue_client, revocation_list

HTTP, HTTPS = consts.PROTOCOL_HTTP, consts.PROTOCOL_TERMINATED_HTTPS
LISTENER_CN = "tls.conformance.example"
PORTS = {"mandatory": 8801, "optional": 8802, "hsts-versions": 8803,
         "reencrypt": 8811, "reencrypt-revoked-member": 8812, "reencrypt-other-ca": 8813,
         "malformed": 8821}
SSL_HEADERS = ("X-SSL-Client-Verify", "X-SSL-Client-Has-Cert", "X-SSL-Client-DN",
               "X-SSL-Client-CN", "X-SSL-Issuer", "X-SSL-Client-SHA1",
               "X-SSL-Client-Not-Before", "X-SSL-Client-Not-After")
HSTS_MAX_AGE = 31536000
ONLY_CIPHER = "ECDHE-ECDSA-AES256-GCM-SHA384"  # the listener's key is EC


class ClientPKI:
    """The load balancer users' CA, its clients and its CRL (one client revoked)."""

    CA_NAME = "tls-clients"  # not the controller's CA: the issuer header must name this

    def __init__(self, directory: Path) -> None:
        self.ca = issue_ca(self.CA_NAME)
        self.other_ca = issue_ca("other-clients")
        self.clients = {name: issue_client(self.ca, name)
                        for name in ("client-a", "client-b", "revoked")}
        self.clients["other-ca"] = issue_client(self.other_ca, "client-a")
        self.crl = revocation_list(self.ca, [self.clients["revoked"]])
        self.files = {}
        for name, issued in self.clients.items():
            path = directory / f"{name}.pem"
            path.write_bytes(issued.cert_pem + issued.key_pem)
            path.chmod(0o600)
            self.files[name] = path

    def context(self, client: str | None = None, **kw) -> ssl.SSLContext:
        return client_context(self.files[client] if client else None, **kw)


def client_context(cert_file: Path | None = None, *, versions: tuple | None = None,
                   ciphers: str | None = None) -> ssl.SSLContext:
    """A client that does not check the listener (its certificate is not under test),
    presenting cert_file if given; versions: (minimum, maximum) TLSVersion."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(str(cert_file))
    if versions:
        context.minimum_version, context.maximum_version = versions
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def client_auth_listener(topology, port: int, mode: str, refs: dict, **kw):
    return controller.listener(
        topology, HTTPS, port, controller.pool(topology, HTTP, servers.HTTP_PORT),
        tls_certificate_id=refs["listener"], client_authentication=mode,
        client_ca_tls_certificate_id=refs["client_ca"],
        client_crl_container_id=refs["client_crl"], **kw)


def dn_policies(topology, listener) -> None:
    """client-b's CN goes to member B; any other verified client to member A; no
    certificate: the default pool (both)."""
    equal = consts.L7RULE_COMPARE_TYPE_EQUAL_TO
    controller.l7policy(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_SSL_DN_FIELD, "compare_type": equal, "key": "CN",
         "value": "client-b"}], position=1,
        redirect_pool=controller.pool(topology, HTTP, servers.HTTP_PORT,
                                      members={MEMBER_B: {}}))
    controller.l7policy(listener, consts.L7POLICY_ACTION_REDIRECT_TO_POOL, [
        {"type": consts.L7RULE_TYPE_SSL_CONN_HAS_CERT, "compare_type": equal,
         "value": "True"},
        {"type": consts.L7RULE_TYPE_SSL_VERIFY_RESULT, "compare_type": equal, "value": "0"}],
        position=2, redirect_pool=controller.pool(topology, HTTP, servers.HTTP_PORT,
                                                  members={MEMBER_A: {}}))


def reencrypting(topology, port: int, ca_ref: str, crl_ref: str | None, client_ref: str):
    tls = {"tls_enabled": True, "ca_tls_certificate_id": ca_ref,
           "crl_container_id": crl_ref, "tls_certificate_id": client_ref}
    return controller.listener(topology, HTTP, port,
                               controller.pool(topology, HTTP, servers.TLS_PORT, tls=tls))


def make_listeners(topology, client_pki: ClientPKI, backend_pki: ThrowawayPKI) -> dict:
    listener_identity = ThrowawayPKI.create(LISTENER_CN).server
    refs = {"listener": controller.store_certificate(listener_identity.cert_pem,
                                                     listener_identity.key_pem),
            "client_ca": controller.store_secret(client_pki.ca.cert_pem),
            "client_crl": controller.store_secret(client_pki.crl)}
    made = {
        "mandatory": client_auth_listener(
            topology, PORTS["mandatory"], consts.CLIENT_AUTH_MANDATORY, refs,
            insert_headers={name: "true" for name in SSL_HEADERS}),
        "optional": client_auth_listener(topology, PORTS["optional"],
                                          consts.CLIENT_AUTH_OPTIONAL, refs),
        "hsts-versions": controller.listener(
            topology, HTTPS, PORTS["hsts-versions"],
            controller.pool(topology, HTTP, servers.HTTP_PORT),
            tls_certificate_id=refs["listener"], hsts_max_age=HSTS_MAX_AGE,
            hsts_include_subdomains=True, hsts_preload=True,
            tls_versions=["TLSv1.2"], tls_ciphers=ONLY_CIPHER),
    }
    dn_policies(topology, made["optional"])
    retired = issue_client(backend_pki.ca, "retired")
    member_ca = controller.store_secret(backend_pki.ca.cert_pem)
    pool_client = controller.store_certificate(backend_pki.client.cert_pem,
                                               backend_pki.client.key_pem)
    crl = controller.store_secret(revocation_list(backend_pki.ca, [retired]))
    members_revoked = controller.store_secret(revocation_list(backend_pki.ca,
                                                              [backend_pki.server]))
    other_ca = controller.store_secret(backend_pki.rogue_ca.cert_pem)
    made["reencrypt"] = reencrypting(topology, PORTS["reencrypt"], member_ca, crl,
                                      pool_client)
    made["reencrypt-revoked-member"] = reencrypting(
        topology, PORTS["reencrypt-revoked-member"], member_ca, members_revoked, pool_client)
    made["reencrypt-other-ca"] = reencrypting(topology, PORTS["reencrypt-other-ca"],
                                               other_ca, None, pool_client)
    made["refs"] = refs
    return made
