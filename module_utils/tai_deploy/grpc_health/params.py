# Copyright: tai-deploy contributors
"""The health check's parameters: targets, TLS, the wait policy, and the vocabulary of its
results (error classes, exit codes of grpc-health-probe). Every input is checked here, one
sentence per problem (ConfigError), before any target is contacted."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

CONNECT_FAILED: Final = "connect_failed"
RPC_FAILED: Final = "rpc_failed"
NOT_SERVING: Final = "not_serving"
SERVICE_UNKNOWN: Final = "service_unknown"
UNIMPLEMENTED: Final = "unimplemented"
DEADLINE_EXCEEDED: Final = "deadline_exceeded"
UNSTABLE: Final = "unstable"
ERROR_CLASSES: Final = (
    CONNECT_FAILED,
    RPC_FAILED,
    NOT_SERVING,
    SERVICE_UNKNOWN,
    UNIMPLEMENTED,
    DEADLINE_EXCEEDED,
    UNSTABLE,
)
MODES: Final = ("check", "watch")
MASK: Final = "********"
DEFAULT_USER_AGENT: Final = "tai-deploy-grpc-health-check"
# Header names whose values are secret even when passed as plain metadata.
SENSITIVE_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"}
)
def sensitive_header_values(params: Mapping[str, Any]) -> set[str]:
    """Values of well-known secret headers in raw module parameters, before any validation.

    The wrapper masks them first, so that even a parameter error cannot print them.
    """
    found: set[str] = set()
    sources = [params.get("metadata")]
    sources += [t.get("metadata") for t in params.get("targets") or [] if isinstance(t, Mapping)]
    for metadata in sources:
        if isinstance(metadata, Mapping):
            found |= {str(v) for k, v in metadata.items()
                      if str(k).strip().lower() in SENSITIVE_HEADERS and v not in (None, "")}
    return found


_HEADER_KEY = re.compile(r"^[0-9a-z_.-]+$")
_RESERVED_HEADERS = frozenset({"content-type", "te", "user-agent", "host"})
_STATUS_NAMES: Final = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_SERVING: Final = 1
_SERVICE_UNKNOWN_STATUS: Final = 3
# Exit codes of grpc-health-probe.
EXIT_OK: Final = 0
EXIT_INVALID_ARGUMENTS: Final = 1
EXIT_CONNECTION_FAILURE: Final = 2
EXIT_RPC_FAILURE: Final = 3
EXIT_UNHEALTHY: Final = 4
_EXIT_CODES: Final = {
    CONNECT_FAILED: EXIT_CONNECTION_FAILURE,
    RPC_FAILED: EXIT_RPC_FAILURE,
    SERVICE_UNKNOWN: EXIT_RPC_FAILURE,
    UNIMPLEMENTED: EXIT_RPC_FAILURE,
    DEADLINE_EXCEEDED: EXIT_RPC_FAILURE,
    NOT_SERVING: EXIT_UNHEALTHY,
    UNSTABLE: EXIT_UNHEALTHY,
}


class ConfigError(ValueError):
    """Invalid parameters; ``problems`` holds one sentence per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TlsSettings:
    """Transport security of one target (paths to PEM files)."""

    enabled: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None
    no_verify: bool = False

    def problems(self) -> list[str]:
        """The grpc-health-probe rules, one sentence per violation."""
        out: list[str] = []
        if not self.enabled:
            for name, value in (
                ("tls_ca_cert", self.ca_cert),
                ("tls_client_cert", self.client_cert),
                ("tls_client_key", self.client_key),
                ("tls_server_name", self.server_name),
                ("tls_no_verify", self.no_verify),
            ):
                if value:
                    out.append(f"{name} requires tls: true")
        if bool(self.client_cert) != bool(self.client_key):
            out.append("tls_client_cert and tls_client_key must be given together")
        if self.no_verify and self.ca_cert:
            out.append(
                "tls_no_verify and tls_ca_cert are mutually exclusive (the CA would not be used)"
            )
        if self.no_verify and self.server_name:
            out.append(
                "tls_no_verify and tls_server_name are mutually exclusive "
                "(the server name would not be verified)"
            )
        return out


