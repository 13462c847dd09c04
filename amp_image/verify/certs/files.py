"""Reading the operator's files for check-certs: the CA, the client certificate and its
key (PEM), with one-line errors for what cannot be read or parsed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from amp_image.errors import AmpImageError


class CertInputError(AmpImageError):
    """A certificate or key file that cannot be read or parsed."""


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertInputError(f"{what} {path}: {exc.strerror or exc}") from None


def _certificates(data: bytes, path: Path, what: str) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertInputError(f"{what} {path}: no PEM certificate (-----BEGIN CERTIFICATE-----) "
                             "in it")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertInputError(f"{what} {path}: malformed PEM certificate ({exc})") from None


def _private_key(data: bytes, path: Path, what: str):
    """The first private key in a PEM file; None if the file has none.

    Raises :class:`EncryptedKey` for a key protected by a passphrase.
    """
    begin = data.find(b"-----BEGIN ")
    while begin != -1:
        end_of_label = data.find(b"-----", begin + 11)
        label = data[begin + 11:end_of_label]
        if label.endswith(b"PRIVATE KEY"):
            end = data.find(b"-----END " + label + b"-----", end_of_label)
            if end == -1:
                raise CertInputError(f"{what} {path}: truncated private key")
            block = data[begin:end + len(label) + 14]
            if label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block:
                raise EncryptedKey(path)
            try:
                return serialization.load_pem_private_key(block, password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                raise CertInputError(f"{what} {path}: malformed private key ({exc})") from None
        begin = data.find(b"-----BEGIN ", begin + 11)
    return None


class EncryptedKey(Exception):
    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


@dataclass
class ClientFiles:
    ca_path: Path
    ca: list[x509.Certificate]
    leaf: x509.Certificate
    chain: list[x509.Certificate]
    key: object | None          # None: encrypted
    key_path: Path


def read_inputs(ca: Path, client_cert: Path, client_key: Path | None = None) -> ClientFiles:
    """Parse the CA file, the client certificate (with its key, or a separate key file)."""
    ca, client_cert = Path(ca), Path(client_cert)
    ca_certs = _certificates(_read(ca, "--ca"), ca, "--ca")
    cert_data = _read(client_cert, "--client-cert")
    certs = _certificates(cert_data, client_cert, "--client-cert")
    key_path = Path(client_key) if client_key else client_cert
    key_data = _read(key_path, "--client-key") if client_key else cert_data
    what = "--client-key" if client_key else "--client-cert"
    try:
        key = _private_key(key_data, key_path, what)
    except EncryptedKey:
        key = None
    else:
        if key is None:
            raise CertInputError(
                f"{what} {key_path}: no private key in it; pass the key with --client-key, or "
                "the file Octavia uses as [haproxy_amphora] client_cert (certificate and key)")
    return ClientFiles(ca, ca_certs, certs[0], certs[1:], key, key_path)
