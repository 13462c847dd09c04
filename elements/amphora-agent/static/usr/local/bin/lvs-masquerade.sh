#!/bin/bash
# Source NAT for UDP and SCTP load balancers (keepalived LVS) leaving a VIP or
# member interface inside the amphora-haproxy namespace.  The agent runs
#     lvs-masquerade.sh add|delete ipv4|ipv6 <interface> [sriov]
# from the interface's up/down scripts.  The NAT rules live in their own
# tables, so reloading the SR-IOV VIP filter (table inet amphora_table) never
# touches them.  Repeating "add" is harmless.
# dib-lint: disable=dibdebugtrace
set -eu
set -o pipefail

usage() {
    echo "usage: $(basename "$0") add|delete ipv4|ipv6 <interface> [sriov]" >&2
    exit 1
}

[ $# -ge 3 ] || usage
action=$1
family=$2
iface=$3

case $family in
    ipv4) table="ip octavia-ipv4"; v=ip ;;
    ipv6) table="ip6 octavia-ipv6"; v=ip6 ;;
    *) usage ;;
esac

nft_masquerade() {
    local proto chain
    for proto in udp sctp; do
        chain="$v-$proto-masq-$iface"
        case $action in
            add)
                nft add table $table
                nft "add chain $table $chain { type nat hook postrouting priority 100; }"
                nft flush chain $table "$chain"
                nft add rule $table "$chain" oifname "$iface" meta l4proto "$proto" masquerade
                ;;
            delete)
                nft delete chain $table "$chain" 2>/dev/null || true
                ;;
        esac
    done
}

iptables_masquerade() {
    local cmd=iptables proto flag
    [ "$family" = ipv4 ] || cmd=ip6tables
    [ "$action" = add ] && flag=-A || flag=-D
    for proto in udp sctp; do
        if [ "$action" = add ] && "$cmd" -t nat -C POSTROUTING -p "$proto" -o "$iface" -j MASQUERADE 2>/dev/null; then
            continue
        fi
        "$cmd" -t nat "$flag" POSTROUTING -p "$proto" -o "$iface" -j MASQUERADE || [ "$action" = delete ]
    done
}

case $action in
    add|delete) ;;
    *) usage ;;
esac

if command -v nft >/dev/null 2>&1; then
    nft_masquerade
else
    iptables_masquerade
fi
