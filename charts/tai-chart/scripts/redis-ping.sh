#!/bin/sh
# Readiness and liveness probe of a Redis pod: PING on the local TLS port as the probe user,
# which may run PING and nothing else. Exits 0 only on PONG (redis-cli itself exits 0 on an
# error reply such as NOAUTH, so its exit status alone would pass a node that refuses logins).
#
# Usage: redis-ping.sh PORT
# Environment: REDIS_TLS_CA_FILE, REDIS_USER, REDIS_PASSWORD_FILE as in redis-lib.sh;
#   REDIS_CLI (default: redis-cli).
set -eu
# shellcheck source=charts/tai-chart/scripts/redis-lib.sh
. "$(dirname "$0")/redis-lib.sh"
redis_client_setup
# shellcheck disable=SC2086  # CLI_OPTS is a list of options
answer=$("${REDIS_CLI:-redis-cli}" $CLI_OPTS -h 127.0.0.1 -p "${1:?usage: redis-ping.sh PORT}" PING | tr -d '\r')
[ "$answer" = PONG ] || {
    printf 'redis-ping: %s\n' "${answer:-no answer}" >&2
    exit 1
}
