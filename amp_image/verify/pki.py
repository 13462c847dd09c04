"""A throw-away PKI for boot tests, made the way the Octavia controller's is.

* a CA whose certificate goes to the amphora as ``client_ca.pem``: the agent
  only accepts clients it signed;
* the amphora's server certificate (CN = amphora id) with its key appended,
  as ``server.pem``; the client checks it against the same CA and checks the
  host name equals the amphora id, as the controller does;
* a client certificate for the test harness;
* a second, unrelated CA and client, which the agent must refuse.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "amp-image test"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.cert)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)


def _issue(subject: str, issuer: Issued | None, *, ca: bool, usage=None,
           san: str | None = None) -> Issued:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    # Python >= 3.13 verifies with X509_STRICT: CAs need keyCertSign and a
    # subject key id, leaves an authority key id, as real PKIs issue them.
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False), critical=True)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]),
                                        critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@dataclass
class ThrowawayPKI:
    amphora_id: str
    ca: Issued
    server: Issued
    client: Issued
    rogue_ca: Issued
    rogue_client: Issued

    @classmethod
    def create(cls, amphora_id: str) -> ThrowawayPKI:
        ca = _issue("amp-image test CA", None, ca=True)
        rogue_ca = _issue("unrelated CA", None, ca=True)
        return cls(
            amphora_id=amphora_id,
            ca=ca,
            server=_issue(amphora_id, ca, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                          san=amphora_id),
            client=_issue("controller", ca, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH),
            rogue_ca=rogue_ca,
            rogue_client=_issue("intruder", rogue_ca, ca=False,
                                usage=ExtendedKeyUsageOID.CLIENT_AUTH),
        )

    def issue_server(self, amphora_id: str) -> Issued:
        """A fresh server certificate from the same CA, as certificate rotation issues it."""
        return _issue(amphora_id, self.ca, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                      san=amphora_id)

    def for_amphora(self, amphora_id: str) -> ThrowawayPKI:
        """The same controller PKI (CA, clients) with a server certificate for another
        amphora, as one controller's CA signs every amphora's."""
        return dataclasses.replace(self, amphora_id=amphora_id,
                                   server=self.issue_server(amphora_id))

    def server_pem(self) -> bytes:
        """What the controller sends as server.pem: certificate, then its key."""
        return self.server.cert_pem + self.server.key_pem

    def write_client_files(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "ca": (directory / "ca.pem", self.ca.cert_pem),
            "client": (directory / "client.pem", self.client.cert_pem + self.client.key_pem),
            "rogue_client": (directory / "rogue-client.pem",
                             self.rogue_client.cert_pem + self.rogue_client.key_pem),
        }
        for path, data in files.values():
            path.write_bytes(data)
            path.chmod(0o600)
        return {name: path for name, (path, _) in files.items()}


def issue_ca(common_name: str) -> Issued:
    """A self-signed CA of its own (a load balancer's users' CA, not the controller's)."""
    return _issue(common_name, None, ca=True)


def issue_client(ca: Issued, common_name: str) -> Issued:
    """A TLS client certificate signed by this CA (client authentication)."""
    return _issue(common_name, ca, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)


def revocation_list(ca: Issued, revoked: list[Issued]) -> bytes:
    """The CA's CRL (PEM) revoking these certificates, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.cert.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=1))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False)
               .add_extension(x509.CRLNumber(1), critical=False))
    for gone in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(gone.cert.serial_number)
            .revocation_date(now - datetime.timedelta(minutes=1)).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def ssh_keypair(directory: Path) -> tuple[Path, str]:
    """An ed25519 key for the test harness: (private key file, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = directory / "id_ed25519"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} amp-image-test"
