#!/bin/sh
# Form the Redis cluster of the TAI chart when it is not formed; do nothing when it is.
#
# Runs as the chart's post-install/post-upgrade hook Job, in the redis image (POSIX sh and
# redis-cli). Tested against real redis-server processes (tests/chart/test_redis_cluster_init.py).
#
# Usage: redis-cluster-init.sh [HOST:PORT ...]
#   The nodes come from the arguments, else from REDIS_NODES (space-separated HOST:PORT).
# Environment:
#   REDIS_NODES             nodes when no argument is given
#   REDIS_CLUSTER_REPLICAS  replicas per master (default 0); the node count must be
#                           masters * (1 + replicas) with at least 3 masters
#   REDIS_WAIT_SECONDS      how long every node may take to answer PING, and the cluster to
#                           report cluster_state:ok (default 120)
#   REDIS_CLI               redis-cli binary (default: redis-cli)
#   REDIS_TLS_CA_FILE       CA of the Redis certificates: every call uses TLS (the chart's
#                           nodes listen on TLS only); REDIS_TLS_CERT_FILE/KEY_FILE optional
#   REDIS_USER              ACL user (the chart's cluster-admin), with REDIS_PASSWORD_FILE, its
#                           password, which redis-cli reads from REDISCLI_AUTH (never argv)
#
# What it does, from what the nodes report:
#   every node empty and alone          -> redis-cli --cluster create (forms the cluster)
#   every node in one healthy cluster   -> nothing ("already formed"), exit 0
#   some nodes empty, the rest healthy  -> the empty ones join as replicas (a pod whose disk
#                                          was replaced); refused when there are no replicas
#   anything else                       -> an error that says what to look at; no repair
# Exit codes: 0 formed or already formed; 2 bad input; 3 a node is unreachable;
#   4 a cluster state this script does not repair; 5 redis-cli failed to form or join.
set -eu

CLI=${REDIS_CLI:-redis-cli}
REPLICAS=${REDIS_CLUSTER_REPLICAS:-0}
WAIT=${REDIS_WAIT_SECONDS:-120}
TOTAL_SLOTS=16384

log() { printf 'redis-cluster-init: %s\n' "$*"; }
die() {
    code=$1
    shift
    printf 'redis-cluster-init: error: %s\n' "$*" >&2
    exit "$code"
}

# Bound every call so that an unroutable address cannot hang the Job.
if command -v timeout >/dev/null 2>&1; then
    BOUND="timeout 10"
else
    BOUND=""
fi

# cli HOST:PORT ARGS... : one redis-cli call, output without carriage returns.
cli() {
    node=$1
    shift
    # shellcheck disable=SC2086  # BOUND is a command prefix or empty
    # shellcheck disable=SC2086  # CLI_OPTS is a list of options
    $BOUND "$CLI" $CLI_OPTS -h "${node%:*}" -p "${node##*:}" "$@" 2>/dev/null | tr -d '\r'
}

# info_field HOST:PORT FIELD : one field of CLUSTER INFO.
info_field() {
    cli "$1" CLUSTER INFO | sed -n "s/^$2://p"
}

now() { date +%s; }

is_uint() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# resolve_ipv4 and redis_client_setup (shared with the other Redis scripts).
# shellcheck source=charts/tai-chart/scripts/redis-lib.sh
. "$(dirname "$0")/redis-lib.sh"
redis_client_setup

# resolve HOST:PORT : IP:PORT (CLUSTER MEET needs addresses, not names).
resolve() {
    host=${1%:*}
    port=${1##*:}
    case $host in
        *[!0-9.]*) ip=$(resolve_ipv4 "$host") ;;
        *) ip=$host ;;
    esac
    [ -n "$ip" ] || die 3 "cannot resolve $host to an IPv4 address"
    printf '%s:%s\n' "$ip" "$port"
}

# ---- input ----------------------------------------------------------------------------
if [ "$#" -gt 0 ]; then
    NODES=$*
