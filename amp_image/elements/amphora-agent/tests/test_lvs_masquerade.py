"""static/usr/local/bin/lvs-masquerade.sh, the NAT the agent's interface hooks run
for UDP and SCTP load balancers, with nft / iptables stubbed: the commands it
issues for each case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "static/usr/local/bin/lvs-masquerade.sh"


def lvs(tmp_path: Path, *args: str, tools=("nft",), sriov_filter=False):
    """Run the script with only the given firewall tools on PATH (the host's are
    out of reach: PATH is the stubs and /usr/bin).  Returns (result, commands)."""
    stub = tmp_path / "stub"
    stub.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for tool in tools:
        body = f'echo "{tool} $*" >> "{log}"\n'
        if tool == "nft":
            # "list table inet amphora_table": the SR-IOV VIP filter is loaded or not.
            body += f'[ "$1" != list ] || exit {0 if sriov_filter else 1}\n'
        else:
            body += '[ "$3" != -C ] || exit 1\n'  # no rule there yet
        (stub / tool).write_text(f"#!/bin/bash\n{body}")
        (stub / tool).chmod(0o755)
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                            env={"PATH": f"{stub}:/usr/bin"})
    return result, (log.read_text().splitlines() if log.exists() else [])


def test_nft_add_masquerades_udp_and_sctp_and_untracks_tcp(tmp_path):
    result, cmds = lvs(tmp_path, "add", "ipv4", "eth1")
    assert result.returncode == 0, result.stderr
    assert cmds == [
        "nft list table inet amphora_table",
        "nft add table ip octavia-ipv4",
        "nft add chain ip octavia-ipv4 ip-udp-masq-eth1 { type nat hook postrouting "
        "priority 100; }",
        "nft flush chain ip octavia-ipv4 ip-udp-masq-eth1",
        "nft add rule ip octavia-ipv4 ip-udp-masq-eth1 oifname eth1 meta l4proto udp "
        "masquerade",
        "nft add table ip octavia-ipv4",
        "nft add chain ip octavia-ipv4 ip-sctp-masq-eth1 { type nat hook postrouting "
        "priority 100; }",
        "nft flush chain ip octavia-ipv4 ip-sctp-masq-eth1",
        "nft add rule ip octavia-ipv4 ip-sctp-masq-eth1 oifname eth1 meta l4proto sctp "
        "masquerade",
        "nft add chain ip octavia-ipv4 ip-tcp-notrack-prerouting-eth1 { type filter hook "
        "prerouting priority raw; }",
        "nft flush chain ip octavia-ipv4 ip-tcp-notrack-prerouting-eth1",
        "nft add rule ip octavia-ipv4 ip-tcp-notrack-prerouting-eth1 iifname eth1 "
        "meta l4proto tcp notrack",
        "nft add chain ip octavia-ipv4 ip-tcp-notrack-output-eth1 { type filter hook "
        "output priority raw; }",
        "nft flush chain ip octavia-ipv4 ip-tcp-notrack-output-eth1",
        "nft add rule ip octavia-ipv4 ip-tcp-notrack-output-eth1 oifname eth1 "
        "meta l4proto tcp notrack",
    ]


@pytest.mark.parametrize("args,sriov_filter", [
    (("add", "ipv6", "eth2", "sriov"), False),
    # Any port, once an SR-IOV VIP's filter is in the namespace: its replies are
    # accepted by conntrack state, so TCP stays tracked.
    (("add", "ipv6", "eth2"), True),
])
def test_nft_sriov_keeps_tcp_tracked(tmp_path, args, sriov_filter):
    result, cmds = lvs(tmp_path, *args, sriov_filter=sriov_filter)
    assert result.returncode == 0, result.stderr
    assert not [c for c in cmds if "notrack" in c]
    assert "nft add rule ip6 octavia-ipv6 ip6-udp-masq-eth2 oifname eth2 meta l4proto udp " \
           "masquerade" in cmds


def test_nft_delete_removes_every_chain_of_the_interface(tmp_path):
    result, cmds = lvs(tmp_path, "delete", "ipv4", "eth1", "sriov")
    assert result.returncode == 0, result.stderr
    assert cmds == ["nft delete chain ip octavia-ipv4 ip-udp-masq-eth1",
                    "nft delete chain ip octavia-ipv4 ip-sctp-masq-eth1",
                    "nft delete chain ip octavia-ipv4 ip-tcp-notrack-prerouting-eth1",
                    "nft delete chain ip octavia-ipv4 ip-tcp-notrack-output-eth1"]


def test_iptables_without_nft(tmp_path):
    result, cmds = lvs(tmp_path, "add", "ipv6", "eth1", tools=("ip6tables",))
    assert result.returncode == 0, result.stderr
    assert [c for c in cmds if " -C " not in c] == [
        "ip6tables -t nat -A POSTROUTING -p udp -o eth1 -j MASQUERADE",
        "ip6tables -t nat -A POSTROUTING -p sctp -o eth1 -j MASQUERADE",
        "ip6tables -t raw -A PREROUTING -p tcp -i eth1 -j NOTRACK",
        "ip6tables -t raw -A OUTPUT -p tcp -o eth1 -j NOTRACK",
    ]


@pytest.mark.parametrize("args", [(), ("add", "ipv4"), ("flush", "ipv4", "eth1"),
                                  ("add", "ipv5", "eth1"), ("add", "ipv4", "eth1", "vf")])
def test_usage(tmp_path, args):
    result, cmds = lvs(tmp_path, *args)
    assert result.returncode == 1 and cmds == []
    assert result.stderr == \
        "usage: lvs-masquerade.sh add|delete ipv4|ipv6 <interface> [sriov]\n"
