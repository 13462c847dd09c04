"""Receive the amphora's offloaded logs, over UDP and TCP, as a syslog server would.

Each log target (tenant, admin) is one port on this namespace's loopback, which the
guest reaches as 10.0.2.2 through QEMU user networking (as the heartbeats do), with
a UDP socket and a TCP listener on the same number: Octavia's ``log_protocol`` picks
which one rsyslog uses, and each message is kept with the transport that carried it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from amp_image.poll import PollTimeout, poll_until
from amp_image.verify.conformance.syslog_lines import SyslogMessage, parse_message, split_stream


@dataclass(frozen=True)
class Received:
    target: str  # which log target's port: "tenant" or "admin"
    transport: str  # "UDP" or "TCP"
    raw: bytes
    message: SyslogMessage | None


@dataclass
class LogReceiver:
    ports: dict[str, int]  # target name -> port
    address: str = "127.0.0.1"
    _received: list[Received] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LogReceiver:
        for target, port in self.ports.items():
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.address, port))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((self.address, port))
            tcp.listen()
            self._sockets += [udp, tcp]
            self._thread(self._datagrams, udp, target)
            self._thread(self._connections, tcp, target)
        return self

    def stop(self) -> None:
        for sock in self._sockets:
            sock.close()

    @staticmethod
    def _thread(run: Callable, *args) -> None:
        threading.Thread(target=run, args=args, daemon=True).start()

    def _keep(self, target: str, transport: str, raw: bytes) -> None:
        with self._lock:
            self._received.append(Received(target, transport, raw, parse_message(raw)))

    def _datagrams(self, sock: socket.socket, target: str) -> None:
        while True:
            try:
                data, _ = sock.recvfrom(65535)
            except OSError:
                return
            self._keep(target, "UDP", data)

    def _connections(self, sock: socket.socket, target: str) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self._sockets.append(conn)
            self._thread(self._stream, conn, target)

    def _stream(self, conn: socket.socket, target: str) -> None:
        pending = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65535)
                except OSError:
                    return
                if not chunk:
                    return
                frames, pending = split_stream(pending + chunk)
                for frame in frames:
                    self._keep(target, "TCP", frame)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def count(self) -> int:
        with self._lock:
            return len(self._received)

    def matching(self, predicate: Callable[[Received], bool], since: int = 0
                 ) -> list[Received]:
        return [r for r in self.received()[since:] if predicate(r)]

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float,
                 what: str, since: int = 0) -> Received:
        """The first message that satisfies predicate, of those received after the
        first `since` (count() before the action that should log)."""
        try:
            return poll_until(lambda: next(iter(self.matching(predicate, since)), None),
                              timeout=timeout, interval=0.5)
        except PollTimeout:
            latest = [(r.target, r.transport, r.raw[:200]) for r in self.received()[-5:]]
            raise AssertionError(f"no log message with {what} within {timeout:.0f} s; "
                                 f"the last received: {latest}") from None
