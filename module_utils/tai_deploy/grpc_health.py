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
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import math
import queue
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class TargetResult:
    """Outcome for one target (the last observation plus the wait bookkeeping)."""

    name: str
    address: str
    service: str
    healthy: bool = False
    status: str | None = None
    error: str | None = None
    message: str = ""
    latency_ms: float | None = None
    connect_ms: float | None = None
    attempts: int = 0
    consecutive_successes: int = 0
    metadata_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    """Results of one call, in the order of the targets."""

    results: list[TargetResult]
    elapsed_ms: float

    @property
    def healthy(self) -> bool:
        return all(r.healthy for r in self.results)

    @property
    def unhealthy(self) -> list[TargetResult]:
        return [r for r in self.results if not r.healthy]

    def summary(self) -> dict[str, Any]:
        by_error: dict[str, int] = {}
        for r in self.results:
            if r.error:
                by_error[r.error] = by_error.get(r.error, 0) + 1
        healthy = sum(r.healthy for r in self.results)
        return {"total": len(self.results), "healthy": healthy,
                "unhealthy": len(self.results) - healthy, "by_error": by_error}

    def message(self) -> str:
        """One line: all healthy, or every unhealthy target and why."""
        total = len(self.results)
        bad = self.unhealthy
        if not bad:
            return f"all {total} gRPC target(s) SERVING"
        reasons = "; ".join(f"{_where(r)}: {r.error} - {r.message}" for r in bad)
        return f"{len(bad)} of {total} gRPC target(s) unhealthy: {reasons}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "targets": [r.as_dict() for r in self.results],
            "summary": self.summary(),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "msg": self.message(),
        }


def _where(r: TargetResult) -> str:
    """The target's name, with its address and service unless the name already says them."""
    extra = [] if r.address in r.name else [r.address]
    if r.service and r.service not in r.name:
        extra.append(f"service {r.service!r}")
    return f"{r.name} ({', '.join(extra)})" if extra else r.name


# --------------------------------------------------------------------------------------------
# One attempt


@dataclass(frozen=True)
class Observation:
    """What one attempt saw. ``error`` is None when the status is SERVING."""

    started: float
    status: str | None
    error: str | None
    message: str
    latency_ms: float | None = None
    connect_ms: float | None = None


@dataclass(frozen=True)
class _Material:
    """PEM bytes read once per call."""

    root: bytes | None = None
    key: bytes | None = None
    chain: bytes | None = None


def _read_pem(path: str, option: str, problems: list[str]) -> bytes | None:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        problems.append(f"{option}: cannot read {path}: {exc.strerror or exc}")
        return None


def _load_material(targets: Sequence[Target]) -> list[_Material]:
    problems: list[str] = []
    cache: dict[tuple[str, str], bytes | None] = {}

    def read(path: str | None, option: str) -> bytes | None:
        if not path:
            return None
        if (path, option) not in cache:
            cache[(path, option)] = _read_pem(path, option, problems)
        return cache[(path, option)]

    out = [
        _Material(read(t.tls.ca_cert, "tls_ca_cert"), read(t.tls.client_key, "tls_client_key"),
                  read(t.tls.client_cert, "tls_client_cert")) if t.tls.enabled else _Material()
        for t in targets
    ]
    if problems:
        raise ConfigError(problems)
    return out


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


def fetch_server_certificate(
    target: Target, timeout: float
) -> tuple[bytes, str]:
    """For tls_no_verify: the server's certificate (PEM) and a name it is valid for.

    The handshake is made without verification (presenting the client certificate if any);
    the returned certificate is then trusted as the only root for the real gRPC connection and
    the name is used as ``grpc.ssl_target_name_override``.
    """
    host, port = split_host_port(target.address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if target.tls.client_cert and target.tls.client_key:
        context.load_cert_chain(target.tls.client_cert, target.tls.client_key)
    with socket.create_connection((host, port), timeout=timeout) as sock, context.wrap_socket(
        sock, server_hostname=None if _is_ip(host) else host
    ) as tls_sock:
        der = tls_sock.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode(), _certificate_name(der, host)


def _certificate_name(der: bytes, fallback: str) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names: list[str] = []
    else:
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not names:
        return fallback
    name = names[0]
    return "grpc-health-check" + name[1:] if name.startswith("*.") else name


def _open_channel(target: Target, material: _Material, connect_budget: float) -> grpc.Channel:
    options: list[tuple[str, Any]] = [
        # A private subchannel: no reconnect backoff shared with other attempts or targets.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_retries", 0),
    ]
    if target.user_agent:
        options.append(("grpc.primary_user_agent", target.user_agent))
    compression = grpc.Compression.Gzip if target.gzip else None
    if not target.tls.enabled:
        return grpc.insecure_channel(target.address, options=options, compression=compression)
    root, server_name = material.root, target.tls.server_name
    if target.tls.no_verify:
        root, server_name = fetch_server_certificate(target, connect_budget)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=material.key, certificate_chain=material.chain
    )
    return grpc.secure_channel(target.address, credentials, options=options,
                               compression=compression)