@dataclass(frozen=True)
class Target:
    """One endpoint and health service name to check, with all settings resolved."""

    address: str
    service: str = ""
    name: str = ""
    connect_timeout: float = 1.0
    rpc_timeout: float = 1.0
    tls: TlsSettings = field(default_factory=TlsSettings)
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold secrets
    sensitive_keys: frozenset[str] = frozenset()
    user_agent: str | None = DEFAULT_USER_AGENT
    gzip: bool = False

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.address} service {self.service!r}" if self.service else self.address

    def sensitive_values(self) -> frozenset[str]:
        """Metadata values that must never be shown (marked sensitive or well-known secrets)."""
        secret_keys = self.sensitive_keys | SENSITIVE_HEADERS
        return frozenset(v for k, v in self.metadata if k in secret_keys and v)

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.address.strip():
            out.append("address must not be empty")
        else:
            out += _port_problems(self.address)
        for opt, value in (("connect_timeout", self.connect_timeout),
                           ("rpc_timeout", self.rpc_timeout)):
            if not math.isfinite(value):
                out.append(f"{opt} must be a finite number of seconds (got {value})")
            elif not value > 0:
                out.append(f"{opt} must be greater than 0 (got {value})")
        for key, _ in self.metadata:
            if not _HEADER_KEY.match(key):
                out.append(f"metadata key {key!r} is not a valid gRPC header name")
            elif key.startswith("grpc-") or key in _RESERVED_HEADERS:
                out.append(f"metadata key {key!r} is reserved by gRPC (use user_agent for "
                           "user-agent)")
        out += self.tls.problems()
        return out


@dataclass(frozen=True)
class WaitPolicy:
    """How long and how to wait for the targets to become (stably) healthy."""

    timeout: float = 0.0
    interval: float = 1.0
    backoff: float = 1.5
    max_interval: float = 5.0
    consecutive_successes: int = 1
    mode: Literal["check", "watch"] = "check"

    @property
    def stability_window(self) -> float:
        return (self.consecutive_successes - 1) * self.interval

    def retry_delay(self, failures: int) -> float:
        """Delay before the next attempt after ``failures`` failures in a row."""
        return min(self.interval * self.backoff ** max(failures - 1, 0), self.max_interval)

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.mode not in MODES:
            out.append(f"mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        infinite = [(n, v) for n, v in (("wait_timeout", self.timeout),
                                         ("interval", self.interval), ("backoff", self.backoff),
                                         ("max_interval", self.max_interval))
                    if not math.isfinite(v)]
        if infinite:
            # nan compares false with everything (a wait that never ends); inf never ends either.
            return [f"{n} must be a finite number of seconds (got {v})" for n, v in infinite]
        if self.timeout < 0:
            out.append(f"wait_timeout must not be negative (got {self.timeout})")
        if not self.interval > 0:
            out.append(f"interval must be greater than 0 (got {self.interval})")
        if self.backoff < 1:
            out.append(f"backoff must be at least 1 (got {self.backoff})")
        if self.max_interval < self.interval:
            out.append(f"max_interval ({self.max_interval}) must not be below interval "
                       f"({self.interval})")
        if self.consecutive_successes < 1:
            out.append(f"consecutive_successes must be at least 1 (got "
                       f"{self.consecutive_successes})")
        elif self.timeout < self.stability_window:
            out.append(
                f"wait_timeout ({self.timeout}) is too short for consecutive_successes="
                f"{self.consecutive_successes} at interval={self.interval}: it needs at least "
                f"{self.stability_window:g} seconds"
            )
        return out


_TLS_FIELDS: Final = ("ca_cert", "client_cert", "client_key", "server_name", "no_verify")


def _tls_from(params: Mapping[str, Any], inherited: TlsSettings | None) -> TlsSettings:
    """TLS settings of one level (top level or a target), inheriting what it does not set.

    A target that sets ``tls: false`` inherits nothing; one that sets ``tls_no_verify: true``
    does not inherit ``tls_ca_cert``/``tls_server_name``, one that sets either of those does not
    inherit ``tls_no_verify: true``; the client certificate and key are inherited as a pair.
    """
    own = {f: params.get(f"tls_{f}") for f in _TLS_FIELDS}
    enabled = params.get("tls")
    if inherited is None or enabled is False:
        return TlsSettings(
            enabled=bool(enabled), ca_cert=own["ca_cert"] or None,
            client_cert=own["client_cert"] or None, client_key=own["client_key"] or None,
            server_name=own["server_name"] or None, no_verify=bool(own["no_verify"]),
        )
    ca_cert, server_name, no_verify = inherited.ca_cert, inherited.server_name, inherited.no_verify
    if own["no_verify"]:
        ca_cert = server_name = None
    if own["ca_cert"] or own["server_name"]:
        no_verify = False
    client_cert, client_key = inherited.client_cert, inherited.client_key
    if own["client_cert"] is not None or own["client_key"] is not None:
        client_cert, client_key = own["client_cert"] or None, own["client_key"] or None
    return TlsSettings(
        enabled=inherited.enabled if enabled is None else bool(enabled),
        ca_cert=own["ca_cert"] or ca_cert,
        client_cert=client_cert,
        client_key=client_key,
        server_name=own["server_name"] or server_name,
        no_verify=no_verify if own["no_verify"] is None else bool(own["no_verify"]),
    )


