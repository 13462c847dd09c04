"""SR-IOV end to end in QEMU: an emulated igb NIC (Intel 82576) whose VFs become the
amphora's VIP and member ports.

In production the physical host creates Virtual Functions and Nova passes one into
the amphora, where it appears as a hot-plugged PCI NIC.  Here the igb PF sits inside
the guest, so the harness plays the physical host over SSH: it creates the VFs with
fixed MACs, and the VFs then appear to the amphora exactly as passed-in ones do.

The igb NIC's "wire" is its own QEMU user-mode network (entirely inside QEMU, isolated
with restrict=on); the host reaches the VIP only through ports QEMU forwards from
127.0.0.1.  Connections forwarded that way arrive from the user network's gateway
address, which is what the firewall rules filter on.
"""

from __future__ import annotations

import base64
import socket
import textwrap
from dataclasses import dataclass, field

from amp_image.poll import PollTimeout, poll_until
from amp_image.verify.vm import free_port
from amp_image.verify.vmspec import Nic

NETWORK = "10.0.3.0/24"
GATEWAY = "10.0.3.2"  # QEMU's user-mode host address: the source of forwarded traffic
VIP = "10.0.3.10"
VRRP_IP = "10.0.3.11"
MEMBER_IP = "10.0.3.20"
PF_MAC = "52:54:00:00:10:00"
VIP_VF_MAC = "52:54:00:aa:00:01"
MEMBER_VF_MAC = "52:54:00:aa:00:02"
ALLOWED_PORT = 8080
OTHER_PORT = 8081
LISTENER_BODY = "served by haproxy behind the SR-IOV VIP"


@dataclass
class SriovNetwork:
    """The igb NIC and the host ports that reach the VIP's listeners."""

    host_ports: dict[int, int] = field(default_factory=dict)

    @classmethod
    def create(cls) -> SriovNetwork:
        return cls({port: free_port() for port in (ALLOWED_PORT, OTHER_PORT)})

    def nic(self) -> Nic:
        forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-{VIP}:{guest}"
                            for guest, host in self.host_ports.items())
        netdev = f"user,net={NETWORK},host={GATEWAY},restrict=on,{forwards}"
        return Nic(device="igb", netdev=netdev, mac=PF_MAC, own_root_port=True)


# Played by the harness inside the guest: what the physical host does.  VFs
# are created with the driver's autoprobe off so their MACs are set before
# igbvf binds, as Nova's VFs arrive with their Neutron port's MAC.  Creating
# VFs resets the PF; a VF probed before the PF is back ("PF still in reset
# state") takes a random MAC, so probing waits for the PF's carrier and a VF
# that still got the wrong MAC is unbound and probed again.
HOST_SIDE_SCRIPT = textwrap.dedent(f"""\
    #!/bin/sh
    # amp-image test harness: plays the physical host of an SR-IOV amphora.
    set -eu
    # igb is loaded from the root (not the initramfs): let udev finish naming
    # the PF first, or its name changes under us.
    udevadm settle --timeout=60 || true
    pf=""
    for _ in $(seq 100); do
        pf=$(grep -l {PF_MAC} /sys/class/net/*/address | cut -d/ -f5 || true)
        [ -n "$pf" ] && break
        sleep 0.2
    done
    [ -n "$pf" ] || {{ echo "no igb PF with MAC {PF_MAC}" >&2; exit 1; }}
    dev=/sys/class/net/$pf/device
    wait_for_pf() {{
        for _ in $(seq 150); do
            [ "$(cat /sys/class/net/$pf/carrier 2>/dev/null || true)" = 1 ] && return 0
            sleep 0.2
        done
        echo "PF $pf has no carrier after 30 s" >&2
    }}
    vf_has_mac() {{  # $1: the VF's PCI address, $2: the MAC it must carry
        grep -qix "$2" /sys/bus/pci/devices/$1/net/*/address 2>/dev/null
    }}
    probe_vf() {{
        if [ -e /sys/bus/pci/devices/$1/driver ]; then
            echo "$1" > /sys/bus/pci/devices/$1/driver/unbind
        fi
        echo "$1" > /sys/bus/pci/drivers_probe
    }}
    ip link set "$pf" up
    if [ "$(cat $dev/sriov_numvfs)" = 0 ]; then
        echo 0 > $dev/sriov_drivers_autoprobe
        echo 2 > $dev/sriov_numvfs
        ip link set "$pf" vf 0 mac {VIP_VF_MAC}
        ip link set "$pf" vf 1 mac {MEMBER_VF_MAC}
        echo 1 > $dev/sriov_drivers_autoprobe
    fi
    for attempt in 1 2 3 4 5; do
        wait_for_pf
        missing=0
        for index in 0 1; do
            [ $index = 0 ] && mac={VIP_VF_MAC} || mac={MEMBER_VF_MAC}
            vf=$(basename "$(readlink -f $dev/virtfn$index)")
            vf_has_mac "$vf" "$mac" && continue
            missing=1
            probe_vf "$vf"
        done
        [ $missing = 0 ] && exit 0
        # The PF answers a VF's mailbox slowly when the emulated amphora is busy
        # (its first minutes): up to 15 s per attempt.
        for _ in $(seq 75); do
            vf_has_mac "$(basename "$(readlink -f $dev/virtfn0)")" {VIP_VF_MAC} &&
                vf_has_mac "$(basename "$(readlink -f $dev/virtfn1)")" {MEMBER_VF_MAC} &&
                exit 0
            sleep 0.2
        done
        echo "attempt $attempt: a VF of $pf has not got its MAC yet" >&2
    done
    echo "the VFs of $pf did not take their MACs" >&2
    exit 1
    """)