_CONNECTIVITY: Final = {c.value[0]: c for c in grpc.ChannelConnectivity}
_FINAL_STATES: Final = (grpc.ChannelConnectivity.READY,
                        grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                        grpc.ChannelConnectivity.SHUTDOWN)


def _await_ready(channel: grpc.Channel, timeout: float) -> Any:
    """Wait for READY, or a failed connection (TRANSIENT_FAILURE), at most ``timeout`` s.

    Returns the last ``grpc.ChannelConnectivity`` seen (None if none). The public way,
    ``channel.subscribe``, starts a polling thread that makes the later ``channel.close()``
    block for up to 0.2 s (its poll period) -- 20 s of worker time per 100 targets. So the
    channel's own connectivity calls (what that polling thread uses) are called directly when
    present, with ``subscribe`` as the fallback.
    """
    raw: Any = getattr(channel, "_channel", None)
    if not (hasattr(raw, "check_connectivity_state") and hasattr(raw, "watch_connectivity_state")):
        return _await_ready_subscribed(channel, timeout)
    deadline = time.time() + timeout  # the C core wants wall-clock deadlines
    state = _CONNECTIVITY.get(raw.check_connectivity_state(True))
    while state not in _FINAL_STATES and time.time() < deadline:
        if not raw.watch_connectivity_state(state.value[0] if state else 0, deadline).success:
            break
        state = _CONNECTIVITY.get(raw.check_connectivity_state(False))
    return state


def _await_ready_subscribed(channel: grpc.Channel, timeout: float) -> Any:
    done = threading.Event()
    last: list[Any] = [None]

    def on_change(state: Any) -> None:
        last[0] = state
        if state in _FINAL_STATES:
            done.set()

    channel.subscribe(on_change, try_to_connect=True)
    try:
        done.wait(timeout)
    finally:
        channel.unsubscribe(on_change)
    return last[0]


def _rpc_metadata(target: Target) -> list[tuple[str, str | bytes]]:
    return [(k, v.encode() if k.endswith("-bin") else v) for k, v in target.metadata]


def _connect(
    target: Target, material: _Material, stub_factory: Any, started: float
) -> tuple[grpc.Channel | None, Observation | None]:
    """Open a channel and wait until it is READY; on failure an observation explaining why."""
    connect_deadline = started + target.connect_timeout
    try:
        channel = _open_channel(target, material, target.connect_timeout)
    except (OSError, ValueError) as exc:  # only tls_no_verify's certificate fetch raises
        return None, _failed(started, CONNECT_FAILED,
                             f"tls_no_verify: fetching the server certificate failed: {exc}")
    except ImportError as exc:
        return None, _failed(started, CONNECT_FAILED,
                             f"tls_no_verify needs the cryptography package: {exc}")
    state = _await_ready(channel, max(connect_deadline - time.monotonic(), 0.0))
    if state == grpc.ChannelConnectivity.READY:
        return channel, None
    connect_ms = (time.monotonic() - started) * 1000
    if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
        # An RPC that does not wait for readiness fails at once with gRPC's reason.
        try:
            stub_factory(channel).Check(
                health_pb2.HealthCheckRequest(service=target.service),
                timeout=max(connect_deadline - time.monotonic(), 0.05),
                wait_for_ready=False,
            )
        except grpc.RpcError as exc:
            channel.close()
            return None, _failed(started, CONNECT_FAILED, f"cannot connect: {exc.details()}",
                                 connect_ms=connect_ms)
        return channel, None  # it connected in the meantime
    channel.close()
    state_name = getattr(state, "name", "IDLE") if state is not None else "IDLE"
    return None, _failed(
        started, CONNECT_FAILED,
        f"no connection within connect_timeout {target.connect_timeout:g}s (state {state_name}; "
        "the TCP, TLS or HTTP/2 handshake did not complete)",
        connect_ms=connect_ms,
    )


