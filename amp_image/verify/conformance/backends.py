"""Real backend servers on the member network, each one stoppable on its own.

Every member runs an HTTP server (port 80), a TLS server speaking HTTP (443:
HTTPS passthrough and TLS-HELLO monitors see the member's own certificate)
and a UDP echo server (5353).  Each answer names the member, so the client
side can tell which backend the load balancer picked; an HTTP answer also echoes
the request's X- headers, sets an application session cookie, and comes late
for /slow/SECONDS.  The TLS server asks for a client certificate (optional: a
client without one is served) and names a verified client's CN in its answer as
``x-peer-cn``, so a pool's client certificate can be seen.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HTTP_PORT = 80
TLS_PORT = 443
UDP_PORT = 5353
APP_COOKIE = "JSESSIONID"
SLOW_PATH = "/slow/"


class _Handler(http.server.BaseHTTPRequestHandler):
    member = "?"

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        if self.path.startswith(SLOW_PATH):  # /slow/SECONDS: answer late
            time.sleep(float(self.path.removeprefix(SLOW_PATH)))
        echoed = "".join(f"{name.lower()}: {value}\n" for name, value in self.headers.items()
                         if name.lower().startswith("x-"))
        peer = _peer_common_name(self.connection)
        if peer:
            echoed += f"x-peer-cn: {peer}\n"
        body = f"{self.member} {self.path}\n{echoed}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        # The application's own session cookie (what APP_COOKIE persistence follows).
        self.send_header("Set-Cookie", f"{APP_COOKIE}={self.member}-session")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _peer_common_name(connection) -> str | None:
    """The CN of a TLS client's verified certificate, if it sent one."""
    peer = connection.getpeercert() if isinstance(connection, ssl.SSLSocket) else None
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _HTTP6Server(_HTTPServer):
    address_family = socket.AF_INET6


class _UDPEcho(socketserver.BaseRequestHandler):
    member = "?"

    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(f"{self.member} ".encode() + data, self.client_address)


class _UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UDP6Server(_UDPServer):
    address_family = socket.AF_INET6


@dataclass
class Service:
    """One server of one member: start() and stop() as often as a test likes."""

    kind: str
    member: str
    address: str
    port: int
    tls_files: tuple[Path, Path] | None = None
    client_ca: Path | None = None
    server: socketserver.BaseServer | None = field(default=None, repr=False)

    def _make(self) -> socketserver.BaseServer:
        attrs = {"member": self.member}
        if self.kind == "udp":
            udp_type = _UDP6Server if ":" in self.address else _UDPServer
            return udp_type((self.address, self.port), type("H", (_UDPEcho,), attrs))
        server_type = _HTTP6Server if ":" in self.address else _HTTPServer
        server = server_type((self.address, self.port), type("H", (_Handler,), attrs))
        if self.kind == "tls":
            assert self.tls_files
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.tls_files))
            if self.client_ca:
                context.verify_mode = ssl.CERT_OPTIONAL
                context.load_verify_locations(str(self.client_ca))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        return server

    def start(self) -> None:
        if self.server is None:
            self.server = self._make()
            threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Backends:
    services: dict[tuple[str, str], Service]

    @classmethod
    def start_all(cls, members: dict[str, str], tls_files: tuple[Path, Path],
                  client_ca: Path | None = None) -> Backends:
        """Every member's servers; client_ca: the CA whose clients the TLS server names."""
        services = {}
        for member, address in members.items():
            for kind, port in (("http", HTTP_PORT), ("tls", TLS_PORT), ("udp", UDP_PORT)):
                tls = kind == "tls"
                service = Service(kind, member, address, port, tls_files if tls else None,
                                  client_ca if tls else None)
                service.start()
                services[(member, kind)] = service
        return cls(services)

    def add(self, kind: str, member: str, address: str) -> None:
        """One more HTTP or UDP server for a member, at another of its addresses (keyed
        (member, "KIND ADDRESS"))."""
        service = Service(kind, member, address, UDP_PORT if kind == "udp" else HTTP_PORT)
        service.start()
        self.services[(member, f"{kind} {address}")] = service

    def __getitem__(self, key: tuple[str, str]) -> Service:
        return self.services[key]

    def stop_all(self) -> None:
        for service in self.services.values():
            service.stop()


def udp_ask(address: str, port: int, payload: bytes = b"hello", timeout: float = 3,
            source: str | None = None) -> str | None:
    """One datagram to address:port and its answer (None if none came); source: the
    client's own address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.sendto(payload, (address, port))
        try:
            return sock.recv(512).decode(errors="replace")
        except OSError:
            return None
