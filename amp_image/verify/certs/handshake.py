"""The test handshake: a server configured as gunicorn configures the agent's on that
Python, on 127.0.0.1, and a client presenting the operator's certificate and key."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from amp_image.errors import AmpImageError
from amp_image.verify.certs.files import CertInputError
from amp_image.verify.pki import ThrowawayPKI

STRICT_PYTHON = (3, 13)
STRICT_FLAGS = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
HANDSHAKE_TIMEOUT_S = 10.0


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
