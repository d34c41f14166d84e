#!/bin/sh
# Start one node of the TAI Redis cluster.
#
# Pod IPs change when pods are rescheduled, but nodes.conf remembers the old ones: after a
# restart of every pod (a node-pool upgrade) no node could reach any other and the cluster
# would stay down. Before redis-server starts, this script rewrites the addresses in
# nodes.conf: its own entry gets POD_IP, and every peer entry that carries a hostname (the
# nodes announce <pod>.redis.<namespace>.svc.cluster.local) gets that name's current address.
# Redis then announces POD_IP and the hostname itself.
#
# Usage: redis-start.sh [redis-server arguments...]
# Environment:
#   POD_IP                    this pod's IP (downward API); announced and written to nodes.conf
#   REDIS_ANNOUNCE_HOSTNAME   this pod's stable DNS name (optional)
#   REDIS_NODES_CONF          cluster config file (default /data/nodes.conf)
#   REDIS_SERVER              redis-server binary (default: redis-server)
#   REDIS_REMAP_ONLY          when "1", rewrite nodes.conf and exit without starting Redis
set -eu

CONF=${REDIS_NODES_CONF:-/data/nodes.conf}
POD_IP=${POD_IP:-}
HOSTNAME_ANNOUNCED=${REDIS_ANNOUNCE_HOSTNAME:-}

log() { printf 'redis-start: %s\n' "$*"; }

# resolve_ipv4 (shared with the other Redis script).
# shellcheck source=charts/tai-chart/scripts/redis-lib.sh
. "$(dirname "$0")/redis-lib.sh"

remap() {
    # host=ip pairs for every peer hostname in the file that resolves now.
    pairs=""
    # shellcheck disable=SC2013  # hostnames are single words
    for host in $(awk '$1 != "vars" && index($2, ",") > 0 {print substr($2, index($2, ",") + 1)}' "$CONF" | sort -u); do
        case $host in
            *[!A-Za-z0-9.-]*) continue ;;
        esac
        ip=$(resolve_ipv4 "$host")
        if [ -n "$ip" ]; then
            pairs="$pairs$host=$ip,"
        fi
    done
    tmp="$CONF.remap.$$"
    awk -v myip="$POD_IP" -v pairs="$pairs" '
        BEGIN {
            n = split(pairs, list, ",")
            for (i = 1; i <= n; i++) {
                eq = index(list[i], "=")
                if (eq > 0) ip[substr(list[i], 1, eq - 1)] = substr(list[i], eq + 1)
            }
        }
        $1 == "vars" || NF < 3 { print; next }
        {
            addr = $2
            host = ""
            comma = index(addr, ",")
            if (comma > 0) {
                host = substr(addr, comma + 1)
                addr = substr(addr, 1, comma - 1)
            }
            colon = index(addr, ":")
            if (colon == 0) { print; next }
            newip = ""
            if ($3 ~ /(^|,)myself(,|$)/) newip = myip
            else if (host != "" && (host in ip)) newip = ip[host]
            if (newip != "") $2 = newip substr(addr, colon) (host != "" ? "," host : "")
            print
        }
    ' "$CONF" >"$tmp"
    mv "$tmp" "$CONF"
}

if [ -s "$CONF" ] && [ -n "$POD_IP" ]; then
    remap
    log "refreshed node addresses in $CONF"
fi

if [ "${REDIS_REMAP_ONLY:-0}" = 1 ]; then
    exit 0
fi

if [ -n "$POD_IP" ]; then
    set -- "$@" --cluster-announce-ip "$POD_IP"
fi
if [ -n "$HOSTNAME_ANNOUNCED" ]; then
    set -- "$@" --cluster-announce-hostname "$HOSTNAME_ANNOUNCED"
fi
exec "${REDIS_SERVER:-redis-server}" "$@"
