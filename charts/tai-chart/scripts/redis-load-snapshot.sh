#!/bin/sh
# Load a snapshot into this Redis node (or empty it) and stop it, so that it starts again from it.
#
# Run inside a Redis pod by playbooks/redis-restore.yml (kubectl exec), after the RDB was copied
# next to the data. The node forgets its cluster (CLUSTER RESET HARD, a new node id, no slots), its
# data and AOF are replaced by the RDB, and redis-server stops without saving; the kubelet
# restarts the container, which loads the RDB: as the base of a new AOF (appendonly yes, as in
# the StatefulSet) or as dump.rdb (appendonly no). The playbook then re-forms the cluster.
#
# Usage: redis-load-snapshot.sh RDB_FILE | --empty
# Environment:
#   REDIS_CLI       redis-cli binary (default: redis-cli)
#   REDIS_PORT      port of the local node (default: 6379)
#   REDIS_DATA_DIR  the node's --dir (default: /data)
#   REDIS_TLS_CA_FILE, REDIS_USER, REDIS_PASSWORD_FILE  TLS and the ACL user (the chart's
#                   restore user) as in redis-lib.sh
set -eu

CLI=${REDIS_CLI:-redis-cli}
PORT=${REDIS_PORT:-6379}
DIR=${REDIS_DATA_DIR:-/data}
SRC=${1:-}

log() { printf 'redis-load-snapshot: %s\n' "$*"; }
# shellcheck source=charts/tai-chart/scripts/redis-lib.sh
. "$(dirname "$0")/redis-lib.sh"
redis_client_setup
# shellcheck disable=SC2086  # CLI_OPTS is a list of options
r() { "$CLI" $CLI_OPTS -h 127.0.0.1 -p "$PORT" "$@"; }

if [ -z "$SRC" ]; then
    log "usage: redis-load-snapshot.sh RDB_FILE | --empty" >&2
    exit 2
fi
if [ "$SRC" != --empty ] && [ ! -s "$SRC" ]; then
    log "$SRC is missing or empty; nothing was changed" >&2
    exit 1
fi
if [ "$(r PING)" != PONG ]; then
    log "Redis on port $PORT does not answer; nothing was changed" >&2
    exit 1
fi

role=$(r ROLE | head -n 1)
# No more AOF writes: the files are about to be replaced.
r CONFIG SET appendonly no >/dev/null
if [ "$role" = master ]; then
    r FLUSHALL >/dev/null
fi
r CLUSTER RESET HARD >/dev/null
rm -rf "$DIR/appendonlydir" "$DIR/dump.rdb"
if [ "$SRC" != --empty ]; then
    mkdir "$DIR/appendonlydir"
    cp "$SRC" "$DIR/appendonlydir/appendonly.aof.1.base.rdb"
    printf 'file appendonly.aof.1.base.rdb seq 1 type b\n' >"$DIR/appendonlydir/appendonly.aof.manifest"
    mv "$SRC" "$DIR/dump.rdb"
    log "loaded $SRC; stopping so that the node restarts from it"
else
    log "emptied the node; stopping so that it restarts empty"
fi
r SHUTDOWN NOSAVE >/dev/null 2>&1 || true