def _failed(started: float, error: str, message: str, *, status: str | None = None,
            latency_ms: float | None = None, connect_ms: float | None = None) -> Observation:
    return Observation(started, status, error, message, latency_ms, connect_ms)


def _status_observation(started: float, status_value: int, service: str,
                        latency_ms: float | None, connect_ms: float | None) -> Observation:
    status = _STATUS_NAMES.get(status_value, str(status_value))
    if status_value == _SERVING:
        return Observation(started, status, None, "SERVING", latency_ms, connect_ms)
    if status_value == _SERVICE_UNKNOWN_STATUS:
        return _failed(started, SERVICE_UNKNOWN,
                       f"service {service!r} is unknown to the server (SERVICE_UNKNOWN)",
                       status=status, latency_ms=latency_ms, connect_ms=connect_ms)
    return _failed(started, NOT_SERVING, f"status {status}", status=status,
                   latency_ms=latency_ms, connect_ms=connect_ms)


def _rpc_error_observation(started: float, exc: grpc.RpcError, target: Target, method: str,
                           *, latency_ms: float | None,
                           connect_ms: float | None) -> Observation:
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return _failed(started, SERVICE_UNKNOWN,
                       f"service {target.service!r} is not registered with the health service "
                       "(NOT_FOUND)", latency_ms=latency_ms, connect_ms=connect_ms)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return _failed(started, UNIMPLEMENTED,
                       f"{method} answered UNIMPLEMENTED: {details or '-'} (usually: the server "
                       f"has no grpc.health.v1.Health/{method})",
                       latency_ms=latency_ms, connect_ms=connect_ms)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return _failed(started, DEADLINE_EXCEEDED,
                       f"no {method} response within rpc_timeout {target.rpc_timeout:g}s",
                       latency_ms=latency_ms, connect_ms=connect_ms)
    name = getattr(code, "name", str(code))
    return _failed(started, RPC_FAILED, f"{method} failed: {name}: {details}",
                   latency_ms=latency_ms, connect_ms=connect_ms)


