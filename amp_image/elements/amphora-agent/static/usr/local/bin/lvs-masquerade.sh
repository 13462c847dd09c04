#!/bin/bash
# Source NAT for UDP and SCTP load balancers (keepalived LVS) leaving a VIP or
# member interface inside the amphora-haproxy namespace.  The agent runs
#     lvs-masquerade.sh add|delete ipv4|ipv6 <interface> [sriov]
# from the interface's up/down scripts.  The NAT rules live in their own
# tables, so reloading the SR-IOV VIP filter (table inet amphora_table) never
# touches them.  Repeating "add" is harmless.
#
# TCP through haproxy needs no connection tracking, so on ordinary ports TCP
# is exempted from conntrack (notrack), which spares the conntrack table under
# load.  SR-IOV ports keep tracking TCP: their filter (amphora_table) accepts
# replies by conntrack state ("ct state established,related").
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
sriov=${4:-}

case $family in
    ipv4) table="ip octavia-ipv4"; v=ip ;;
    ipv6) table="ip6 octavia-ipv6"; v=ip6 ;;
    *) usage ;;
esac

nft_notrack() {
    local hook dir chain
    for hook in prerouting output; do
        [ "$hook" = prerouting ] && dir=iifname || dir=oifname
        chain="$v-tcp-notrack-$hook-$iface"
        case $action in
            add)
                nft "add chain $table $chain { type filter hook $hook priority raw; }"
                nft flush chain $table "$chain"
                nft add rule $table "$chain" $dir "$iface" meta l4proto tcp notrack
                ;;
            delete)
                nft delete chain $table "$chain" 2>/dev/null || true
                ;;
        esac
    done
}

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

iptables_notrack() {
    local cmd=iptables flag
    [ "$family" = ipv4 ] || cmd=ip6tables
    [ "$action" = add ] && flag=-A || flag=-D
    if [ "$action" = add ] && "$cmd" -t raw -C PREROUTING -p tcp -i "$iface" -j NOTRACK 2>/dev/null; then
        return 0
    fi
    "$cmd" -t raw "$flag" PREROUTING -p tcp -i "$iface" -j NOTRACK || [ "$action" = delete ]
    "$cmd" -t raw "$flag" OUTPUT -p tcp -o "$iface" -j NOTRACK || [ "$action" = delete ]
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

case $sriov in
    ""|sriov) ;;
    *) usage ;;
esac

# An SR-IOV VIP's filter in this namespace (table inet amphora_table, input
# policy drop) lets return traffic in by conntrack state only, so untracked TCP
# replies on any other port (a member network's) would be dropped: with that
# filter present, TCP stays tracked on every port.
if [ -z "$sriov" ] && command -v nft >/dev/null 2>&1 \
        && nft list table inet amphora_table >/dev/null 2>&1; then
    sriov=sriov
fi

# "delete" removes the notrack rules whatever the port type, as upstream does.
if command -v nft >/dev/null 2>&1; then
    nft_masquerade
    if [ "$sriov" != sriov ] || [ "$action" = delete ]; then
        nft_notrack
    fi
else
    iptables_masquerade
    if [ "$sriov" != sriov ] || [ "$action" = delete ]; then
        iptables_notrack
    fi
fi
