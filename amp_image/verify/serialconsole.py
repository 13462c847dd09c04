"""Log in on a VM's serial console, as an operator debugging an amphora would.

QEMU serves the guest's ttyS0 on a Unix socket (vm.Machine); this talks to the
getty there.  The password is sent on the socket only: never in argv, a log or
the console transcript (getty does not echo it).
"""

from __future__ import annotations

import socket
from pathlib import Path

from amp_image.errors import AmpImageError
from amp_image.poll import PollTimeout, poll_until

# What the shell prints for the command below: computed in the guest, so the
# echo of the typed line (with $(...) unexpanded) cannot match it.
COMMAND = b"echo AMP-$(id -un)-$((6*7))\r"


class ConsoleError(AmpImageError):
    """The console did not answer as a getty and a shell would."""


class SerialConsole:
    def __init__(self, path: Path, timeout: float = 90) -> None:
        self.path, self.timeout = path, timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.seen = b""

    def __enter__(self) -> SerialConsole:
        self.sock.connect(str(self.path))
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _marker_seen(self, markers: tuple[bytes, ...]) -> bytes | None:
        """The first of markers in what came so far (consumed up to it), else read more."""
        hits = [(self.seen.find(m), m) for m in markers if m in self.seen]
        if hits:
            at, marker = min(hits)
            self.seen = self.seen[at + len(marker):]
            return marker
        try:
            chunk = self.sock.recv(4096)
        except TimeoutError:
            return None
        if not chunk:
            raise ConsoleError("serial console: QEMU closed the socket")
        self.seen += chunk
        return None

    def expect(self, *markers: bytes) -> bytes:
        """Read until one of markers appears; return it."""
        self.sock.settimeout(1)
        try:
            return poll_until(lambda: self._marker_seen(markers), timeout=self.timeout,
                              interval=0)
        except PollTimeout:
            tail = self.seen[-200:].decode(errors="replace")
            raise ConsoleError(f"serial console: none of {markers} after {self.timeout:.0f} "
                               f"s; last output: {tail!r}") from None

    def login(self, user: str, password: str) -> bool:
        """True if the getty let user in with password (a shell answered), False if it
        said "Login incorrect"."""
        self.send(b"\r")
        self.expect(b"login: ")
        self.send(user.encode() + b"\r")
        self.expect(b"Password: ")
        self.send(password.encode() + b"\r")
        if self.expect(b"Login incorrect", b"# ", b"$ ") == b"Login incorrect":
            return False
        self.send(COMMAND)
        self.expect(f"AMP-{user}-42".encode())
        self.send(b"exit\r")
        return True


def can_log_in(path: Path, user: str, password: str, timeout: float = 90) -> bool:
    """Whether user logs in on the serial console at path with password."""
    with SerialConsole(path, timeout) as console:
        return console.login(user, password)
