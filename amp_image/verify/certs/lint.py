"""What is wrong with a controller's client certificate, its key and its CA, read with
``cryptography`` (pure): each finding says why the agent refuses it, and the fix."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amp_image.verify.certs.files import ClientFiles

GUIDE = "Octavia's certificate guide"
USR_CERT = (f"the usr_cert extensions of {GUIDE} (basicConstraints CA:FALSE, keyUsage, "
            "extendedKeyUsage clientAuth, subjectKeyIdentifier, authorityKeyIdentifier)")
V3_CA = (f"the v3_ca extensions of {GUIDE} (basicConstraints critical CA:TRUE, keyUsage "
         "critical keyCertSign and cRLSign, subjectKeyIdentifier)")
REISSUE_CA = ("re-issue the CA certificate from the same key and subject (certificates it "
              f"issued stay valid) with {V3_CA}")
REISSUE_CLIENT = f"re-issue the client certificate with {USR_CERT}"

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code gives them.
NOT_ISSUED = frozenset({2, 20, 21})   # no issuer cert; not locally; can't verify leaf signature
BAD_SIGNATURE = frozenset({7})
NOT_YET_VALID = frozenset({9})
EXPIRED = frozenset({10})
INVALID_CA = frozenset({24, 79})
INVALID_PURPOSE = frozenset({26})
KEY_TOO_SMALL = frozenset({66, 67})
KU_CERTSIGN_FOR_NON_CA = frozenset({82})
MISSING_AKI = frozenset({85})
MISSING_SKI = frozenset({86})
CA_BCONS_NOT_CRITICAL = frozenset({89})
AKI_CRITICAL = frozenset({90})
SKI_CRITICAL = frozenset({91})
CA_MISSING_KEY_USAGE = frozenset({92})


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the certificates, and what to do about it."""

    problem: str
    fix: str
    codes: frozenset[int] = frozenset()   # the verify codes it explains
    strict_only: bool = False             # refused only with X509_STRICT (Python >= 3.13)
    refuses: bool = True                  # False: advice only; OpenSSL accepts it

    def line(self) -> str:
        return f"{self.problem}: {self.fix}"


