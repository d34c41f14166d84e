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
#   REDIS_ACL_RULES           ACL rules without passwords (the chart's ConfigMap redis-acl): one
#                             `user NAME RULES...` line per user; optional
#   REDIS_PASSWORD_DIR        folder of the password files (the Vault agent's /vault/secrets):
#                             user NAME's password is REDIS_PASSWORD_DIR/redis-user-NAME
#   REDIS_REPLICATION_USER    the user replicas log in to their master with (masteruser)
#   REDIS_AUTH_DIR            where the ACL file and the auth config are written (0700)
#
# With REDIS_ACL_RULES, every `user NAME` line gets `on #<sha256 of NAME's password>` (the
# password itself is never written, nor passed on a command line), `user default` lines are
# kept as they are (the chart disables it), and redis-server starts with a config file that
# holds `aclfile` and, for replicas, `masteruser`/`masterauth` (what a replica must send).
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

die() {
    printf 'redis-start: error: %s\n' "$*" >&2
    exit 2
}

# password NAME : the user's password from its file, refused when missing or unquotable.
password() {
    file="$PASSWORD_DIR/redis-user-$1"
    [ -s "$file" ] || die "the password of Redis user $1 is missing ($file is absent or empty;" \
        "is the Vault agent's secret tai/redis/$1 readable by this pod?)"
    pw=$(cat "$file")
    case $pw in
        *[!A-Za-z0-9._~+/=-]*) die "the password of Redis user $1 ($file) holds characters" \
            "other than letters, digits and ._~+/=-" ;;
    esac
    printf '%s' "$pw"
}

if [ -n "${REDIS_ACL_RULES:-}" ]; then
    PASSWORD_DIR=${REDIS_PASSWORD_DIR:?REDIS_PASSWORD_DIR must name the folder of the password files}
    AUTH_DIR=${REDIS_AUTH_DIR:-/tmp/redis-auth}
    [ -s "$REDIS_ACL_RULES" ] || die "the ACL rules file $REDIS_ACL_RULES is absent or empty"
    umask 077
    mkdir -p "$AUTH_DIR"
    acl="$AUTH_DIR/users.acl"
    : >"$acl.new"
    while read -r kind name rules; do
        case $kind in
            '' | '#'*) continue ;;
            user) ;;
            *) die "$REDIS_ACL_RULES: '$kind' is not an ACL file line (user NAME RULES...)" ;;
        esac
        if [ "$name" = default ]; then
            printf 'user default %s\n' "$rules" >>"$acl.new"
            continue
        fi
        pw=$(password "$name")
        # printf is a shell builtin: the password reaches sha256sum on a pipe, never argv.
        hash=$(printf '%s' "$pw" | sha256sum | cut -d' ' -f1)
        printf 'user %s on #%s %s\n' "$name" "$hash" "$rules" >>"$acl.new"
    done <"$REDIS_ACL_RULES"
    mv "$acl.new" "$acl"
    conf="$AUTH_DIR/redis-auth.conf"
    printf 'aclfile %s\n' "$acl" >"$conf.new"
    if [ -n "${REDIS_REPLICATION_USER:-}" ]; then
        pw=$(password "$REDIS_REPLICATION_USER")
        printf 'masteruser %s\nmasterauth %s\n' "$REDIS_REPLICATION_USER" "$pw" >>"$conf.new"
    fi
    mv "$conf.new" "$conf"
    log "ACL users from $REDIS_ACL_RULES, passwords from $PASSWORD_DIR"
    set -- "$conf" "$@"
fi

if [ -n "$POD_IP" ]; then
    set -- "$@" --cluster-announce-ip "$POD_IP"
fi
if [ -n "$HOSTNAME_ANNOUNCED" ]; then
    set -- "$@" --cluster-announce-hostname "$HOSTNAME_ANNOUNCED"
fi
exec "${REDIS_SERVER:-redis-server}" "$@"
