# Copyright: tai-deploy contributors
"""Command line of the health check (``python -m tai_deploy.grpc_health``): grpc-health-probe
compatible flags and exit codes."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

from .params import (
    _EXIT_CODES,
    EXIT_INVALID_ARGUMENTS,
    EXIT_OK,
    EXIT_RPC_FAILURE,
    ConfigError,
    policy_from_params,
    targets_from_params,
)
from .schedule import run_health_checks

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from a Go duration (``1s``, ``250ms``, ``1m30s``) or a plain number of seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"invalid duration {text!r}: give a finite number of seconds "
                             "(0 or more) or a duration such as 250ms or 1m30s")
        return seconds
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"invalid -rpc-header {text!r}, expected 'name: value'")
    return key.strip(), value.strip()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tai_deploy.grpc_health", allow_abbrev=False,
        description="grpc-health-probe compatible health check for one or more addresses.",
    )

    def flag(name: str, **kwargs: Any) -> None:
        p.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)

    flag("addr", action="append", required=True, help="address (repeat for several)")
    flag("service", default="", help="service name to check (default: overall health)")
    flag("connect-timeout", type=_duration_arg, default=1.0, help="e.g. 1s, 250ms")
    flag("rpc-timeout", type=_duration_arg, default=1.0, help="e.g. 1s, 250ms")
    flag("rpc-header", type=_header, action="append", default=[], help="'name: value'")
    flag("sensitive-rpc-header", type=_header, action="append", default=[],
         help="like -rpc-header, value never printed")
    flag("user-agent", default="grpc_health_probe")
    flag("tls", action="store_true")
    flag("tls-ca-cert", default=None)
    flag("tls-client-cert", default=None)
    flag("tls-client-key", default=None)
    flag("tls-server-name", default=None)
    flag("tls-no-verify", action="store_true")
    flag("gzip", action="store_true")
    flag("watch", action="store_true", help="use the Watch stream")
    flag("wait-timeout", type=_duration_arg, default=0.0, help="retry until SERVING")
    flag("interval", type=_duration_arg, default=1.0)
    flag("consecutive-successes", type=int, default=1)
    flag("json", action="store_true", help="print the report as JSON")
    flag("v", action="store_true", help="verbose")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 healthy, 1 bad flags, 2 connect failure, 3 RPC failure, 4 unhealthy.

    With several addresses, the exit code is the one of the first unhealthy address.
    """
    parser = _parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2, the probe uses 1 for bad flags
        return EXIT_OK if exc.code == 0 else EXIT_INVALID_ARGUMENTS
    params = {
        "targets": [{"address": a} for a in ns.addr],
        "service": ns.service, "connect_timeout": ns.connect_timeout,
        "rpc_timeout": ns.rpc_timeout, "metadata": dict(ns.rpc_header),
        "sensitive_metadata": dict(ns.sensitive_rpc_header), "user_agent": ns.user_agent,
        "tls": ns.tls, "tls_ca_cert": ns.tls_ca_cert, "tls_client_cert": ns.tls_client_cert,
        "tls_client_key": ns.tls_client_key, "tls_server_name": ns.tls_server_name,
        "tls_no_verify": ns.tls_no_verify, "gzip": ns.gzip,
        "mode": "watch" if ns.watch else "check", "wait_timeout": ns.wait_timeout,
        "interval": ns.interval, "consecutive_successes": ns.consecutive_successes,
    }
    try:
        report = run_health_checks(targets_from_params(params), policy_from_params(params))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_ARGUMENTS
    if ns.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        many = len(report.results) > 1
        for r in report.results:
            prefix = f"{r.address}: " if many else ""
            if r.healthy:
                print(f"{prefix}status: {r.status}")
            else:
                print(f"{prefix}error: {r.error}: {r.message}", file=sys.stderr)
            if ns.v:
                print(f"{prefix}attempts={r.attempts} connect_ms={r.connect_ms} "
                      f"latency_ms={r.latency_ms}", file=sys.stderr)
    for r in report.results:
        if not r.healthy:
            return _EXIT_CODES.get(r.error or "", EXIT_RPC_FAILURE)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
