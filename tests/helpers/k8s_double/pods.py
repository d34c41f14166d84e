"""The pods of the Kubernetes API TEST DOUBLE, and kube-proxy's sockets to them.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes): the pods of one Deployment are one
real grpcio server with the standard health service on loopback (``_PodServer``), every answer
recorded; ``_Pods`` is the Deployment controller's view of them (deployments.py);
``_ServiceProxy`` is kube-proxy for one Service port, a loopback TCP proxy that picks a backend
when a connection opens (which one: kube_proxy.py). No container runs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .behaviour import NOT_SERVING, SERVING

_STATUS = {SERVING: health_pb2.HealthCheckResponse.SERVING,
           NOT_SERVING: health_pb2.HealthCheckResponse.NOT_SERVING}


class _RecordingHealth(health.HealthServicer):  # type: ignore[misc]
    """grpcio's reference health servicer, remembering every answer it gives."""

    def __init__(self, answers: list[tuple[float, str]]) -> None:
        super().__init__()
        self.answers = answers

    def Check(self, request: Any, context: Any) -> Any:
        response = super().Check(request, context)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        self.answers.append((time.time(), status))
        return response


@dataclass
class _PodServer:
    """The pods of one Deployment: a real gRPC server with the health service."""

    answers: list[tuple[float, str]]
    server: Any = None
    servicer: Any = None
    port: int = 0
    status: str = ""
    calls: int = 0

    def start(self) -> _PodServer:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.servicer = _RecordingHealth(self.answers)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        return self

    def set(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.servicer.set("", _STATUS[status])

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)
            self.server = None


class _ServiceProxy:
    """kube-proxy for one Service port: a backend is chosen when a connection opens."""

    def __init__(self, resolve: Callable[[], tuple[str, int] | None]) -> None:
        self.resolve = resolve
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[tuple[float, str | None]] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            backend = self.resolve()
            self.connections.append((time.time(), backend[0] if backend else None))
            if backend is None:
                # No ready endpoint: a real kube-proxy rejects the connection.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                  b"\x00\x00\x00\x00")
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", backend[1]), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        with self._lock:
            for s in (src, dst):
                if s in self._open:
                    self._open.discard(s)
                    s.close()

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()


@dataclass
class _Pods:
    """The Deployment controller's view of one Deployment."""

    generation: int = 0
    seen_generation: int = 0
    seen_at: float = 0.0
    template: str = ""
    image: str = ""
    ready: int = 0
    pending: list[float] = field(default_factory=list)
    # Pods the ReplicaSet controller still has to create (refused by admission so far), the
    # delay before each becomes ready once created, and the API server's refusal.
    to_create: int = 0
    create_delay: float = 0.0
    refusal: str | None = None
    old_ready: int = 0
    old_image: str = ""
    progress_started: float = 0.0
    live_since: float | None = None
    conditions: dict[str, dict[str, str]] = field(default_factory=dict)
    server: _PodServer | None = None
    answers: list[tuple[float, str]] = field(default_factory=list)
