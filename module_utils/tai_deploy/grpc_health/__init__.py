# Copyright: tai-deploy contributors
"""Concurrent gRPC health checks (``grpc.health.v1.Health``) for many endpoints at once.

This is the core of the ``grpc_health_check`` Ansible module and of a small command line tool
(``python -m tai_deploy.grpc_health``) whose flags and exit codes follow grpc-health-probe.
It does not import Ansible.

One *attempt* against a target is: open a fresh channel, wait at most ``connect_timeout`` for it
to become READY (failing at once when gRPC reports the connection as failed, e.g. refused), then
one ``Check`` call bounded by ``rpc_timeout``. So an address that accepts TCP connections and
never answers costs at most ``connect_timeout`` (plus a few milliseconds), and a server whose
handler hangs costs at most ``connect_timeout + rpc_timeout``.

With ``wait_timeout > 0`` a target is retried with exponential backoff until it has answered
SERVING ``consecutive_successes`` times in a row (the confirmations ``interval`` seconds apart)
or the deadline passes; attempts start no later than the deadline, so a call lasts at most
``wait_timeout + connect_timeout + rpc_timeout``. In watch mode the server streams status changes
instead (``Watch``); stability then means SERVING with no change for
``(consecutive_successes - 1) * interval`` seconds.

The package, one job a module: params (targets, TLS, wait policy, error classes and exit
codes), probe (one attempt), report (results), schedule (check mode's pool and the entry
point run_health_checks), watch (watch mode), cli (the command line). What callers import is
re-exported here.
"""

from __future__ import annotations

from .cli import _parser, main, parse_duration
from .params import (
    CONNECT_FAILED,
    DEADLINE_EXCEEDED,
    DEFAULT_USER_AGENT,
    ERROR_CLASSES,
    EXIT_CONNECTION_FAILURE,
    EXIT_INVALID_ARGUMENTS,
    EXIT_OK,
    EXIT_RPC_FAILURE,
    EXIT_UNHEALTHY,
    MASK,
    MODES,
    NOT_SERVING,
    RPC_FAILED,
    SENSITIVE_HEADERS,
    SERVICE_UNKNOWN,
    UNIMPLEMENTED,
    UNSTABLE,
    ConfigError,
    Target,
    TlsSettings,
    WaitPolicy,
    policy_from_params,
    sensitive_header_values,
    split_host_port,
    targets_from_params,
)
from .probe import Observation, check_once, fetch_server_certificate
from .report import HealthReport, TargetResult, mask
from .schedule import run_health_checks

__all__ = [
    "CONNECT_FAILED", "DEADLINE_EXCEEDED", "DEFAULT_USER_AGENT", "ERROR_CLASSES",
    "EXIT_CONNECTION_FAILURE", "EXIT_INVALID_ARGUMENTS", "EXIT_OK", "EXIT_RPC_FAILURE",
    "EXIT_UNHEALTHY", "MASK", "MODES", "NOT_SERVING", "RPC_FAILED", "SENSITIVE_HEADERS",
    "SERVICE_UNKNOWN", "UNIMPLEMENTED", "UNSTABLE", "ConfigError", "HealthReport", "Observation",
    "Target", "TargetResult", "TlsSettings", "WaitPolicy", "_parser", "check_once",
    "fetch_server_certificate", "main", "mask", "parse_duration", "policy_from_params",
    "run_health_checks", "sensitive_header_values", "split_host_port", "targets_from_params",
]
