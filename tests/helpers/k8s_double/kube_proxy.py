"""Which pods a Service's connections reach in the Kubernetes API TEST DOUBLE (kube-proxy).

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). Each Service with a port named
``grpc`` gets a loopback TCP proxy (pods.py) that, like kube-proxy, picks a backend among the
Deployments its selector matches that have available pods when a connection is opened.
Connections already open stay where they are after a selector change, exactly the draining
problem of gRPC's long-lived HTTP/2 connections.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .pods import _Pods, _ServiceProxy
from .state import DoubleState


class KubeProxy(DoubleState):
    """kube-proxy's endpoints, and the Deployments a Service's selector picks."""

    def endpoint(self, namespace: str, service: str) -> str:
        """Loopback address of a Service's gRPC port (the kube-proxy double).

        Like a Service's DNS name it can be known before the Service exists; connections
        are refused while there is no such Service or it has no available endpoint.
        """
        with self._lock:
            return f"127.0.0.1:{self._proxy(namespace, service).port}"

    def _proxy(self, namespace: str, service: str) -> _ServiceProxy:
        if (namespace, service) not in self._proxies:
            self._proxies[(namespace, service)] = _ServiceProxy(
                lambda: self._backend(namespace, service))
        return self._proxies[(namespace, service)]

    def proxy_connections(self, namespace: str, service: str) -> list[tuple[float, str | None]]:
        with self._lock:
            return list(self._proxies[(namespace, service)].connections)

    def _selected(self, ns: str, selector: Mapping[str, str]) -> Iterator[tuple[str, _Pods]]:
        if not selector:
            return
        for (plural, ins, name), obj in sorted(self._objects.items()):
            if plural != "deployments.apps" or ins != ns:
                continue
            labels = obj["spec"].get("template", {}).get("metadata", {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in selector.items()):
                pods = self._pods.get((ns, name))
                if pods is not None:
                    yield name, pods

    def _backend(self, ns: str, service: str) -> tuple[str, int] | None:
        with self._lock:
            svc = self._objects.get(("services", ns, service))
            if svc is None:
                return None
            selector = svc["spec"].get("selector") or {}
            for name, pods in self._selected(ns, selector):
                if pods.ready + pods.old_ready > 0 and pods.server is not None:
                    return name, pods.server.port
        return None
