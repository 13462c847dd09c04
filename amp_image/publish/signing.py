"""Glance image signatures, made as Nova and Glance verify them.

Nova (``[glance] verify_glance_signatures``) and Glance verify an image with
``cursive.signature_utils``: the image properties

* ``img_signature``: base64 of the signature over the image data;
* ``img_signature_hash_method``: SHA-224, SHA-256, SHA-384 or SHA-512;
* ``img_signature_key_type``: RSA-PSS, DSA, ECC_SECP384R1 or ECC_SECP521R1;
* ``img_signature_certificate_uuid``: the signing certificate's ID in the key
  manager (Barbican, through castellan)

name a verifier that hashes the image data with the hash method and checks the
signature over that digest with the certificate's public key: RSA-PSS with
MGF1 over the same hash and the maximum salt length, ECDSA, or DSA.  This
module signs exactly so (``Prehashed``: the image is hashed once, streamed).

Glance's documentation also lists the binary curves ECC_SECT571K1,
ECC_SECT409K1, ECC_SECT571R1 and ECC_SECT409R1; cryptography 47 dropped them,
so cursive does not register them and no current Nova or Glance verifies them.
They are refused here rather than published unverifiable.

The private key never leaves this process: it is not written, logged or put on
a command line.  An encrypted key's passphrase comes from
``AMP_SIGN_KEY_PASSPHRASE`` (removed from the environment as soon as it is
read, so nothing amp-image runs inherits it), else from a prompt that does not
echo (only on a terminal), else the command fails.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa, utils

from amp_image.errors import AmpImageError

PASSPHRASE_ENV = "AMP_SIGN_KEY_PASSPHRASE"

# cursive.signature_utils.HASH_METHODS
HASH_METHODS: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA-224": hashes.SHA224, "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384, "SHA-512": hashes.SHA512,
}
DEFAULT_HASH_METHOD = "SHA-256"
RSA_PSS = "RSA-PSS"
DSA = "DSA"
# The curves cursive registers (ECC_ + the curve's name upper-cased).
ECC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECC_SECP384R1": ec.SECP384R1, "ECC_SECP521R1": ec.SECP521R1,
}
KEY_TYPES = (RSA_PSS, DSA, *ECC_CURVES)
DEFAULT_KEY_TYPE = RSA_PSS
# Listed by Glance's documentation, gone from cryptography >= 47 (and so from cursive).
BINARY_CURVES = ("ECC_SECT571K1", "ECC_SECT409K1", "ECC_SECT571R1", "ECC_SECT409R1")

# The Glance image properties (cursive.signature_utils' names).
SIGNATURE = "img_signature"
HASH_METHOD = "img_signature_hash_method"
KEY_TYPE = "img_signature_key_type"
CERT_UUID = "img_signature_certificate_uuid"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey


class SigningError(AmpImageError):
    """The signing key or its options cannot be used."""


@dataclasses.dataclass(frozen=True)
class Signer:
    """A loaded private key and how to sign with it (never printed: repr hides the key)."""

    key: PrivateKey = dataclasses.field(repr=False)
    key_type: str
    hash_method: str
    cert_uuid: str = ""

    @property
    def algorithm(self) -> hashes.HashAlgorithm:
        return HASH_METHODS[self.hash_method]()

    @property
    def key_id(self) -> str:
        """SHA-256 of the public key (DER SubjectPublicKeyInfo), hex: names the key in
        the manifest and the provenance envelope without revealing anything."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a digest made with self.algorithm, as cursive's verifiers check it."""
        prehashed = utils.Prehashed(self.algorithm)
        if isinstance(self.key, rsa.RSAPrivateKey):
            pss = padding.PSS(mgf=padding.MGF1(self.algorithm),
                              salt_length=padding.PSS.MAX_LENGTH)
            return self.key.sign(digest, pss, prehashed)
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(digest, ec.ECDSA(prehashed))
        return self.key.sign(digest, prehashed)

    def sign_bytes(self, data: bytes) -> bytes:
        h = hashes.Hash(self.algorithm)
        h.update(data)
        return self.sign_digest(h.finalize())

    def sign_file(self, path: Path) -> bytes:
        h = hashes.Hash(self.algorithm)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return self.sign_digest(h.finalize())

    def image_properties(self, signature: bytes) -> dict[str, str]:
        """The Glance properties for an image with this signature."""
        props = {SIGNATURE: base64.b64encode(signature).decode("ascii"),
                 HASH_METHOD: self.hash_method, KEY_TYPE: self.key_type}
        if self.cert_uuid:
            props[CERT_UUID] = self.cert_uuid
        return props

    def describe(self) -> dict:
        """What the manifest says about the signature (no key material)."""
        return {HASH_METHOD: self.hash_method, KEY_TYPE: self.key_type,
                CERT_UUID: self.cert_uuid or None, "public_key_sha256": self.key_id}