def _metadata_from(*layers: Mapping[str, Any] | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            merged[str(key).strip().lower()] = "" if value is None else str(value)
    return merged


def _pick(own: Any, default: Any) -> Any:
    return default if own is None else own


def targets_from_params(params: Mapping[str, Any]) -> list[Target]:
    """Build validated targets from module-style parameters (shared defaults + ``targets``).

    Raises ConfigError listing every problem, each prefixed with where it was found.
    """
    problems: list[str] = []
    top_tls = _tls_from(params, None)
    problems += [f"top level: {p}" for p in top_tls.problems()]
    raw_targets = params.get("targets") or []
    if not raw_targets:
        problems.append("targets must list at least one target")
    targets: list[Target] = []
    top_problems = set(top_tls.problems())
    for index, entry in enumerate(raw_targets):
        raw: Mapping[str, Any] = {"address": entry} if isinstance(entry, str) else entry
        metadata = _metadata_from(params.get("metadata"), params.get("sensitive_metadata"),
                                  raw.get("metadata"), raw.get("sensitive_metadata"))
        sensitive = frozenset(
            _metadata_from(params.get("sensitive_metadata"), raw.get("sensitive_metadata"))
        )
        target = Target(
            address=str(raw.get("address") or "").strip(),
            service=str(_pick(raw.get("service"), params.get("service")) or ""),
            name=str(raw.get("name") or ""),
            connect_timeout=float(_pick(raw.get("connect_timeout"),
                                        _pick(params.get("connect_timeout"), 1.0))),
            rpc_timeout=float(_pick(raw.get("rpc_timeout"),
                                    _pick(params.get("rpc_timeout"), 1.0))),
            tls=_tls_from(raw, top_tls),
            metadata=tuple(sorted(metadata.items())),
            sensitive_keys=sensitive,
            user_agent=_pick(raw.get("user_agent"),
                             _pick(params.get("user_agent"), DEFAULT_USER_AGENT)) or None,
            gzip=bool(_pick(raw.get("gzip"), params.get("gzip"))),
        )
        where = f"targets[{index}]" + (f" ({target.name})" if target.name else "")
        # A problem inherited from the top level is reported once, at the top level.
        problems += [f"{where}: {p}" for p in target.problems() if p not in top_problems]
        targets.append(target)
    if problems:
        raise ConfigError(problems)
    return targets


def policy_from_params(params: Mapping[str, Any]) -> WaitPolicy:
    """Build the validated wait policy from module-style parameters."""
    mode = params.get("mode") or "check"
    policy = WaitPolicy(
        timeout=float(_pick(params.get("wait_timeout"), 0.0)),
        interval=float(_pick(params.get("interval"), 1.0)),
        backoff=float(_pick(params.get("backoff"), 1.5)),
        max_interval=float(_pick(params.get("max_interval"), 5.0)),
        consecutive_successes=int(_pick(params.get("consecutive_successes"), 1)),
        mode="watch" if mode == "watch" else "check",
    )
    problems = policy.problems()
    if mode not in MODES:
        problems.insert(0, f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if problems:
        raise ConfigError(problems)
    return policy



def _port_problems(address: str) -> list[str]:
    """A TCP port outside 1-65535 (RFC 793) in a host:port address."""
    try:
        _, port = split_host_port(address)
    except ValueError:
        return []  # other gRPC target schemes (unix:, xds:) carry no port to check
    if not 1 <= port <= 65535:
        return [f"address {address!r} has port {port}; a TCP port is from 1 to 65535"]
    return []


def split_host_port(address: str) -> tuple[str, int]:
    """Host and port of ``host:port``, ``[v6]:port`` or ``dns:///host:port`` (port 443 if none)."""
    rest = re.sub(r"^(dns:(//[^/]*)?/|ipv4:|ipv6:)", "", address)
    match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", rest) or re.match(
        r"^([^:]+)(?::(\d+))?$", rest
    )
    if not match:
        raise ValueError(f"cannot split {address!r} into host and port")
    return match.group(1), int(match.group(2) or 443)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
