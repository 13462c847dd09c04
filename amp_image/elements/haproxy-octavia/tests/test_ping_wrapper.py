"""static/var/lib/octavia/ping-wrapper.sh, haproxy's external check for PING health
monitors, with ping stubbed (a copy of the script calls the stub instead of
/usr/bin/ping)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "static/var/lib/octavia/ping-wrapper.sh"


def check(tmp_path: Path, address: str, answers: bool):
    log = tmp_path / "ping.log"
    ping = tmp_path / "ping"
    ping.write_text(f'#!/bin/bash\necho "$*" > "{log}"\necho noise\nexit {0 if answers else 1}\n')
    ping.chmod(0o755)
    script = tmp_path / "ping-wrapper.sh"
    source = SCRIPT.read_text()
    assert source.count("/usr/bin/ping ") == 1
    script.write_text(source.replace("/usr/bin/ping ", f"{ping} "))
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin", "HAPROXY_SERVER_ADDR": address})
    return result, log.read_text().split()


@pytest.mark.parametrize("address,family", [("192.0.2.10", "-4"), ("2001:db8::10", "-6"),
                                            ("::ffff:192.0.2.10", "-6")])
def test_one_quiet_echo_of_the_members_family(tmp_path, address, family):
    result, args = check(tmp_path, address, answers=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert args == [family, "-q", "-n", "-w", "1", "-c", "1", address]


def test_silent_member_is_down(tmp_path):
    result, _ = check(tmp_path, "192.0.2.11", answers=False)
    assert (result.returncode, result.stdout) == (1, "")


def test_no_address_is_an_error(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin"})
    assert result.returncode != 0 and "HAPROXY_SERVER_ADDR" in result.stderr