def check_options(*, hash_method: str, key_type: str | None, cert_uuid: str) -> None:
    """Options that need no key: checked before the key is read (or a passphrase asked)."""
    if hash_method not in HASH_METHODS:
        raise SigningError(f"--hash-method {hash_method}: Glance and Nova verify "
                           f"{', '.join(HASH_METHODS)}")
    if key_type is not None and key_type not in KEY_TYPES:
        if key_type in BINARY_CURVES:
            raise SigningError(
                f"--key-type {key_type}: binary curves are gone from cryptography 47 and "
                "later, so Nova and Glance (cursive) cannot verify them; use "
                f"{', '.join(KEY_TYPES)}")
        raise SigningError(f"--key-type {key_type}: Glance and Nova verify "
                           f"{', '.join(KEY_TYPES)}")
    if cert_uuid:
        try:
            canonical = str(uuid.UUID(cert_uuid))
        except ValueError:
            canonical = ""
        if canonical != cert_uuid.lower():
            raise SigningError(f"--cert-uuid {cert_uuid}: not a UUID; give the signing "
                               "certificate's ID in Barbican (openstack secret store ... "
                               "--secret-type certificate)")


def key_type_for(key: PrivateKey, key_path: Path) -> str:
    """The img_signature_key_type a key signs as; refuses keys cursive cannot verify."""
    if isinstance(key, rsa.RSAPrivateKey):
        return RSA_PSS
    if isinstance(key, dsa.DSAPrivateKey):
        return DSA
    if isinstance(key, ec.EllipticCurvePrivateKey):
        name = "ECC_" + key.curve.name.upper()
        if name in ECC_CURVES:
            return name
        raise SigningError(
            f"--sign-key {key_path}: an EC key on {key.curve.name}, which Nova and Glance "
            "(cursive) do not verify; use an RSA key or an EC key on secp384r1 or secp521r1")
    kind = type(key).__name__.removesuffix("PrivateKey") or "other"
    raise SigningError(f"--sign-key {key_path}: an {kind} key; Glance image signatures use "
                       "RSA (RSA-PSS), EC or DSA keys")


def passphrase_from(env: Mapping[str, str], *, interactive: bool,
                    prompt: Callable[[str], str]) -> Callable[[Path], bytes]:
    """How an encrypted key's passphrase is obtained: env, else a prompt on a terminal."""
    def ask(key_path: Path) -> bytes:
        if env.get(PASSPHRASE_ENV):
            return env[PASSPHRASE_ENV].encode()
        if interactive:
            return prompt(f"Passphrase for {key_path.name}").encode()
        raise SigningError(f"--sign-key {key_path} is encrypted; set {PASSPHRASE_ENV} or run "
                           "on a terminal to be asked for its passphrase")
    return ask


def load_key(key_path: Path, passphrase: Callable[[Path], bytes]) -> PrivateKey:
    """A PEM (or DER) private key; an encrypted one is opened with its passphrase."""
    try:
        data = key_path.read_bytes()
    except FileNotFoundError:
        raise SigningError(f"--sign-key {key_path}: no such file") from None
    except IsADirectoryError:
        raise SigningError(f"--sign-key {key_path} is a folder; give the private key's "
                           "PEM file") from None
    except OSError as exc:
        raise SigningError(f"--sign-key {key_path}: cannot read it ({exc.strerror})") from None
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    try:
        return loader(data, password=None)
    except TypeError:
        pass  # encrypted: needs its passphrase
    except (ValueError, UnsupportedAlgorithm):
        what = ("a certificate, not a private key (the certificate goes to Barbican; sign "
                "with its private key)" if b"CERTIFICATE-----" in data else
                "not a PEM or DER private key" if b"PUBLIC KEY-----" not in data else
                "a public key; sign with the private key")
        raise SigningError(f"--sign-key {key_path}: {what}") from None
    secret = passphrase(key_path)
    try:
        return loader(data, password=secret)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError(f"--sign-key {key_path}: wrong passphrase (or a damaged "
                           "key)") from None


def load_signer(key_path: Path, *, hash_method: str = DEFAULT_HASH_METHOD,
                key_type: str | None = None, cert_uuid: str = "",
                passphrase: Callable[[Path], bytes] | None = None) -> Signer:
    """Check the options, load the key and check that it signs as key_type.

    key_type None: the key's own (RSA keys sign as RSA-PSS, the default)."""
    check_options(hash_method=hash_method, key_type=key_type, cert_uuid=cert_uuid)
    key = load_key(key_path, passphrase or passphrase_from({}, interactive=False,
                                                           prompt=lambda _: ""))
    actual = key_type_for(key, key_path)
    if key_type is not None and key_type != actual:
        raise SigningError(f"--key-type {key_type} does not match --sign-key {key_path}, "
                           f"which signs as {actual}")
    return Signer(key=key, key_type=actual, hash_method=hash_method,
                  cert_uuid=cert_uuid.lower())


def take_passphrase_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """AMP_SIGN_KEY_PASSPHRASE, removed from the environment (children never see it)."""
    environ = os.environ if environ is None else environ
    value = environ.pop(PASSPHRASE_ENV, "")
    return {PASSPHRASE_ENV: value} if value else {}


# --- DSSE (https://github.com/secure-systems-lab/dsse), for the provenance ----------

DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def dsse_envelope(signer: Signer, payload: bytes,
                  payload_type: str = DSSE_PAYLOAD_TYPE) -> dict:
    """A DSSE envelope: the payload signed with the image's key type and hash method."""
    signature = signer.sign_bytes(pae(payload_type, payload))
    return {"payloadType": payload_type,
            "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": f"sha256:{signer.key_id}",
                            "sig": base64.b64encode(signature).decode("ascii")}]}