def check_once(target: Target, material: _Material | None = None) -> Observation:
    """One attempt: connect (bounded by connect_timeout), then one Check (rpc_timeout)."""
    started = time.monotonic()
    if material is None:
        material = _load_material([target])[0]
    try:
        channel, failure = _connect(target, material, health_pb2_grpc.HealthStub, started)
        if failure is not None or channel is None:
            return failure or _failed(started, CONNECT_FAILED, "no channel")
        connect_ms = (time.monotonic() - started) * 1000
        try:
            rpc_started = time.monotonic()
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=target.service),
                    timeout=target.rpc_timeout,
                    metadata=_rpc_metadata(target),
                    wait_for_ready=False,
                )
            except grpc.RpcError as exc:
                latency = (time.monotonic() - rpc_started) * 1000
                return _rpc_error_observation(started, exc, target, "Check",
                                              latency_ms=latency, connect_ms=connect_ms)
            latency = (time.monotonic() - rpc_started) * 1000
            return _status_observation(started, response.status, target.service, latency,
                                       connect_ms)
        finally:
            channel.close()
    except Exception as exc:  # the report must still come back
        return _failed(started, RPC_FAILED, f"unexpected error: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# Waiting


class _TargetRun:
    """Bookkeeping of one target across attempts."""

    def __init__(self, target: Target, material: _Material) -> None:
        self.target = target
        self.material = material
        self.result = TargetResult(
            name=target.label, address=target.address, service=target.service,
            metadata_keys=[k for k, _ in target.metadata],
        )
        self.streak = 0
        self.streak_started = 0.0
        self.failures = 0
        self.flaps = 0

    def _take(self, obs: Observation) -> None:
        r = self.result
        r.attempts += 1
        r.status, r.latency_ms, r.connect_ms = obs.status, obs.latency_ms, obs.connect_ms
        if r.latency_ms is not None:
            r.latency_ms = round(r.latency_ms, 2)
        if r.connect_ms is not None:
            r.connect_ms = round(r.connect_ms, 2)

    def succeed(self, note: str = "") -> None:
        self.result.healthy, self.result.error = True, None
        self.result.message = "SERVING" + note

    def record_failure(self, obs: Observation) -> None:
        self._take(obs)
        if self.streak:
            self.flaps += 1
        self.streak = 0
        self.result.consecutive_successes = 0
        self.failures += 1
        self.result.healthy, self.result.error = False, obs.error
        flapping = f" (lost SERVING {self.flaps} time(s) while waiting)" if self.flaps else ""
        self.result.message = obs.message + flapping

    def record_success(self, obs: Observation) -> None:
        self._take(obs)
        if self.streak == 0:
            self.streak_started = obs.started
        self.streak += 1
        self.failures = 0
        self.result.consecutive_successes = self.streak

    def unstable(self, policy: WaitPolicy, how: str) -> None:
        self.result.healthy, self.result.error = False, UNSTABLE
        flapping = f"; lost SERVING {self.flaps} time(s) while waiting" if self.flaps else ""
        self.result.message = (
            f"SERVING but not stable before wait_timeout {policy.timeout:g}s: {how}{flapping}"
        )

    def next_check(self, obs: Observation, now: float, policy: WaitPolicy,
                   deadline: float) -> float | None:
        """Record a Check observation; the time of the next attempt or None when done."""
        if obs.error is None:
            self.record_success(obs)
            if self.streak >= policy.consecutive_successes:
                self.succeed(f" ({self.streak} consecutive checks)" if self.streak > 1 else "")
                return None
            due = self.streak_started + self.streak * policy.interval
            if due > deadline:
                self.unstable(policy, f"{self.streak} of {policy.consecutive_successes} "
                                      "required consecutive SERVING checks")
                return None
            return max(due, now)
        self.record_failure(obs)
        if now >= deadline:
            return None
        return min(now + policy.retry_delay(self.failures), deadline)


def _run_checks(runs: list[_TargetRun], policy: WaitPolicy, deadline: float,
                max_workers: int) -> None:
    """Schedule attempts on a bounded pool; waiting targets do not hold a worker."""
    start = time.monotonic()
    due: list[tuple[float, int]] = [(start, i) for i in range(len(runs))]
    running: dict[futures.Future[Observation], int] = {}
    with futures.ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(runs))),
                                    thread_name_prefix="grpc-health") as pool:
        while due or running:
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, i = heapq.heappop(due)
                running[pool.submit(check_once, runs[i].target, runs[i].material)] = i
            wait_for = max(due[0][0] - now, 0.0) if due else None
            if not running:
                time.sleep(wait_for or 0.0)
                continue
            finished, _ = futures.wait(running, timeout=wait_for,
                                       return_when=futures.FIRST_COMPLETED)
            for fut in finished:
                i = running.pop(fut)
                nxt = runs[i].next_check(fut.result(), time.monotonic(), policy, deadline)
                if nxt is not None:
                    heapq.heappush(due, (nxt, i))


@dataclass
class _WatchStream:
    """One open Watch stream: a reader thread turns responses into queue events."""

    started: float
    opened: float
    connect_ms: float
    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    serving_since: float | None = None
    got_first: bool = False

    def read(self, call: Any) -> None:
        try:
            for response in call:
                self.events.put(("status", response.status))
            self.events.put(("end", None))
        except grpc.RpcError as exc:
            self.events.put(("error", exc))

    def wait_until(self, policy: WaitPolicy, deadline: float, rpc_timeout: float) -> float:
        if self.serving_since is not None:
            return min(self.serving_since + policy.stability_window, deadline)
        return deadline if self.got_first else self.opened + rpc_timeout


def _watch_quiet(run: _TargetRun, policy: WaitPolicy, stream: _WatchStream) -> bool:
    """Nothing arrived before the stream's wait time; True when the outcome is final."""
    if stream.serving_since is not None:
        held = time.monotonic() - stream.serving_since
        if held >= policy.stability_window - 1e-3:
            run.succeed(f" (unchanged for {policy.stability_window:g}s)"
                        if policy.stability_window else "")
        else:
            run.unstable(policy, f"unchanged for only {held:.2f}s of the required "
                         f"{policy.stability_window:g}s")
        return True
    if not stream.got_first:
        run.record_failure(_failed(
            stream.started, DEADLINE_EXCEEDED,
            f"no Watch response within rpc_timeout {run.target.rpc_timeout:g}s",
            connect_ms=stream.connect_ms))
        return False
    return True  # the deadline passed while not serving; the last status stands


