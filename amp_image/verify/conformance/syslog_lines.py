"""Syslog messages as the amphora's rsyslog forwards them, and Octavia's tenant flow log.

rsyslog's ``omfwd`` sends RFC 3164 lines by default (its
``RSYSLOG_TraditionalForwardFormat``: ``<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG``),
RFC 5424 ones when a template says so; over TCP each is ended by a line feed, or
prefixed by its length (octet counting, RFC 6587).  The tenant flow log is haproxy's
``log-format`` from Octavia's ``[haproxy_amphora] user_log_format``:

    {{ project_id }} {{ lb_id }} %f %ci %cp %t %{+Q}r %ST %B %U %[ssl_c_verify]
    %{+Q}[ssl_c_s_dn] %b %s %Tt %tsc

Pure functions: no socket here (see log_receiver.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LOCAL0 = 16  # syslog facility numbers: LOCAL0..LOCAL7 are 16..23
INFO, NOTICE = 6, 5

RFC3164 = re.compile(
    r"<(?P<pri>\d{1,3})>(?P<timestamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) "
    r"(?P<hostname>\S+) (?P<tag>[^\s:\[]+)(?:\[(?P<pid>[^\]]*)\])?:? ?(?P<text>.*)", re.S)
RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<hostname>\S+) (?P<tag>\S+) (?P<pid>\S+) "
    r"(?P<msgid>\S+) (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?P<text>.*)", re.S)


@dataclass(frozen=True)
class SyslogMessage:
    facility: int
    severity: int
    timestamp: str
    hostname: str
    tag: str  # the program: haproxy, amphora-agent, ...
    pid: str
    text: str

    @property
    def local_facility(self) -> int | None:
        """N for LOCALn (Octavia's user_log_facility, administrative_log_facility)."""
        return self.facility - LOCAL0 if self.facility >= LOCAL0 else None


def parse_message(raw: bytes | str) -> SyslogMessage | None:
    """One forwarded message (RFC 5424 or RFC 3164); None if it is neither."""
    line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    line = line.rstrip("\r\n\x00")
    match = RFC5424.fullmatch(line) or RFC3164.fullmatch(line)
    if not match:
        return None
    pri = int(match["pri"])
    nil = {"-": ""}
    return SyslogMessage(facility=pri // 8, severity=pri % 8, timestamp=match["timestamp"],
                         hostname=match["hostname"], tag=match["tag"],
                         pid=nil.get(match["pid"] or "", match["pid"] or ""),
                         text=match["text"].removeprefix("\ufeff"))


def split_stream(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The whole messages at the start of a TCP stream, and what is left of it:
    octet-counted ("LEN <PRI>...") or line-feed ended ("<PRI>...\\n") framing."""
    frames = []
    while buffer:
        counted = re.match(rb"(\d{1,6}) ", buffer)
        if counted:
            start = counted.end()
            end = start + int(counted[1])
            if len(buffer) < end:
                break
            frames.append(buffer[start:end])
            buffer = buffer[end:]
            continue
        line, newline, rest = buffer.partition(b"\n")
        if not newline:
            break
        if line.strip():
            frames.append(line)
        buffer = rest
    return frames, buffer


# --- the tenant flow log --------------------------------------------------------------

FLOW_FIELDS = ("project_id", "lb_id", "listener_id", "client_ip", "client_port", "time",
               "request", "status", "bytes_read", "bytes_uploaded", "ssl_verify", "ssl_dn",
               "backend", "member_id", "total_ms", "termination")
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


@dataclass(frozen=True)
class FlowLog:
    """One tenant flow log entry, by Octavia's field names (quotes removed)."""

    project_id: str
    lb_id: str
    listener_id: str  # haproxy's frontend name
    client_ip: str
    client_port: str
    time: str
    request: str
    status: str
    bytes_read: str
    bytes_uploaded: str
    ssl_verify: str
    ssl_dn: str
    backend: str  # pool_id:listener_id
    member_id: str  # haproxy's server name
    total_ms: str
    termination: str

    @property
    def pool_id(self) -> str:
        return self.backend.split(":", 1)[0]


def parse_flow_log(text: str) -> FlowLog | None:
    """A tenant flow log entry in Octavia's default user_log_format; None if the text
    has not its sixteen fields."""
    tokens = TOKEN.findall(text.strip())
    if len(tokens) != len(FLOW_FIELDS):
        return None
    values = [t[1:-1] if len(t) >= 2 and t[0] == t[-1] == '"' else t for t in tokens]
    return FlowLog(**dict(zip(FLOW_FIELDS, values, strict=True)))


# --- rsyslog's own files ---------------------------------------------------------------

LOG_FILE = re.compile(r"""(?<![\w/])(/var/log/[^\s;"')]+)""")


def rsyslog_files(config: str) -> set[str]:
    """The files under /var/log that an rsyslog configuration writes to (its legacy
    ``-/var/log/...`` actions, ``file="..."`` parameters, ``then /var/log/...``)."""
    return {path for line in config.splitlines() if not line.lstrip().startswith("#")
            for path in LOG_FILE.findall(line)}
