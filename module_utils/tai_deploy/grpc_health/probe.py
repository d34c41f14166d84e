# Copyright: tai-deploy contributors
"""One attempt against a target: open a fresh channel (TLS material read once per target),
wait for it to become READY within connect_timeout, then one Check call bounded by
rpc_timeout; every outcome becomes an Observation."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .params import (
    _SERVICE_UNKNOWN_STATUS,
    _SERVING,
    _STATUS_NAMES,
    CONNECT_FAILED,
    DEADLINE_EXCEEDED,
    NOT_SERVING,
    RPC_FAILED,
    SERVICE_UNKNOWN,
    UNIMPLEMENTED,
    ConfigError,
    Target,
    _is_ip,
    split_host_port,
)


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
    # Not a poll: each pass blocks in the C core until the state changes (no sleep).
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