def _watch_event(run: _TargetRun, policy: WaitPolicy, deadline: float, stream: _WatchStream,
                 event: tuple[str, Any]) -> bool | None:
    """Handle one stream event; True/False when the stream is done (final or not)."""
    kind, payload = event
    now = time.monotonic()
    latency = None if stream.got_first else (now - stream.opened) * 1000
    if kind == "status":
        stream.got_first = True
        obs = _status_observation(stream.started, payload, run.target.service, latency,
                                  stream.connect_ms)
        if obs.error is None:
            run.record_success(obs)
            stream.serving_since = now
            if policy.stability_window == 0:
                run.succeed()
                return True
            return None
        stream.serving_since = None
        run.record_failure(obs)
        return True if now >= deadline else None
    if kind == "error":
        obs = _rpc_error_observation(stream.started, payload, run.target, "Watch",
                                     latency_ms=latency, connect_ms=stream.connect_ms)
    else:
        obs = _failed(stream.started, RPC_FAILED, "the server ended the Watch stream")
    run.record_failure(obs)
    return False


def _watch_stream(run: _TargetRun, policy: WaitPolicy, deadline: float) -> bool:
    """Connect and follow one Watch stream; True when the target's outcome is final."""
    target = run.target
    started = time.monotonic()
    channel, failure = _connect(target, run.material, health_pb2_grpc.HealthStub, started)
    if failure is not None or channel is None:
        run.record_failure(failure or _failed(started, CONNECT_FAILED, "no channel"))
        return False
    opened = time.monotonic()
    stream = _WatchStream(started, opened, (opened - started) * 1000)
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=target.service),
        timeout=max(deadline - opened, 0.0) + target.rpc_timeout + policy.stability_window,
        metadata=_rpc_metadata(target),
        wait_for_ready=False,
    )
    threading.Thread(target=stream.read, args=(call,), name="grpc-health-watch",
                     daemon=True).start()
    try:
        while True:
            wait_until = stream.wait_until(policy, deadline, target.rpc_timeout)
            try:
                event = stream.events.get(timeout=max(wait_until - time.monotonic(), 0.0))
            except queue.Empty:
                return _watch_quiet(run, policy, stream)
            done = _watch_event(run, policy, deadline, stream, event)
            if done is not None:
                return done
    finally:
        call.cancel()
        channel.close()


def _watch_target(run: _TargetRun, policy: WaitPolicy, deadline: float) -> None:
    while True:
        try:
            if _watch_stream(run, policy, deadline):
                return
        except Exception as exc:  # the report must still come back
            run.record_failure(_failed(time.monotonic(), RPC_FAILED,
                                       f"unexpected error: {type(exc).__name__}: {exc}"))
        now = time.monotonic()
        if now >= deadline:
            return
        time.sleep(min(policy.retry_delay(run.failures), deadline - now))


def run_health_checks(
    targets: Sequence[Target], policy: WaitPolicy | None = None, *, max_workers: int = 64
) -> HealthReport:
    """Check every target concurrently and wait according to ``policy``.

    Raises ConfigError when a target or the policy is invalid (nothing is contacted then).
    Check mode uses a pool of at most ``max_workers`` threads (only attempts hold a worker);
    watch mode holds one stream, and so one thread, per target.
    """
    policy = policy or WaitPolicy()
    problems = policy.problems()
    for index, target in enumerate(targets):
        problems += [f"targets[{index}]: {p}" for p in target.problems()]
    if problems:
        raise ConfigError(problems)
    materials = _load_material(targets)
    start = time.monotonic()
    deadline = start + policy.timeout
    runs = [_TargetRun(t, m) for t, m in zip(targets, materials, strict=True)]
    if runs and policy.mode == "watch":
        with futures.ThreadPoolExecutor(max_workers=len(runs),
                                        thread_name_prefix="grpc-health-watch") as pool:
            list(pool.map(lambda run: _watch_target(run, policy, deadline), runs))
    elif runs:
        _run_checks(runs, policy, deadline, max_workers)
    for run in runs:
        run.result.message = mask(run.result.message, run.target.sensitive_values())
    return HealthReport([run.result for run in runs], (time.monotonic() - start) * 1000)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by MASK."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


# --------------------------------------------------------------------------------------------
# Command line (grpc-health-probe compatible flags and exit codes)

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
