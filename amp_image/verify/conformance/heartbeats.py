"""Receive the amphora's UDP heartbeats and decode them with Octavia's own code.

The amphora's health daemon sends one datagram per ``heartbeat_interval`` to
every ``controller_ip_port_list`` entry, HMAC-signed with ``heartbeat_key``.
Under QEMU user networking the guest's 10.0.2.2 is this namespace's
127.0.0.1, so the receiver listens there.  Each datagram is decoded with
``octavia.amphorae.backends.health_daemon.status_message``, as the health
manager does; what fails the HMAC is counted as rejected.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from octavia.amphorae.backends.agent import agent_jinja_cfg
from octavia.amphorae.backends.health_daemon import status_message
from octavia.common import constants as consts
from octavia.common import exceptions as octavia_exceptions

from amp_image.poll import PollTimeout, poll_until

CONTROLLER_IN_GUEST = "10.0.2.2"


@dataclass
class HeartbeatReceiver:
    key: str
    port: int = 0
    messages: list[dict] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    rejected: int = 0
    _sock: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> HeartbeatReceiver:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._receive, daemon=True).start()
        return self

    @property
    def controller(self) -> str:
        """The controller_ip_port_list entry the amphora must send to."""
        return f"{CONTROLLER_IN_GUEST}:{self.port}"

    def _receive(self) -> None:
        assert self._sock
        while True:
            try:
                data, _ = self._sock.recvfrom(65535)
            except OSError:
                return
            with self._lock:
                self.raw.append(data)
                try:
                    self.messages.append(status_message.unwrap_envelope(data, self.key))
                except octavia_exceptions.InvalidHMACException:
                    self.rejected += 1

    def stop(self) -> None:
        if self._sock:
            self._sock.close()

    def latest(self) -> dict | None:
        with self._lock:
            return self.messages[-1] if self.messages else None

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        """The first heartbeat received from now on that satisfies predicate."""
        seen = self.count()

        def first_fresh_match() -> dict | None:
            nonlocal seen
            with self._lock:
                fresh = self.messages[seen:]
                seen = len(self.messages)
            return next((m for m in fresh if predicate(m)), None)

        try:
            return poll_until(first_fresh_match, timeout=timeout, interval=0.5)
        except PollTimeout:
            raise AssertionError(f"no heartbeat with {what} within {timeout:.0f} s; "
                                 f"latest: {self.latest()}") from None


def member_status(message: dict, pool_id: str, member_id: str) -> str | None:
    """A member's status as the health manager reads it from a heartbeat."""
    for key, pool in message.get("pools", {}).items():
        if key.split(":", 1)[0] == pool_id:
            return pool.get("members", {}).get(member_id)
    return None


HEALTH_TIMEOUT = 90


def wait_member(heartbeats: HeartbeatReceiver, pool, member_index: int, want: str) -> None:
    """Until a heartbeat reports the pool's member (by index) as want (UP, DOWN, ...)."""
    member = pool.members[member_index]
    heartbeats.wait_for(lambda m: member_status(m, pool.id, member.id) == want,
                        HEALTH_TIMEOUT, f"member {member.ip_address} of pool {pool.id} {want}")



def send_agent_config(octavia, receiver: HeartbeatReceiver) -> dict:
    """update_amphora_agent_config with the controller's own rendering (this receiver
    among its controllers), and the amphora's first heartbeat after it."""
    config = agent_jinja_cfg.AgentJinjaTemplater().build_agent_config(
        octavia.amp.id, consts.TOPOLOGY_SINGLE)
    assert receiver.controller in config
    octavia.driver.update_amphora_agent_config(octavia.amp, config.encode())
    return receiver.wait_for(lambda m: m.get("id") == octavia.amp.id, 60,
                             "this amphora's id")


def ensure_heartbeats(octavia, receiver: HeartbeatReceiver) -> None:
    """The amphora sending heartbeats here, unless a module before set it up (a module
    run alone, -k)."""
    if receiver.count() == 0:
        send_agent_config(octavia, receiver)
