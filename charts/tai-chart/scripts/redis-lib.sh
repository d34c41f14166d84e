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
