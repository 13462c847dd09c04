#!/bin/bash
# haproxy's external check for Octavia PING health monitors: the controller
# renders "external-check command /var/lib/octavia/ping-wrapper.sh", and
# haproxy (as user nobody, hence ping_group_range) passes the member in
# HAPROXY_SERVER_ADDR.  Exit status 0 means the member answered.
# dib-lint: disable=dibdebugtrace
set -eu
set -o pipefail

family=-4
if [[ $HAPROXY_SERVER_ADDR == *:* ]]; then
    family=-6
fi
exec /usr/bin/ping "$family" -q -n -w 1 -c 1 "$HAPROXY_SERVER_ADDR" >/dev/null 2>&1
