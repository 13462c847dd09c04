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
# Longer than login's pause after a failed attempt (pam_faildelay: 3 s on Debian).
QUIET_SECONDS = 5.0


class ConsoleError(AmpImageError):
    """The console did not answer as a getty and a shell would."""


class SerialConsole:
    def __init__(self, path: Path, timeout: float = 90) -> None:
        self.path, self.timeout = path, timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.seen = b""
        self.secrets: list[bytes] = []

    def __enter__(self) -> SerialConsole:
        self.sock.connect(str(self.path))
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _tail(self) -> str:
        """The last output, for an error: a password typed at the wrong prompt is
        echoed, so what was sent as one is blanked out."""
        tail = self.seen[-200:]
        for secret in self.secrets:
            tail = tail.replace(secret, b"********")
        return tail.decode(errors="replace")

    def _marker_seen(self, markers: tuple[bytes, ...]) -> bytes | None:
        """The first of markers in what came so far (consumed up to it), else read more."""
        hits = [(self.seen.find(m), m) for m in markers if m in self.seen]
        if hits:
            at, marker = min(hits)
            self.seen = self.seen[at + len(marker):]
            return marker
        self._read()
        return None

    def _read(self) -> bytes | None:
        """One chunk of output (kept in seen), or None after the socket's timeout."""
        try:
            chunk = self.sock.recv(4096)
        except TimeoutError:
            return None
        if not chunk:
            raise ConsoleError("serial console: QEMU closed the socket")
        self.seen += chunk
        return chunk

    def expect(self, *markers: bytes) -> bytes:
        """Read until one of markers appears; return it."""
        self.sock.settimeout(1)
        try:
            return poll_until(lambda: self._marker_seen(markers), timeout=self.timeout,
                              interval=0)
        except PollTimeout:
            raise ConsoleError(f"serial console: none of {markers} after {self.timeout:.0f} "
                               f"s; last output: {self._tail()!r}") from None

    def _output_until_quiet(self) -> bytes:
        """All the console prints until it has been silent for QUIET_SECONDS."""
        self.sock.settimeout(QUIET_SECONDS)
        output: list[bytes] = []

        def quiet() -> bool:
            chunk = self._read()
            output.append(chunk or b"")
            return chunk is None

        try:
            poll_until(quiet, timeout=self.timeout, interval=0)
        except PollTimeout:
            raise ConsoleError(f"serial console: still printing after {self.timeout:.0f} s; "
                               f"last output: {self._tail()!r}") from None
        return b"".join(output)

    def _at_quiet_login_prompt(self) -> bool:
        last = self._output_until_quiet().rstrip()
        if last.endswith(b"login:"):
            return True
        if last.endswith((b"#", b"$")):
            self.send(b"exit\r")  # a shell left open: the getty comes back after it
        else:
            self.send(b"\r")  # ends a pending password prompt, or wakes the getty
        return False

    def to_login_prompt(self) -> None:
        """Bring the console to a "login: " prompt that nothing typed is pending on.

        What came before is unknown: agetty's prompt, login's own after a failed
        attempt (where an empty line is itself an attempt, answered after a pause),
        or a password prompt.  Typing ahead of such a state shifts every answer by
        one prompt, so this waits for the console to fall silent at "login:".
        """
        self.send(b"\r")
        try:
            poll_until(self._at_quiet_login_prompt, timeout=self.timeout, interval=0)
        except PollTimeout:
            raise ConsoleError(f"serial console: no quiet login prompt after "
                               f"{self.timeout:.0f} s; last output: {self._tail()!r}") from None
        self.seen = b""

    def login(self, user: str, password: str) -> bool:
        """True if the getty let user in with password (a shell answered), False if it
        said "Login incorrect"."""
        self.to_login_prompt()
        self.send(user.encode() + b"\r")
        self.expect(b"Password: ")
        self.secrets.append(password.encode())
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
