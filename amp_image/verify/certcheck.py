"""Will an amphora's agent accept the controller's client certificate?

The amphora agent is gunicorn over Python's ``ssl`` with mutual TLS. gunicorn
makes its context with ``ssl.create_default_context(Purpose.CLIENT_AUTH,
cafile=client_ca.pem)`` and sets ``verify_mode = CERT_REQUIRED``. From Python
3.13 (Debian trixie images) that default context also sets
``VERIFY_X509_STRICT`` and ``VERIFY_X509_PARTIAL_CHAIN``, and OpenSSL's strict
mode refuses CA certificates without keyUsage, with a non-critical
basicConstraints or without a subject key identifier, and v3 client
certificates without an authority key identifier. Python 3.11 (bookworm
images) accepts them.

:func:`check_client` answers with a real TLS handshake on 127.0.0.1: a server
configured as gunicorn is on the agent's Python (whatever the host's Python
is), a throw-away server certificate, and a client presenting the operator's
certificate and key. The handshake decides; :func:`lint` reads the
certificates with ``cryptography`` to say why, and how to fix it.

OpenSSL is the host's. Measured: OpenSSL 3.0 (bookworm) and 3.5 (trixie) give
the same verdicts for the cases :func:`lint` names. A bare v1 client
certificate (no extensions) issued by a proper CA is accepted by both, strict
or not; :func:`lint` still points it out.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amp_image.errors import AmpImageError
from amp_image.verify.pki import ThrowawayPKI

STRICT_PYTHON = (3, 13)
STRICT_FLAGS = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
HANDSHAKE_TIMEOUT_S = 10.0
PYTHON_VERSION = re.compile(r"(?:\d+:)?(\d+)\.(\d+)(?:[.~+-][\w.~+-]*)?$")

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


class CertInputError(AmpImageError):
    """A certificate or key file that cannot be read or parsed."""


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


@dataclass
class CertCheck:
    accepted: bool
    agent_python: tuple[int, int]
    client: str = ""                 # the client certificate's subject
    issuer: str = ""
    not_after: datetime.datetime | None = None
    reason: str = ""                 # OpenSSL's verify reason (or why no handshake was tried)
    verify_code: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def strict(self) -> bool:
        return self.agent_python >= STRICT_PYTHON

    @property
    def cause(self) -> Finding | None:
        """The finding that explains the refusal."""
        if self.accepted:
            return None
        blocking = [f for f in self.findings if f.refuses]
        if self.verify_code is not None:
            for finding in blocking:
                if self.verify_code in finding.codes:
                    return finding
        return blocking[0] if blocking else None

    @property
    def fix(self) -> str:
        cause = self.cause
        if cause:
            return cause.line()
        if self.accepted:
            return ""
        return (f"compare the certificates with {GUIDE}: the client certificate made with "
                "usr_cert, its CA with v3_ca")

    def agent(self) -> str:
        version = ".".join(map(str, self.agent_python))
        return f"an agent on Python {version}{' (X509_STRICT)' if self.strict else ''}"

    def message(self) -> str:
        """One line for the operator."""
        if self.accepted:
            until = f", valid until {self.not_after:%Y-%m-%d}" if self.not_after else ""
            return f"accepted: {self.agent()} accepts {self.client}, issued by {self.issuer}{until}"
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.agent()} refuses the client certificate{reason}: {self.fix}"

    def advice(self) -> list[str]:
        """Findings that did not stop this handshake, one line each."""
        cause = self.cause
        return [f.line() for f in self.findings if f is not cause
                and (self.accepted or not f.refuses)]


# -- reading the operator's files ---------------------------------------------------------

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


# -- static lint --------------------------------------------------------------------------

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


def _issuer_path(leaf, ca_certs, chain) -> tuple[list[x509.Certificate], bool]:
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
    path, anchored = _issuer_path(leaf, files.ca, files.chain)
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


# -- the handshake ------------------------------------------------------------------------

def agent_context(ca_path: Path, server_cert: Path, agent_python: tuple[int, ...]
                  ) -> ssl.SSLContext:
    """The server context gunicorn makes for the agent on that Python."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_path))
    ctx.load_cert_chain(str(server_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tuple(agent_python[:2]) >= STRICT_PYTHON:
        ctx.verify_flags |= STRICT_FLAGS
    else:
        ctx.verify_flags &= ~STRICT_FLAGS
    return ctx


def _private_file(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def handshake(ca_path: Path, leaf: x509.Certificate, chain: list[x509.Certificate], key,
              agent_python: tuple[int, ...]) -> tuple[bool, str, int | None]:
    """(accepted, OpenSSL's reason, verify code) from a TLS handshake on 127.0.0.1."""
    pem = serialization.Encoding.PEM
    server = ThrowawayPKI.create("amp-image-certcheck")
    outcome: dict = {}
    with tempfile.TemporaryDirectory(prefix="amp-image-certcheck.") as tmp:
        tmp = Path(tmp)
        server_pem = _private_file(tmp / "server.pem", server.server_pem())
        client_pem = _private_file(tmp / "client.pem", b"".join(
            c.public_bytes(pem) for c in [leaf, *chain]))
        client_key = _private_file(tmp / "client.key", key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        try:
            server_ctx = agent_context(ca_path, server_pem, agent_python)
        except ssl.SSLError as exc:
            raise CertInputError(f"--ca {ca_path}: OpenSSL cannot load it ({exc})") from None
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        # Whatever the controller's host allows: only the agent's side is judged here.
        client_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        client_ctx.load_cert_chain(str(client_pem), str(client_key))

        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(HANDSHAKE_TIMEOUT_S)

            def serve() -> None:
                try:
                    conn, _ = listener.accept()
                except OSError as exc:
                    outcome["error"] = f"no connection: {exc}"
                    return
                with conn:
                    conn.settimeout(HANDSHAKE_TIMEOUT_S)
                    try:
                        with server_ctx.wrap_socket(conn, server_side=True) as tls:
                            outcome["accepted"] = True
                            tls.sendall(b"ok")
                    except ssl.SSLCertVerificationError as exc:
                        outcome["reason"] = exc.verify_message or exc.reason or str(exc)
                        outcome["code"] = exc.verify_code
                    except (ssl.SSLError, OSError) as exc:
                        outcome["reason"] = getattr(exc, "reason", None) or str(exc)

            thread = threading.Thread(target=serve, name="certcheck-agent", daemon=True)
            thread.start()
            try:
                with socket.create_connection(listener.getsockname(),
                                              timeout=HANDSHAKE_TIMEOUT_S) as raw, \
                        client_ctx.wrap_socket(raw) as tls:
                    tls.recv(2)   # TLS 1.3: the agent verifies the client after our Finished
            except (ssl.SSLError, OSError):
                pass              # the agent's side is the verdict
            thread.join(HANDSHAKE_TIMEOUT_S + 1)
    if thread.is_alive() or "error" in outcome:
        raise AmpImageError(f"the test handshake on 127.0.0.1 did not complete: "
                            f"{outcome.get('error', 'timed out')}")
    if outcome.get("accepted"):
        return True, "", None
    return False, str(outcome.get("reason", "handshake failed")), outcome.get("code")


def check_client(ca: Path, client_cert: Path, client_key: Path | None = None,
                 agent_python: tuple[int, ...] = STRICT_PYTHON) -> CertCheck:
    """Does an agent on ``agent_python`` accept this controller client certificate?

    ``ca`` is the CA the agent trusts for clients (the amphora's ``client_ca.pem``,
    Octavia's ``[controller_worker] client_ca``); ``client_cert`` is the controller's
    ``[haproxy_amphora] client_cert``: certificate and key, or the certificate with
    ``client_key`` beside it. Raises :class:`CertInputError` for unreadable files.
    """
    files = read_inputs(ca, client_cert, client_key)
    version = tuple(agent_python[:2])
    result = CertCheck(accepted=False, agent_python=version, client=describe(files.leaf),
                       issuer=describe(files.ca[0]), not_after=files.leaf.not_valid_after_utc,
                       findings=lint(files))
    path, anchored = _issuer_path(files.leaf, files.ca, files.chain)
    if anchored:
        result.issuer = describe(path[-1])
    static = [f for f in result.findings if f.refuses and not f.codes]
    if static:   # an encrypted or mismatched key: the controller could not even connect
        result.reason = "no handshake: the controller could not use this certificate and key"
        return result
    result.accepted, result.reason, result.verify_code = handshake(
        files.ca_path, files.leaf, files.chain, files.key, version)
    return result


# -- the image's Python -------------------------------------------------------------------

def parse_python_version(text: str) -> tuple[int, int]:
    """'3.13', '3.13.5' or a Debian version such as '3.13.5-1' or '3.11.2-1+b1' -> (3, 13)."""
    match = PYTHON_VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not a Python version: {text!r} (expected e.g. 3.13)")
    if match[1] != "3":
        raise ValueError(f"not a Python 3 version: {text!r}")
    return int(match[1]), int(match[2])


def _python3_version(packages: dict[str, str]) -> tuple[int, int] | None:
    if packages.get("python3"):
        return parse_python_version(packages["python3"])
    minors = [parse_python_version(name.removeprefix("python").removesuffix("-minimal"))
              for name in packages
              if name.startswith("python3.") and name.removesuffix("-minimal")[8:].isdigit()]
    return max(minors) if minors else None


def python_version_of_image(image: Path) -> tuple[int, int]:
    """The agent's Python in a built image: the version of its ``python3`` package.

    Read from DIB's dpkg manifest beside the image (``NAME.d/dib-manifests``, via
    :func:`amp_image.image.records.read_record`) when it is there, else from the image's
    own dpkg database (a read-only loop mount with :func:`amp_image.image.imagefs.mounted_image`,
    which needs root).
    """
    from amp_image.image import imagefs
    from amp_image.image.dpkg import parse_dpkg_status
    from amp_image.image.records import default_manifests, read_record

    image = Path(image)
    if not image.is_file():
        raise CertInputError(f"--image {image}: no such image")
    try:
        found = _python3_version(read_record(default_manifests(image).parent).packages)
    except (ValueError, KeyError) as exc:
        raise CertInputError(f"--image {image}: unreadable DIB manifest beside it ({exc})"
                             ) from None
    if found:
        return found
    with imagefs.mounted_image(image) as root:
        status = root / "var/lib/dpkg/status"
        text = status.read_text(errors="replace") if status.is_file() else ""
    found = _python3_version({p.name: p.version for p in parse_dpkg_status(text)})
    if not found:
        raise CertInputError(f"--image {image}: no python3 package in the image's dpkg "
                             "database; pass --agent-python")
    return found
