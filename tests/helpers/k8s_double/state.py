"""The state every part of the Kubernetes API TEST DOUBLE shares, and its loopback address.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). ``DoubleState`` holds the stored
objects, the resourceVersion counter, the served kinds, the pods, the proxies, the faults and
what the tests read (requests, selector and status histories). The other modules add the API
server's and the controllers' behaviour to it, as the mixins ``KubeApiDouble`` is made of
(double.py); they share it under one lock, ``_lock``.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .behaviour import Behaviour, behaviour_for_tag, image_tag
from .common import _now_iso
from .pod_exec import PodExec
from .pods import _Pods, _ServiceProxy
from .resources import _BUILTINS, _Resource

if TYPE_CHECKING:
    from .faults import Fault
    from .server import RequestRecord


class DoubleState:
    """The shared state of the double (see the package docstring for what it plays)."""

    def __init__(self, *, name: str = "double", kubernetes_version: str = "1.34",
                 namespaces: tuple[str, ...] = ("default", "kube-system", "tai-system"),
                 ready_delay: float = 0.3, observe_delay: float = 0.05,
                 behaviour: Callable[[str], Behaviour] = lambda image: behaviour_for_tag(
                     image_tag(image)),
                 token: str | None = None, tick: float = 0.02, tls: bool = False,
                 pod_ready_delay: float = 0.2) -> None:
        self.name = name
        self.kubernetes_version = kubernetes_version
        self.ready_delay = ready_delay
        self.observe_delay = observe_delay
        self.behaviour = behaviour
        self.token = token
        self.tick = tick
        self.pod_ready_delay = pod_ready_delay
        self.log_file = os.environ.get("K8S_DOUBLE_LOG", "")
        self.requests: list[RequestRecord] = []
        self.selector_history: dict[tuple[str, str], list[tuple[float, dict[str, str]]]] = {}
        # When each Deployment's status last changed, with the new status.
        self.status_history: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {}
        self.faults: list[Fault] = []
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._rv = itertools.count(1000)
        self._ips = itertools.count(10)
        self._lock = threading.RLock()
        self._pods: dict[tuple[str, str], _Pods] = {}
        self._builtins = {r.api_version + "/" + r.plural: r for r in _BUILTINS}
        self._custom: dict[str, _Resource] = {}
        self._written_at: dict[tuple[str, str, str], float] = {}
        self._crd_schemas: dict[str, dict[str, Any]] = {}
        self._deleted: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self.tls = tls
        # cert-manager's double issues Certificates (False: their orders never complete)
        self.certificates_issued = True
        self.ca_pem = b""
        self._proxies: dict[tuple[str, str], _ServiceProxy] = {}
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.exec = PodExec(self)  # type: ignore[arg-type]  # pods/{name}/exec: pod_exec.py
        for ns in namespaces:
            self._objects[("namespaces", "", ns)] = {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": str(uuid.uuid4()),
                             "resourceVersion": str(next(self._rv)),
                             "creationTimestamp": _now_iso(),
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    @property
    def port(self) -> int:
        assert self._http is not None
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