else
    NODES=${REDIS_NODES:-}
fi
# shellcheck disable=SC2086  # word splitting of the node list is intended
set -- $NODES
[ "$#" -gt 0 ] || die 2 "no Redis nodes given: pass HOST:PORT arguments or set REDIS_NODES"
is_uint "$REPLICAS" || die 2 "REDIS_CLUSTER_REPLICAS must be a whole number, not '$REPLICAS'"
is_uint "$WAIT" || die 2 "REDIS_WAIT_SECONDS must be a whole number, not '$WAIT'"

COUNT=$#
SEEN=" "
for n in "$@"; do
    case $n in
        *:*) ;;
        *) die 2 "'$n' is not HOST:PORT" ;;
    esac
    is_uint "${n##*:}" || die 2 "'$n' is not HOST:PORT (the port must be a number)"
    case $SEEN in
        *" $n "*) die 2 "node $n is listed twice" ;;
    esac
    SEEN="$SEEN$n "
done
GROUP=$((REPLICAS + 1))
if [ $((COUNT % GROUP)) -ne 0 ] || [ $((COUNT / GROUP)) -lt 3 ]; then
    die 2 "$COUNT nodes cannot form a cluster with $REPLICAS replica(s) per master: it needs" \
        "masters * $GROUP nodes with at least 3 masters"
fi

# ---- every node must answer ----------------------------------------------------------
deadline=$(($(now) + WAIT))
for n in "$@"; do
    until [ "$(cli "$n" PING)" = PONG ]; do
        if [ "$(now)" -ge "$deadline" ]; then
            die 3 "Redis node $n did not answer PING within ${WAIT}s; the cluster was not" \
                "formed or checked (is the pod running and the port reachable?)"
        fi
        sleep 1
    done
    cli "$n" INFO cluster | grep -q '^cluster_enabled:1' ||
        die 2 "Redis node $n does not run in cluster mode (cluster-enabled is not yes)"
done
log "all $COUNT nodes answer"

# ---- classify -------------------------------------------------------------------------
# A node is empty when it knows only itself and serves no slot.
EMPTY=""
MEMBERS=""
for n in "$@"; do
    known=$(info_field "$n" cluster_known_nodes)
    assigned=$(info_field "$n" cluster_slots_assigned)
    if [ "$known" = 1 ] && [ "$assigned" = 0 ]; then
        EMPTY="$EMPTY $n"
    else
        MEMBERS="$MEMBERS $n"
    fi
done

# wait_ok NODES... : every node reports cluster_state:ok and all slots, within WAIT.
wait_ok() {
    deadline=$(($(now) + WAIT))
    for n in "$@"; do
        while :; do
            state=$(info_field "$n" cluster_state)
            ok=$(info_field "$n" cluster_slots_ok)
            [ "$state" = ok ] && [ "$ok" = "$TOTAL_SLOTS" ] && break
            if [ "$(now)" -ge "$deadline" ]; then
                return 1
            fi
            sleep 1
        done
    done
    return 0
}

