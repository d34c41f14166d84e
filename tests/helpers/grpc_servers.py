"""Real gRPC servers on loopback for the grpc_health_check tests and benchmark.

- HealthServer: grpcio's reference ``grpc.health.v1.Health`` servicer (Check and Watch),
  optionally with TLS/mTLS, recording the metadata of every call it receives.
- scripted_health_server: a Check-only health service answering from a fixed sequence of
  statuses (deterministic flapping) or hanging; its Watch is UNIMPLEMENTED.
- bare_server: a gRPC server without the health service.
- SilentServer: a TCP socket that accepts connections and never answers.
- make_pki: a CA, a server and a client certificate (and a stranger CA) for TLS tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2

STATUS = {
    "UNKNOWN": health_pb2.HealthCheckResponse.UNKNOWN,
    "SERVING": health_pb2.HealthCheckResponse.SERVING,
    "NOT_SERVING": health_pb2.HealthCheckResponse.NOT_SERVING,
}
_HEALTH = "grpc.health.v1.Health"


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _MetadataRecorder:
    """Server interceptor (duck-typed) keeping every call's method and metadata."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        with self._lock:
            self.calls.append((details.method, dict(details.invocation_metadata)))
        return continuation(details)


@dataclass(frozen=True)
class ServerTls:
    """PEM bytes for a TLS server; client_ca set means client certificates are required."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None


def _start(server: Any, port: int, tls: ServerTls | None) -> int:
    address = f"127.0.0.1:{port}"
    if tls is None:
        bound: int = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls.key, tls.cert)], root_certificates=tls.client_ca,
            require_client_auth=tls.client_ca is not None,
        )
        bound = server.add_secure_port(address, credentials)
    server.start()
    return bound


@dataclass
class HealthServer:
    """grpcio's reference health servicer on 127.0.0.1; use as a context manager."""

    statuses: dict[str, str] = field(default_factory=lambda: {"": "SERVING"})
    tls: ServerTls | None = None
    port: int = 0
    workers: int = 4
    options: Sequence[tuple[str, Any]] = ()
    recorder: _MetadataRecorder = field(default_factory=_MetadataRecorder)
    servicer: Any = None
    server: Any = None

    def start(self) -> HealthServer:
        pool = futures.ThreadPoolExecutor(max_workers=self.workers)
        self.server = grpc.server(pool, interceptors=[self.recorder], options=list(self.options))
        self.servicer = health.HealthServicer(experimental_non_blocking=True,
                                              experimental_thread_pool=pool)
        for service, status in self.statuses.items():
            self.set(service, status)
        grpc_health_add(self.servicer, self.server)
        self.port = _start(self.server, self.port, self.tls)
        return self

    def set(self, service: str, status: str) -> None:
        self.servicer.set(service, STATUS[status])

    def set_later(self, delay: float, service: str, status: str) -> threading.Timer:
        timer = threading.Timer(delay, self.set, args=(service, status))
        timer.daemon = True
        timer.start()
        return timer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def calls(self) -> list[tuple[str, dict[str, str]]]:
        return list(self.recorder.calls)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def grpc_health_add(servicer: Any, server: Any) -> None:
    from grpc_health.v1 import health_pb2_grpc

    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


@contextmanager
def scripted_health_server(
    statuses: Sequence[str] = ("SERVING",), *, hang: float = 0.0,
    abort: tuple[Any, str] | None = None,
) -> Iterator[tuple[str, list[str]]]:
    """A Check-only health service answering ``statuses`` in turn (cycling); Watch is missing.

    ``hang`` makes every Check sleep that long first; ``abort`` (a grpc.StatusCode and details)
    makes it fail instead. Yields the address and the list of statuses answered so far.
    """
    answered: list[str] = []
    lock = threading.Lock()

    def check(request: Any, context: Any) -> Any:
        if hang:
            time.sleep(hang)
        if abort is not None:
            context.abort(*abort)
        with lock:
            status = statuses[len(answered) % len(statuses)]
            answered.append(status)
        return health_pb2.HealthCheckResponse(status=STATUS[status])

    handler = grpc.method_handlers_generic_handler(_HEALTH, {
        "Check": grpc.unary_unary_rpc_method_handler(
            check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = _start(server, 0, None)
    try:
        yield f"127.0.0.1:{port}", answered
    finally:
        server.stop(grace=None)


@contextmanager
def bare_server() -> Iterator[str]:
    """A gRPC server with no services at all (every method is UNIMPLEMENTED)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = _start(server, 0, None)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


class SilentServer:
    """Accepts TCP connections and never sends a byte (a hung process, a black hole)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self._sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Pki:
    """Paths of PEM files written by make_pki."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca_cert: Path
    stranger_server_cert: Path
    stranger_server_key: Path

    def server_tls(self, *, require_client_cert: bool = False) -> ServerTls:
        return ServerTls(self.server_cert.read_bytes(), self.server_key.read_bytes(),
                         self.ca_cert.read_bytes() if require_client_cert else None)

    def stranger_tls(self) -> ServerTls:
        return ServerTls(self.stranger_server_cert.read_bytes(),
                         self.stranger_server_key.read_bytes())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, Any] | None,
    *, ca: bool = False, sans: Sequence[str] = (), client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_pki(directory: Path, server_names: Sequence[str] = ("localhost", "127.0.0.1")) -> Pki:
    """A test CA with a server and a client certificate, and an unrelated 'stranger' CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("tai-test-ca", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("tai-test-server", server_key, (ca.subject, ca_key), sans=server_names)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("tai-test-client", client_key, (ca.subject, ca_key), client=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _issue("stranger-ca", other_key, None, ca=True)
    other_server_key = ec.generate_private_key(ec.SECP256R1())
    other_server = _issue("stranger-server", other_server_key, (other_ca.subject, other_key),
                          sans=("stranger.internal",))
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    server_cert, server_key_path = _write(directory, "server", server, server_key)
    client_cert, client_key_path = _write(directory, "client", client, client_key)
    other_ca_path, _ = _write(directory, "stranger-ca", other_ca, other_key)
    other_cert, other_key_path = _write(directory, "stranger-server", other_server,
                                        other_server_key)
    return Pki(ca_path, server_cert, server_key_path, client_cert, client_key_path,
               other_ca_path, other_cert, other_key_path)