HOST_SIDE_UNIT = textwrap.dedent("""\
    [Unit]
    Description=amp-image test harness: SR-IOV VFs of the emulated igb NIC
    DefaultDependencies=no
    After=systemd-udev-trigger.service systemd-udevd.service
    Before=amphora-netns.service network-pre.target

    [Service]
    Type=oneshot
    RemainAfterExit=yes
    ExecStart=/usr/local/sbin/amp-test-sriov-host

    [Install]
    WantedBy=multi-user.target amphora-netns.service
    """)


def put_file(host, path: str, text: str, mode: str) -> None:
    """Write a file in the guest over the testinfra host's SSH connection."""
    data = base64.b64encode(text.encode()).decode()
    host.run_expect([0], f"mkdir -p $(dirname {path}) && echo {data} | base64 -d > {path} "
                         f"&& chmod {mode} {path}")


def install_host_side(host) -> None:
    """Play the physical host: make the VFs with fixed MACs, now and at every boot."""
    put_file(host, "/usr/local/sbin/amp-test-sriov-host", HOST_SIDE_SCRIPT, "0755")
    put_file(host, "/etc/systemd/system/amp-test-sriov-host.service", HOST_SIDE_UNIT, "0644")
    host.run_expect([0], "systemctl daemon-reload && "
                         "systemctl enable --now amp-test-sriov-host.service")


def haproxy_config(lb_id: str, listener_ids: dict[int, str]) -> str:
    """A load balancer configuration in the shape Octavia's controller renders."""
    frontends = "".join(textwrap.dedent(f"""
        frontend {listener_id}
            maxconn 50000
            bind {VIP}:{port}
            mode http
            timeout client 50000
            http-request return status 200 content-type text/plain string "{LISTENER_BODY}"
        """) for port, listener_id in listener_ids.items())
    return textwrap.dedent(f"""\
        # Configuration for loadbalancer {lb_id}
        global
            daemon
            user nobody
            log /run/rsyslog/octavia/log local1 notice
            stats socket /var/lib/octavia/{lb_id}.sock mode 0666 level user
            maxconn 50000

        defaults
            log global
            retries 3
            option redispatch
        """) + frontends


def http_status(host_port: int, timeout: float = 8.0) -> int | None:
    """GET / through the forwarded port: the status, or None when nothing answers.

    QEMU accepts the forwarded connection on the host side before the guest
    does, so "dropped" shows as no reply (or a reset), never as a refused connect.
    """
    request = b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(request)
            reply = conn.recv(256)
    except OSError:
        return None
    if not reply.startswith(b"HTTP/"):
        return None
    return int(reply.split()[1])


def wait_status(host_port: int, expected: int | None, timeout: float = 60) -> int | None:
    """Poll until the port gives the expected answer (listeners take a moment to bind)."""
    try:
        return poll_until(lambda: http_status(host_port), timeout=timeout, interval=2,
                          until=lambda status: status == expected)
    except PollTimeout as late:
        return late.last