def describe(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={names[0].value}" if names else (cert.subject.rfc4514_string() or "(no subject)")


def _ext(cert: x509.Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def issuer_path(leaf, ca_certs, chain) -> tuple[list[x509.Certificate], bool]:
    """The CA certificates above the leaf, up to one in the CA file; and whether one was."""
    path, current = [], leaf
    for _ in range(8):
        anchor = next((c for c in ca_certs if _issued_by(current, c)), None)
        if anchor is not None:
            return [*path, anchor], True
        step = next((c for c in chain if c is not current and _issued_by(current, c)), None)
        if step is None or step in path:
            return path, False
        path.append(step)
        current = step
    return path, False


def _validity(cert, who: str, now: datetime.datetime) -> list[Finding]:
    if cert.not_valid_after_utc < now:
        return [Finding(f"{who} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                        f"issue a new one ({GUIDE} makes them for 7300 days)", EXPIRED)]
    if cert.not_valid_before_utc > now:
        return [Finding(f"{who} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                        "UTC", "check the clock of the host that issued it", NOT_YET_VALID)]
    return []


def _lint_ca(ca: x509.Certificate, now: datetime.datetime) -> list[Finding]:
    who = f"the CA certificate {describe(ca)}"
    if ca.version == x509.Version.v1:
        return [Finding(f"{who} is a v1 certificate (no X.509v3 extensions)", REISSUE_CA,
                        INVALID_CA, strict_only=True), *_validity(ca, who, now)]
    found = []
    bc = _ext(ca, x509.BasicConstraints)
    ku = _ext(ca, x509.KeyUsage)
    if bc is None:
        found.append(Finding(f"{who} has no basicConstraints extension", REISSUE_CA, INVALID_CA,
                             strict_only=ku is not None))
    elif not bc.value.ca:
        found.append(Finding(f"{who} has basicConstraints CA:FALSE: it is no CA", REISSUE_CA,
                             INVALID_CA))
    elif not bc.critical:
        found.append(Finding(f"{who} has a basicConstraints extension not marked critical",
                             REISSUE_CA, CA_BCONS_NOT_CRITICAL, strict_only=True))
    if ku is None:
        found.append(Finding(f"{who} has no keyUsage extension", REISSUE_CA,
                             CA_MISSING_KEY_USAGE, strict_only=True))
    elif not ku.value.key_cert_sign:
        found.append(Finding(f"{who} has a keyUsage without keyCertSign", REISSUE_CA,
                             INVALID_CA))
    if _ext(ca, x509.SubjectKeyIdentifier) is None:
        found.append(Finding(f"{who} has no subject key identifier", REISSUE_CA, MISSING_SKI,
                             strict_only=True))
    return found + _validity(ca, who, now)


def _lint_leaf(leaf: x509.Certificate, now: datetime.datetime) -> list[Finding]:
    who = f"the client certificate {describe(leaf)}"
    found = []
    if leaf.version == x509.Version.v1:
        found.append(Finding(f"{who} has no X.509v3 extensions (a v1 certificate, as a bare "
                             "'openssl x509 -req' makes)", REISSUE_CLIENT, refuses=False))
    else:
        aki = _ext(leaf, x509.AuthorityKeyIdentifier)
        if aki is None or aki.value.key_identifier is None:
            found.append(Finding(f"{who} has no authority key identifier (keyid)",
                                 REISSUE_CLIENT, MISSING_AKI, strict_only=True))
        elif aki.critical:
            found.append(Finding(f"{who} has its authority key identifier marked critical",
                                 REISSUE_CLIENT, AKI_CRITICAL, strict_only=True))
        ski = _ext(leaf, x509.SubjectKeyIdentifier)
        if ski is not None and ski.critical:
            found.append(Finding(f"{who} has its subject key identifier marked critical",
                                 REISSUE_CLIENT, SKI_CRITICAL, strict_only=True))
        eku = _ext(leaf, x509.ExtendedKeyUsage)
        if eku is not None and not {ExtendedKeyUsageOID.CLIENT_AUTH,
                                    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku.value):
            found.append(Finding(f"{who} has an extendedKeyUsage without clientAuth",
                                 REISSUE_CLIENT, INVALID_PURPOSE))
        ku = _ext(leaf, x509.KeyUsage)
        bc = _ext(leaf, x509.BasicConstraints)
        if ku is not None:
            if not (ku.value.digital_signature or ku.value.key_agreement):
                found.append(Finding(f"{who} has a keyUsage without digitalSignature",
                                     REISSUE_CLIENT, INVALID_PURPOSE))
            if ku.value.key_cert_sign and not (bc and bc.value.ca):
                found.append(Finding(f"{who} has keyUsage keyCertSign but is no CA",
                                     REISSUE_CLIENT, KU_CERTSIGN_FOR_NON_CA, strict_only=True))
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        found.append(Finding(f"{who} has a {key.key_size}-bit RSA key (OpenSSL's security "
                             "level 2 needs 2048)", "issue it for a new 2048-bit or larger key",
                             KEY_TOO_SMALL))
    return found + _validity(leaf, who, now)


def lint(files: ClientFiles, now: datetime.datetime | None = None) -> list[Finding]:
    """What is wrong with the client certificate, its key and the CA, as far as can be read."""
    now = now or datetime.datetime.now(datetime.UTC)
    leaf = files.leaf
    found = []
    if files.key is None:
        found.append(Finding(
            f"the client key in {files.key_path} is encrypted",
            "the controller reads [haproxy_amphora] client_cert without a passphrase: decrypt "
            f"the key into it as step 14 of {GUIDE} does ('openssl rsa', then append the "
            "certificate)"))
    elif files.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo):
        found.append(Finding(f"the private key in {files.key_path} does not match the client "
                             f"certificate {describe(leaf)}",
                             "pass the key the certificate was issued for"))
    path, anchored = issuer_path(leaf, files.ca, files.chain)
    found += _lint_leaf(leaf, now)
    if not anchored:
        same_name = [c for c in files.ca if c.subject == leaf.issuer]
        cas = ", ".join(describe(c) for c in files.ca)
        if same_name:
            found.append(Finding(
                f"the client certificate names {describe(same_name[0])} as issuer, but that "
                f"CA's key did not sign it (a CA re-made with a new key?)",
                "re-issue the client certificate with the current client CA key",
                BAD_SIGNATURE | NOT_ISSUED))
        else:
            issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            issuer_name = f"CN={issuer[0].value}" if issuer else leaf.issuer.rfc4514_string()
            found.append(Finding(
                f"the client certificate was issued by {issuer_name}, not by the CA in "
                f"{files.ca_path} ({cas})",
                "pass the CA that issued it, or issue the client certificate from the client CA "
                "whose certificate the amphorae get as client_ca.pem ([controller_worker] "
                "client_ca)", NOT_ISSUED | BAD_SIGNATURE))
    for ca in path:
        found += _lint_ca(ca, now)
    return found
