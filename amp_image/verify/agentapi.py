"""A client for the amphora agent's REST API, as the Octavia controller talks to it.

Mutual TLS: the client presents a certificate signed by the CA the agent
trusts, verifies the agent's certificate against the same CA, and checks that
the certificate's name is the amphora id (not the address it dialled).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

API_VERSION = "1.0"


class AmphoraIdAdapter(HTTPAdapter):
    """Verify the server certificate's host name against the amphora id."""

    def __init__(self, amphora_id: str, **kw: Any) -> None:
        self.amphora_id = amphora_id
        super().__init__(**kw)

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        kw["assert_hostname"] = self.amphora_id
        kw["server_hostname"] = self.amphora_id
        super().init_poolmanager(*args, **kw)


class AgentClient:
    def __init__(self, port: int, amphora_id: str, ca: Path, client_pem: Path | None,
                 host: str = "127.0.0.1", timeout: float = 30) -> None:
        self.base = f"https://{host}:{port}/{API_VERSION}"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(ca)
        if client_pem is not None:
            self.session.cert = str(client_pem)
        self.session.mount("https://", AmphoraIdAdapter(amphora_id))

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.session.request(method, f"{self.base}/{path.lstrip('/')}", **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def info_ok(self) -> bool:
        """True once GET /info answers 200 over mutual TLS."""
        try:
            return self.get("info", timeout=10).status_code == 200
        except requests.RequestException:
            return False


@dataclass(frozen=True)
class Handshake:
    """How a connection to the agent ended.

    outcome is one of:

    * ``answered``: the agent sent an HTTP answer (it accepted the client);
    * ``refused``: the agent ended the TLS handshake, with a TLS alert or a
      connection reset;
    * ``server-rejected``: this side refused the agent's certificate;
    * ``closed``: the connection ended without an alert or an answer;
    * ``timeout``: connected, then nothing within the timeout;
    * ``connect-error``: no TCP connection at all.
    """

    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.outcome}: {self.detail}" if self.detail else self.outcome


def tls_handshake(host: str, port: int, server_name: str, ca: Path, client_pem: Path | None,
                  timeout: float = 15, verdict_s: float = 10) -> Handshake:
    """Connect as the controller does (or without a client certificate), then
    GET /1.0/info, and say how it ended; see :class:`Handshake`.

    With TLS 1.3 the agent judges the client's certificate after the client's
    Finished, so its alert comes after the handshake: the probe first waits up
    to verdict_s for it, and sends the request only then (sending earlier makes
    the agent's close reset the connection before the alert is read).
    """
    ctx = ssl.create_default_context(cafile=str(ca))
    if client_pem is not None:
        ctx.load_cert_chain(str(client_pem))
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Handshake("connect-error", str(exc) or type(exc).__name__)
    request = (f"GET /{API_VERSION}/info HTTP/1.1\r\nHost: {server_name}\r\n"
               "Connection: close\r\n\r\n").encode()
    answer = b""
    try:
        with raw, ctx.wrap_socket(raw, server_hostname=server_name,
                                  suppress_ragged_eofs=False) as tls:
            tls.settimeout(verdict_s)
            try:
                answer = tls.recv(64)
            except TimeoutError:
                # No verdict: the agent took the certificate and waits for a request.
                tls.settimeout(timeout)
                tls.sendall(request)
                answer = tls.recv(64)
    except ssl.SSLCertVerificationError as exc:
        return Handshake("server-rejected", exc.verify_message or str(exc))
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        return Handshake("closed", str(exc))
    except ssl.SSLError as exc:
        return Handshake("refused", f"TLS alert {exc.reason}" if exc.reason else str(exc))
    except TimeoutError:
        return Handshake("timeout", f"no alert, reset or answer within {timeout:.0f} s")
    except (ConnectionResetError, BrokenPipeError) as exc:
        return Handshake("refused", f"connection reset ({type(exc).__name__})")
    except OSError as exc:
        return Handshake("closed", str(exc) or type(exc).__name__)
    if answer:
        return Handshake("answered", answer.decode(errors="replace").splitlines()[0])
    return Handshake("closed", "end of stream without an alert or an answer")
