"""Real gRPC servers exporting the standard gRPC server metrics, and bounded loopback traffic.

- ``ServerMetrics``: a grpcio server interceptor recording, with prometheus_client, the
  metric names and labels of go-grpc-prometheus (github.com/grpc-ecosystem/go-grpc-prometheus,
  server_metrics.go): ``grpc_server_started_total``, ``grpc_server_handled_total`` (with
  ``grpc_code``, the gRPC status name) and the ``grpc_server_handling_seconds`` histogram
  (prometheus.DefBuckets), labels ``grpc_type``, ``grpc_service``, ``grpc_method``. Like
  go-grpc-prometheus' ``InitializeMetrics`` it creates every method's handled counter at 0
  for every code when the server starts, so a rate exists from the first scrape.
- ``SlotServer``: one slot of one service in one region: a real gRPC server (a unary method
  ``tai.v1.<Service>/Ping``) with that interceptor and its own /metrics HTTP endpoint.
- ``RestartsExporter``: a stand-in for kube-state-metrics' one series the restarts gate reads,
  ``kube_pod_container_status_restarts_total{namespace, pod, container}`` (kube-state-metrics
  docs/metrics/workload/pod-metrics.md), listing three pods per Deployment of the Kubernetes
  test double that has replicas; a tag ending in ``-crashloop`` restarts once a second.
- ``Fleet``: a SlotServer per region, service and slot, and a traffic thread per region that
  plays the clients: each tick one RPC to the slot the double's Service selects and, every
  second tick, one to the preview slot (the smoke tests' traffic), each through a real gRPC
  channel on loopback. How a slot answers is chosen by the image tag the double's Deployment
  runs: ``-errors`` fails half of its RPCs with UNAVAILABLE once it serves live traffic,
  ``-latency`` takes 0.7 s per RPC, ``-silent`` receives no traffic at all (a routing
  mistake); ``Fleet.spike`` makes every slot of every region fail that share of RPCs (a bad
  hour for everybody). Traffic stops after ``max_seconds`` or ``max_calls``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

DEFAULT_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
# grpc-go's codes.Code.String(), the grpc_code values go-grpc-prometheus writes.
_GO_NAMES = {"OK": "OK", "CANCELLED": "Canceled", "UNKNOWN": "Unknown",
             "INVALID_ARGUMENT": "InvalidArgument", "DEADLINE_EXCEEDED": "DeadlineExceeded",
             "NOT_FOUND": "NotFound", "ALREADY_EXISTS": "AlreadyExists",
             "PERMISSION_DENIED": "PermissionDenied", "RESOURCE_EXHAUSTED": "ResourceExhausted",
             "FAILED_PRECONDITION": "FailedPrecondition", "ABORTED": "Aborted",
             "OUT_OF_RANGE": "OutOfRange", "UNIMPLEMENTED": "Unimplemented",
             "INTERNAL": "Internal", "UNAVAILABLE": "Unavailable", "DATA_LOSS": "DataLoss",
             "UNAUTHENTICATED": "Unauthenticated"}
_CODE_NAME = {c: _GO_NAMES[c.name] for c in grpc.StatusCode}
CODE_NAMES = sorted(set(_CODE_NAME.values()))


class ServerMetrics(grpc.ServerInterceptor):  # type: ignore[misc]
    """go-grpc-prometheus' server metrics as a grpcio interceptor (unary methods)."""

    def __init__(self, registry: CollectorRegistry, methods: Iterable[str]) -> None:
        names = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter("grpc_server_started", "Total number of RPCs started on the "
                               "server.", names, registry=registry)
        self.handled = Counter("grpc_server_handled", "Total number of RPCs completed on the "
                               "server, regardless of success or failure.",
                               (*names, "grpc_code"), registry=registry)
        self.seconds = Histogram("grpc_server_handling_seconds", "Histogram of response "
                                 "latency (seconds) of gRPC that had been application-level "
                                 "handled by the server.", names, buckets=DEFAULT_BUCKETS,
                                 registry=registry)
        for full in methods:
            service, method = full.strip("/").split("/")
            self.started.labels("unary", service, method)
            self.seconds.labels("unary", service, method)
            for code in CODE_NAMES:
                self.handled.labels("unary", service, method, code)

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, method = details.method.strip("/").split("/")
        inner = handler.unary_unary

        def timed(request: Any, context: Any) -> Any:
            self.started.labels("unary", service, method).inc()
            began = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                response = inner(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except Exception:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                self.handled.labels("unary", service, method, _CODE_NAME[code]).inc()
                self.seconds.labels("unary", service, method).observe(
                    time.perf_counter() - began)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


@dataclass
class Behaviour:
    """How one slot answers (chosen from its image tag)."""

    error_every: int = 0  # every n-th live RPC fails with UNAVAILABLE (0: never)
    latency: float = 0.0
    reachable: bool = True


def behaviour_for_tag(tag: str) -> Behaviour:
    if tag.endswith("-errors"):
        return Behaviour(error_every=2)
    if tag.endswith("-latency"):
        return Behaviour(latency=0.7)
    if tag.endswith("-silent"):
        return Behaviour(reachable=False)
    return Behaviour()


class SlotServer:
    """One slot's pods: a gRPC server with the metrics interceptor and its /metrics port."""

    def __init__(self, region: str, service: str, slot: str, fleet: Fleet) -> None:
        self.region, self.service, self.slot, self.fleet = region, service, slot, fleet
        self.method = f"/tai.v1.{service.title()}/Ping"
        self.registry = CollectorRegistry()
        self.metrics = ServerMetrics(self.registry, [self.method])
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  interceptors=[self.metrics])
        handler = grpc.method_handlers_generic_handler(
            f"tai.v1.{service.title()}", {"Ping": grpc.unary_unary_rpc_method_handler(
                self._ping)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.http, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.metrics_port = int(self.http.server_address[1])

    def start(self) -> SlotServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.http.shutdown()
        self.http.server_close()

    def _ping(self, request: bytes, context: Any) -> bytes:
        live = dict(context.invocation_metadata()).get("x-tai-route") == "active"
        beh = self.fleet.behaviour(self.region, self.service, self.slot)
        with self._lock:
            self.calls += 1
            n = self.calls
        if beh.latency:
            time.sleep(beh.latency)
        spike = self.fleet.spike
        if spike and n % max(1, round(1 / spike)) == 0:
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details("injected: a bad hour everywhere")
            return b""
        if live and beh.error_every and n % beh.error_every == 0:
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details("injected: this version fails under live traffic")
            return b""
        return b"pong"


class RestartsExporter(Collector):
    """kube_pod_container_status_restarts_total of the double's pods (see module docstring)."""

    def __init__(self, fleet: Fleet, region: str) -> None:
        self.fleet, self.region = fleet, region
        self.started = time.time()
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.http, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self.http.server_address[1])

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "kube_pod_container_status_restarts", "The number of container restarts per "
            "container.", labels=["namespace", "pod", "container", "uid"])
        lab = self.fleet.lab
        for service in self.fleet.services:
            for slot in ("blue", "green"):
                name = f"{service}-{slot}"
                dep = lab.deployment(self.region, name)
                if not dep or not dep["spec"].get("replicas"):
                    continue
                tag = (lab.image(self.region, name) or ":").rsplit(":", 1)[1]
                restarts = (time.time() - self.started) if tag.endswith("-crashloop") else 0
                generation = dep["metadata"].get("generation", 1)
                for i in range(3):
                    pod = f"{name}-{generation:08d}-pod{i}"
                    family.add_metric([lab_namespace(), pod, service, f"uid-{pod}"],
                                      float(int(restarts)))
        yield family

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def lab_namespace() -> str:
    from helpers.bluegreen_env import NAMESPACE
    return NAMESPACE


