"""The client side of the conformance scenarios: requests to the VIP from the VIP
bridge, as a load balancer's users send them."""

from __future__ import annotations

import socket
import ssl

from amp_image.poll import PollTimeout, poll_until
from amp_image.verify.conformance import network

NS = "ip netns exec amphora-haproxy"
MEMBER_A, MEMBER_B = network.BACKENDS


def http_get(port: int, path: str = "/", timeout: float = 5, tls: ssl.SSLContext | None = None,
             server_name: str | None = None, headers: dict[str, str] | None = None,
             source: str | None = None, vip: str = network.VIP
             ) -> tuple[int, dict[str, str], str]:
    """A GET to the VIP: (status, headers by lower-case name, body); raises OSError when
    nothing answers.
    headers: the request's own (Host is "vip" unless given); source: the client's
    address on the VIP bridge (default: its first); vip: the VIP address to ask."""
    sent = "".join(f"{name}: {value}\r\n" for name, value in
                   ({"Host": "vip"} | (headers or {})).items())
    with socket.create_connection((vip, port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as raw:
        conn = tls.wrap_socket(raw, server_hostname=server_name) if tls else raw
        conn.sendall(f"GET {path} HTTP/1.0\r\n{sent}\r\n".encode())
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for name, _, value in (line.partition(": ") for line in lines[1:] if ": " in line):
        # haproxy sends names in lower case; a repeated header joins with ", ".
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(lines[0].split()[1]), headers, body


def members_answering(port: int, tries: int = 6, **kw) -> set[str]:
    seen = set()
    for _ in range(tries):
        status, _, body = http_get(port, **kw)
        assert status == 200, body
        seen.add(body.split()[0])
    return seen


def wait_until(check, timeout: float, what: str, interval: float = 1.0):
    try:
        # Not there yet: no answer, an error page, a cut reply: poll on.
        return poll_until(check, timeout=timeout, interval=interval,
                          retry_on=(OSError, AssertionError, ValueError, IndexError))
    except PollTimeout as late:
        raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {late.last!r})") \
            from None


def peer_certificate(port: int, server_name: str | None = None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((network.VIP, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as conn:
        return conn.getpeercert(binary_form=True)


def der(pem_cert: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_cert.decode())


def refused(port: int) -> bool:
    try:
        socket.create_connection((network.VIP, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False
