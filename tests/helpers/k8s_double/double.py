"""The Kubernetes API TEST DOUBLE itself: ``KubeApiDouble``, its lifecycle and its test API.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes; what it plays: the package docstring).
The class mixes the parts of the API server (server.py, faults.py, routing.py, discovery.py,
store.py, kinds.py, validation.py, kube_proxy.py) and of the controllers (deployments.py,
workloads.py, cert_manager.py, admission.py) over the shared state of state.py; ``start`` runs
the HTTP server and the controllers' loop, and the methods here are what tests call to seed,
read and wait.
"""

from __future__ import annotations

import copy
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .deployments import DeploymentController
from .resources import _kind
from .server import HttpFrontEnd, RequestRecord, _Handler, _Server, _tls_material
from .workloads import Workloads


class KubeApiDouble(HttpFrontEnd, DeploymentController, Workloads):
    """A loopback Kubernetes API TEST DOUBLE (see the package docstring)."""

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> KubeApiDouble:
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self._http = _Server(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        if self.tls:  # HTTPS with a test CA, as a GKE control plane serves its IP endpoint
            ca_pem, cert_pem, key_pem = _tls_material()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "server.pem").write_bytes(cert_pem + ca_pem)
                Path(tmp, "server.key").write_bytes(key_pem)
                context.load_cert_chain(Path(tmp, "server.pem"), Path(tmp, "server.key"))
            self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
            self.ca_pem = ca_pem
        for thread in (threading.Thread(target=self._http.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05}),
                       threading.Thread(target=self._controller, daemon=True)):
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for proxy in self._proxies.values():
            proxy.close()
        for pods in self._pods.values():
            if pods.server:
                pods.server.stop()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the controllers -----------------------------------------------------------------

    def _controller(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                with self._lock:
                    self._reconcile(time.time())
                    self._reconcile_workloads(time.time())
            except Exception as exc:  # a broken double must be loud, not silently stuck
                print(f"k8s_double {self.name}: controller error: {exc!r}", flush=True)

    # -- test API ------------------------------------------------------------------------

    def seed(self, *objects: Mapping[str, Any]) -> None:
        """Create objects as a client would (validated); raises on a refused object."""
        for obj in objects:
            res = _kind(str(obj.get("kind")))
            ns = str(obj.get("metadata", {}).get("namespace", "default"))
            with self._lock:
                self._create(res, ns, copy.deepcopy(dict(obj)))

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of a stored Deployment, Service or ScaledObject, or None."""
        res = _kind(kind)
        with self._lock:
            obj = self._objects.get((res.qualified, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of every stored object of one resource (``secrets``, ``deployments.apps``,
        ``gateways.networking.istio.io``: plural.group), optionally of one namespace."""
        with self._lock:
            return [copy.deepcopy(o) for (q, ns, _), o in sorted(self._objects.items())
                    if q == plural and (namespace is None or ns == namespace)]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of a stored object (see ``find``); LookupError when it does not exist."""
        obj = self.find(kind, namespace, name)
        if obj is None:
            raise LookupError(f"{kind} {namespace}/{name} is not stored in the double")
        return obj

    def health_answers(self, namespace: str, deployment: str) -> list[tuple[float, str]]:
        with self._lock:
            pods = self._pods.get((namespace, deployment))
            return list(pods.answers) if pods else []

    def writes(self, path_prefix: str = "") -> list[RequestRecord]:
        return [r for r in list(self.requests)
                if r.method in ("POST", "PUT", "PATCH", "DELETE") and r.path.startswith(
                    path_prefix)]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while not condition():
            if time.time() > deadline:
                raise TimeoutError("condition not met in the test double")
            time.sleep(0.02)