@dataclass
class Fleet:
    """SlotServers for every region/service/slot of a BlueGreenLab, and their traffic."""

    lab: Any
    services: tuple[str, ...] = ("governor",)
    tick: float = 0.05
    max_seconds: float = 240.0
    max_calls: int = 50_000
    spike: float = 0.0
    servers: dict[tuple[str, str, str], SlotServer] = field(default_factory=dict)
    exporters: dict[str, RestartsExporter] = field(default_factory=dict)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def behaviour(self, region: str, service: str, slot: str) -> Behaviour:
        image = self.lab.image(region, f"{service}-{slot}") or ":"
        return behaviour_for_tag(image.rsplit(":", 1)[1])

    def start(self) -> Fleet:
        for region in self.lab.regions:
            for service in self.services:
                for slot in ("blue", "green"):
                    self.servers[(region, service, slot)] = SlotServer(
                        region, service, slot, self).start()
            self.exporters[region] = RestartsExporter(self, region)
        for region in self.lab.regions:
            thread = threading.Thread(target=self._traffic, args=(region,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for server in self.servers.values():
            server.stop()
        for exporter in self.exporters.values():
            exporter.stop()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def scrape_targets(self) -> list[tuple[str, dict[str, str]]]:
        """(host:port, labels) of every /metrics endpoint, for the Prometheus config."""
        out = [(f"127.0.0.1:{s.metrics_port}",
                {"namespace": lab_namespace(), "service": s.service, "slot": s.slot,
                 "region": s.region, "job": "tai"})
               for s in self.servers.values()]
        return out

    def restart_targets(self) -> list[tuple[str, dict[str, str]]]:
        return [(f"127.0.0.1:{e.port}", {"region": region, "job": "kube-state-metrics"})
                for region, e in self.exporters.items()]

    def _traffic(self, region: str) -> None:
        channels = {key: grpc.insecure_channel(f"127.0.0.1:{s.port}")
                    for key, s in self.servers.items() if key[0] == region}
        pool = futures.ThreadPoolExecutor(max_workers=16)
        began = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set() and time.monotonic() - began < self.max_seconds:
                n += 1
                for service in self.services:
                    active = self.lab.active_slot(region, service)
                    routes = [(active, "active")]
                    if n % 2 == 0:
                        preview = "green" if active == "blue" else "blue"
                        if self.lab.replicas(region, f"{service}-{preview}"):
                            routes.append((preview, "preview"))
                    for slot, route in routes:
                        if not self.behaviour(region, service, slot).reachable:
                            continue
                        if self.sent >= self.max_calls:
                            return
                        self.sent += 1
                        server = self.servers[(region, service, slot)]
                        call = channels[(region, service, slot)].unary_unary(server.method)
                        pool.submit(self._call, call, route)
                self._stop.wait(self.tick)
        finally:
            pool.shutdown(wait=True)
            for channel in channels.values():
                channel.close()

    @staticmethod
    def _call(call: Any, route: str) -> None:
        with contextlib.suppress(grpc.RpcError):
            call(b"ping", timeout=2.0, metadata=(("x-tai-route", route),))
