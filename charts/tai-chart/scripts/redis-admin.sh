#!/bin/sh
# redis-cli on this Redis pod's node as the cluster-admin user, over TLS: what the runbooks run
# with `kubectl exec ... -- sh /scripts/redis-admin.sh ARGS...` (CLUSTER INFO, CLUSTER NODES,
# --cluster check/call). The password comes from the Vault agent's file and reaches redis-cli
# through REDISCLI_AUTH, never the command line.
#
# Environment (set in the pod): REDIS_TLS_CA_FILE, REDIS_PASSWORD_DIR; REDIS_ADMIN_USER (default
# cluster-admin); REDIS_PORT (default 6379); REDIS_CLI (default redis-cli).
set -eu
REDIS_USER=${REDIS_ADMIN_USER:-cluster-admin}
REDIS_PASSWORD_FILE=${REDIS_PASSWORD_DIR:-/vault/secrets}/redis-user-$REDIS_USER
export REDIS_USER REDIS_PASSWORD_FILE
# shellcheck source=charts/tai-chart/scripts/redis-lib.sh
. "$(dirname "$0")/redis-lib.sh"
redis_client_setup
# shellcheck disable=SC2086  # CLI_OPTS is a list of options
exec "${REDIS_CLI:-redis-cli}" $CLI_OPTS -h 127.0.0.1 -p "${REDIS_PORT:-6379}" "$@"
