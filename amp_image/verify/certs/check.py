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
from dataclasses import dataclass, field
from pathlib import Path

from amp_image.verify.certs.files import read_inputs
from amp_image.verify.certs.handshake import STRICT_PYTHON, handshake
from amp_image.verify.certs.lint import GUIDE, Finding, describe, issuer_path, lint


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
    path, anchored = issuer_path(files.leaf, files.ca, files.chain)
    if anchored:
        result.issuer = describe(path[-1])
    static = [f for f in result.findings if f.refuses and not f.codes]
    if static:   # an encrypted or mismatched key: the controller could not even connect
        result.reason = "no handshake: the controller could not use this certificate and key"
        return result
    result.accepted, result.reason, result.verify_code = handshake(
        files.ca_path, files.leaf, files.chain, files.key, version)
    return result