# wait_topology NODES... : every node sees the expected masters serving slots and at least the
# expected replicas (roles spread by gossip after create/add-node), within WAIT.
wait_topology() {
    want_masters=$((COUNT / GROUP))
    want_replicas=$((COUNT - want_masters))
    deadline=$(($(now) + WAIT))
    for n in "$@"; do
        while :; do
            counts=$(cli "$n" CLUSTER NODES | awk '
                $3 ~ /fail/ {next}
                $3 ~ /master/ && NF > 8 {m++}
                $3 ~ /slave/ {r++}
                END {print m + 0, r + 0}')
            masters=${counts% *}
            replicas=${counts#* }
            [ "$masters" -eq "$want_masters" ] && [ "$replicas" -ge "$want_replicas" ] && break
            if [ "$(now)" -ge "$deadline" ]; then
                return 1
            fi
            sleep 1
        done
    done
    return 0
}

# same_cluster NODES... : the first node's CLUSTER NODES lists every node's id.
same_cluster() {
    view=$(cli "$1" CLUSTER NODES)
    for n in "$@"; do
        id=$(cli "$n" CLUSTER MYID)
        [ -n "$id" ] || return 1
        printf '%s\n' "$view" | grep -q "^$id " || {
            log "node $n (id $id) is not part of the cluster that $1 belongs to"
            return 1
        }
    done
    return 0
}

# shellcheck disable=SC2086
if [ -z "$MEMBERS" ]; then
    log "no node belongs to a cluster yet: forming one with $((COUNT / GROUP)) masters and" \
        "$REPLICAS replica(s) each"
    ADDRS=""
    for n in "$@"; do
        ADDRS="$ADDRS $(resolve "$n")"
    done
    if ! out=$("$CLI" $CLI_OPTS --cluster create $ADDRS --cluster-replicas "$REPLICAS" --cluster-yes 2>&1); then
        printf '%s\n' "$out" >&2
        die 5 "redis-cli --cluster create failed (output above)"
    fi
    printf '%s\n' "$out"
    wait_ok "$@" || die 5 "the cluster was created but did not reach cluster_state:ok within ${WAIT}s"
    wait_topology "$@" || die 5 "the cluster was created but its nodes do not all see" \
        "$((COUNT / GROUP)) masters and $((COUNT - COUNT / GROUP)) replicas within ${WAIT}s"
    log "cluster formed: cluster_state:ok, $TOTAL_SLOTS slots assigned, $COUNT nodes"
    exit 0
fi

# Some nodes already form a cluster: it must be healthy before anything else happens.
# shellcheck disable=SC2086  # word splitting of the node list is intended
set -- $MEMBERS
if ! wait_ok "$@"; then
    n=$1
    die 4 "the cluster is not healthy (node $n: cluster_state:$(info_field "$n" cluster_state)," \
        "$(info_field "$n" cluster_slots_assigned) of $TOTAL_SLOTS slots assigned," \
        "$(info_field "$n" cluster_slots_ok) ok); not repairing it automatically: inspect it with" \
        "'redis-cli --cluster check $n' and fix it by hand"
fi
same_cluster "$@" || die 4 "the listed nodes belong to different clusters; not merging them" \
    "automatically: inspect them with 'redis-cli --cluster check'"

if [ -z "$EMPTY" ]; then
    log "cluster already formed (cluster_state:ok, $TOTAL_SLOTS slots, $COUNT nodes);" \
        "nothing to do"
    exit 0
fi

# Empty nodes next to a healthy cluster: pods whose volume was replaced.
if [ "$REPLICAS" -eq 0 ]; then
    die 4 "node(s)$EMPTY are empty but the cluster exists; without replicas their data is gone" \
        "and the cluster has no slot for them: add them by hand (redis-cli --cluster add-node)" \
        "and rebalance"
fi
seed=$(resolve "$1")
for n in $EMPTY; do
    addr=$(resolve "$n")
    log "node $n is empty: joining it to the cluster as a replica"
    # shellcheck disable=SC2086  # CLI_OPTS is a list of options
    if ! out=$("$CLI" $CLI_OPTS --cluster add-node "$addr" "$seed" --cluster-slave 2>&1); then
        printf '%s\n' "$out" >&2
        die 5 "redis-cli --cluster add-node $addr failed (output above)"
    fi
    printf '%s\n' "$out"
done
# shellcheck disable=SC2086
wait_ok $MEMBERS $EMPTY || die 5 "the joined node(s)$EMPTY did not report cluster_state:ok within ${WAIT}s"
# shellcheck disable=SC2086
wait_topology $MEMBERS $EMPTY || die 5 "the joined node(s)$EMPTY are not seen as replicas by" \
    "every node within ${WAIT}s"
log "node(s)$EMPTY joined; cluster_state:ok, $TOTAL_SLOTS slots"
