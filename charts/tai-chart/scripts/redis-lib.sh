# shellcheck shell=sh
# Shell functions shared by redis-start.sh and redis-cluster-init.sh (POSIX sh), sourced by
# both from the folder they run from (/scripts in the pods, the chart folder in the tests).

# resolve_ipv4 NAME : the name's IPv4 address, or nothing. getent comes with musl-utils in the
# alpine image; busybox nslookup is the fallback.
resolve_ipv4() {
    if command -v getent >/dev/null 2>&1; then
        getent hosts "$1" 2>/dev/null |
            awk '$1 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ {print $1; exit}'
    else
        nslookup "$1" 2>/dev/null | awk '/^Name:/ {n = 1; next}
            n && /^Address/ {for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/) {print $i; exit}}'
    fi
}

# redis_client_setup : the options every redis-cli call of these scripts adds, in CLI_OPTS, from
#   REDIS_TLS_CA_FILE      CA of the Redis certificates: connect with TLS and verify the server
#   REDIS_TLS_CERT_FILE    client certificate and key (optional; the cluster bus needs none from
#   REDIS_TLS_KEY_FILE     a client, Redis nodes present their own)
#   REDIS_USER             ACL user to log in as (with REDIS_PASSWORD_FILE)
#   REDIS_PASSWORD_FILE    that user's password; exported as REDISCLI_AUTH, which redis-cli reads
#                          itself, so the password is never on a command line
# Paths hold no spaces (they are the chart's mount paths).
redis_client_setup() {
    CLI_OPTS=""
    if [ -n "${REDIS_TLS_CA_FILE:-}" ]; then
        [ -s "$REDIS_TLS_CA_FILE" ] || {
            printf '%s: error: the Redis CA file %s is absent or empty\n' "$(basename "$0" .sh)" \
                "$REDIS_TLS_CA_FILE" >&2
            exit 2
        }
        CLI_OPTS="--tls --cacert $REDIS_TLS_CA_FILE"
        if [ -n "${REDIS_TLS_CERT_FILE:-}" ]; then
            CLI_OPTS="$CLI_OPTS --cert $REDIS_TLS_CERT_FILE --key ${REDIS_TLS_KEY_FILE:?REDIS_TLS_KEY_FILE must go with REDIS_TLS_CERT_FILE}"
        fi
    fi
    if [ -n "${REDIS_USER:-}" ]; then
        [ -s "${REDIS_PASSWORD_FILE:-}" ] || {
            printf '%s: error: the password file of Redis user %s (REDIS_PASSWORD_FILE=%s) is absent or empty\n' \
                "$(basename "$0" .sh)" "$REDIS_USER" "${REDIS_PASSWORD_FILE:-}" >&2
            exit 2
        }
        CLI_OPTS="$CLI_OPTS --user $REDIS_USER"
        REDISCLI_AUTH=$(cat "$REDIS_PASSWORD_FILE")
        export REDISCLI_AUTH
    fi
}
