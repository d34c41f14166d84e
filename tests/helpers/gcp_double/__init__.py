"""TEST DOUBLE of Google Cloud REST APIs on loopback: GKE (container v1), Cloud DNS (dns v1) here,
and Compute, IAM, Cloud KMS, Service Usage, Resource Manager and Firestore in resources.py.

Every request body is checked against the discovery schema of the method it serves (its request
``$ref`` in Google's discovery documents; schema.py, written apart from the plan-time check) and
against the documented cross-field rules (rules.py), answered like Google (400
INVALID_ARGUMENT, "Invalid JSON payload received. Unknown name ..."). A service that Service
Usage has not enabled answers 403 SERVICE_DISABLED (``GcpDouble.empty_project()`` starts with
only Service Usage enabled; the default double is a project where every service runs).

This is NOT Google Cloud. It is a small in-memory HTTP server that answers the real paths with
JSON shaped like the real API's, so that the gke_cluster and cloud_dns_geo_item modules can be
exercised end to end (through google-auth's AuthorizedSession with anonymous credentials,
which the modules allow only for loopback endpoints):

GKE
  GET/POST /v1/projects/{p}/locations/{l}/clusters
  GET/PUT  /v1/projects/{p}/locations/{l}/clusters/{c}        (PUT: ClusterUpdate, one field)
  POST     /v1/projects/{p}/locations/{l}/clusters/{c}:setAddons | :setNetworkPolicy |
           :setResourceLabels
  POST     /v1/projects/{p}/locations/{l}/clusters/{c}/nodePools
  GET/PUT  /v1/projects/{p}/locations/{l}/clusters/{c}/nodePools/{np}
  POST     /v1/projects/{p}/locations/{l}/clusters/{c}/nodePools/{np}:setAutoscaling |
           :setManagement
  GET      /v1/projects/{p}/locations/{l}/operations/{op}
Cloud DNS
  GET      /dns/v1/projects/{p}/managedZones/{z}
  GET      /dns/v1/projects/{p}/managedZones/{z}/rrsets/{name}/{type}
  POST     /dns/v1/projects/{p}/managedZones/{z}/changes   (deletions must match exactly:
           412 conditionNotMet; an addition that exists: 409 alreadyExists)
  GET      /dns/v1/projects/{p}/managedZones/{z}/changes/{id}

Like the real API it omits proto3 defaults (false, 0, "", empty lists and maps) from the
objects it returns, fills in server-side fields (status, endpoint, CA, versions, image type,
``kind`` markers in Cloud DNS), returns long-running operations that are ``RUNNING`` until
read ``op_polls`` times, and answers errors as ``{"error": {"code", "message", "status"}}``.

Fault injection: :meth:`GcpDouble.fail` queues error answers for matching requests;
:attr:`GcpDouble.before_change` runs before a DNS change is applied (to simulate another
region writing the record set concurrently); :attr:`GcpDouble.next_op_error` makes the next GKE
operation end ``DONE`` with an error. Every request is logged in
:attr:`GcpDouble.requests`.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from . import rules, schema
from .resources import PROJECT_NUMBER as PROJECT_NUMBER
from .resources import ProjectApis, service_disabled

FAKE_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nTEST DOUBLE\n"
                           b"-----END CERTIFICATE-----\n").decode()

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE"}


def prune_defaults(value: Any) -> Any:
    """proto3 JSON: fields equal to their default are not serialised."""
    if isinstance(value, dict):
        out = {k: prune_defaults(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (False, 0, "", [], {}, None)}
    if isinstance(value, list):
        return [prune_defaults(v) for v in value]
    return value


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str
    times: int


@dataclass
class GcpDouble:
    """State of the double; start it with :func:`serve`."""

    op_polls: int = 1
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)
    rrsets: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    before_change: Callable[[GcpDouble], None] | None = None
    next_op_error: str | None = None  # the next GKE operation ends DONE with this error
    # What a created cluster reports as its control plane: the rehearsal points it at the
    # loopback Kubernetes API double (address:port and that double's CA, base64 PEM).
    cluster_endpoint: str = "203.0.113.10"
    cluster_ca: str = FAKE_CA
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: int = 0
    _pending_ops: dict[str, tuple[int, Callable[[], None]]] = field(default_factory=dict)
    # Compute, IAM, KMS, Service Usage, Resource Manager, Firestore (resources.py).
    apis: ProjectApis = field(default_factory=ProjectApis)

    def __post_init__(self) -> None:
        self.apis.workload_pools = lambda: {
            str((c.get("workloadIdentityConfig") or {}).get("workloadPool"))
            for c in self.clusters.values() if c.get("status") == "RUNNING"}

    def add_cluster(self, project: str, location: str, name: str) -> None:
        """A running cluster with workload identity (what the gke role creates)."""
        self.clusters[f"{project}/{location}/{name}"] = {
            "name": name, "status": "RUNNING", "location": location, "nodePools": [],
            "workloadIdentityConfig": {"workloadPool": f"{project}.svc.id.goog"}}

    @classmethod
    def empty_project(cls, op_polls: int = 1) -> GcpDouble:
        """A new project: only Service Usage is enabled, nothing exists."""
        return cls(op_polls=op_polls, apis=ProjectApis(op_polls=op_polls,
                                                       enabled={"serviceusage.googleapis.com"}))

    # --- fixtures -------------------------------------------------------------------------
    def fail(self, method: str, path_regex: str, status: int, message: str = "",
             times: int = 1) -> None:
        """Answer the next ``times`` matching requests with an error."""
        self.faults.append(Fault(method.upper(), re.compile(path_regex), status,
                                 message or f"Injected {status}", times))

    def add_zone(self, project: str, name: str, dns_name: str) -> None:
        self.zones[f"{project}/{name}"] = {"kind": "dns#managedZone", "name": name,
                                           "dnsName": dns_name, "visibility": "public",
                                           "id": str(1000 + len(self.zones))}
        self.rrsets.setdefault(f"{project}/{name}", {})

    def put_rrset(self, project: str, zone: str, rrset: dict[str, Any]) -> None:
        self.rrsets[f"{project}/{zone}"][(rrset["name"], rrset["type"])] = _dns_kinds(rrset)

    def rrset(self, project: str, zone: str, name: str, rtype: str = "A") -> dict[str, Any] | None:
        return copy.deepcopy(self.rrsets[f"{project}/{zone}"].get((name, rtype)))

    def calls(self, method: str | None = None) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.requests if method is None or m == method]

    def mutating_calls(self) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.requests if m != "GET"]

    # --- request handling ---------------------------------------------------------------
    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, body))
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    return fault.status, _error(fault.status, fault.message)
            answer = self.apis.handle(method, path, body)
            if answer is not None:
                return answer
            service = ("dns.googleapis.com" if path.startswith("/dns/v1/")
                       else "container.googleapis.com")
            pm = re.match(r"/(?:dns/)?v1/projects/([^/]+)", path)
            if pm and not self.apis.is_enabled(service):
                return 403, service_disabled(service, pm.group(1))
            bad = self._check_body(method, path, body)
            if bad is not None:
                return bad
            if path.startswith("/dns/v1/"):
                return self._dns(method, path, body)
            if path.startswith("/v1/"):
                return self._gke(method, path, body)
            return 404, _error(404, f"No such API path {path}")

    # Which method (hence which request $ref of the discovery document) a path serves.
    _CONTAINER_METHODS = (
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters", "clusters.create"),
        ("PUT", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+", "clusters.update"),
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+:setAddons",
         "clusters.setAddons"),
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+:setNetworkPolicy",
         "clusters.setNetworkPolicy"),
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+:setResourceLabels",
         "clusters.setResourceLabels"),
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+/nodePools",
         "clusters.nodePools.create"),
        ("PUT", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+/nodePools/[^/:]+",
         "clusters.nodePools.update"),
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+/nodePools/[^/:]+"
                 r":setAutoscaling", "clusters.nodePools.setAutoscaling"),
        ("POST", r"/v1/projects/[^/]+/locations/[^/]+/clusters/[^/:]+/nodePools/[^/:]+"
                 r":setManagement", "clusters.nodePools.setManagement"),
    )

    def _check_body(self, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """Schema of the method's request $ref, then the documented cross-field rules."""
        path = path.partition("?")[0]
        if path.startswith("/dns/v1/"):
            api = "dns.v1"
            mid = {("POST", "changes"): "dns.changes.create",
                   ("POST", "managedZones"): "dns.managedZones.create"}.get(
                       (method, path.rstrip("/").rsplit("/", 1)[-1]))
        else:
            api, mid = "container.v1", None
            for verb, pattern, name in self._CONTAINER_METHODS:
                if verb == method and re.fullmatch(pattern, path):
                    mid = f"container.projects.locations.{name}"
        if mid is None:
            return None
        ref = schema.request_ref(api, mid)
        if ref is None:
            return None
        found = schema.validate(api, ref, body or {})
        if found.items:
            return 400, found.error()
        problem = None
        if mid.endswith("clusters.create"):
            for rule in rules.CONTAINER_CLUSTER_RULES:
                problem = problem or rule((body or {}).get("cluster") or {})
        elif mid.endswith("clusters.update"):
            problem = rules.container_update_logging_exclusive((body or {}).get("update") or {})
        if problem:
            return 400, _error(400, problem)
        return None

    def _next(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}"

    # --- GKE ------------------------------------------------------------------------------
    def _operation(self, base: str, op_type: str, target: str,
                   effect: Callable[[], None], error: str | None = None) -> dict[str, Any]:
        name = self._next("operation-")
        if error is None and self.next_op_error:
            error, self.next_op_error = self.next_op_error, None
        op: dict[str, Any] = {"name": name, "operationType": op_type, "status": "RUNNING",
                              "selfLink": f"https://container.googleapis.com{base}/operations/"
                                          f"{name}", "targetLink": target}
        if error:
            op["_error"] = error
        self.operations[name] = op
        self._pending_ops[name] = (self.op_polls, effect)
        if self.op_polls <= 0:
            self._finish(name)
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _tick(self, target: str) -> None:
        for name, (left, effect) in list(self._pending_ops.items()):
            if self.operations[name]["targetLink"] != target:
                continue
            if left <= 1:
                self._finish(name)
            else:
                self._pending_ops[name] = (left - 1, effect)

    def _finish(self, name: str) -> None:
        op = self.operations[name]
        _, effect = self._pending_ops.pop(name)
        op["status"] = "DONE"
        if "_error" in op:
            op["error"] = {"code": 9, "message": op.pop("_error")}
        else:
            effect()

    def _gke(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/v1/projects/([^/]+)/locations/([^/]+)/(.*)", path)
        if not m:
            return 404, _error(404, f"Not found: {path}")
        project, location, rest = m.group(1), m.group(2), unquote(m.group(3))
        base = f"/v1/projects/{project}/locations/{location}"
        if rest.startswith("operations/"):
            name = rest.split("/", 1)[1]
            if name not in self.operations:
                return 404, _error(404, f"Operation {name} not found.")
            if name in self._pending_ops:
                left, effect = self._pending_ops[name]
                if left <= 1:
                    self._finish(name)
                else:
                    self._pending_ops[name] = (left - 1, effect)
            return 200, {k: v for k, v in self.operations[name].items()
                         if not k.startswith("_")}
        if rest == "clusters" and method == "POST":
            return self._create_cluster(project, location, base, body)
        cm = re.fullmatch(r"clusters/([^/:]+)(?::(\w+))?(?:/nodePools(?:/([^/:]+)(?::(\w+))?)?)?",
                          rest)
        if not cm:
            return 404, _error(404, f"Not found: {path}")
        cname, cverb, pool, pverb = cm.groups()
        key = f"{project}/{location}/{cname}"
        cluster = self.clusters.get(key)
        if cluster is None:
            return 404, _error(404, f"Not found: projects/{project}/locations/{location}/"
                                    f"clusters/{cname}.")
        link = f"https://container.googleapis.com{base}/clusters/{cname}"
        if "/nodePools" not in rest:
            if method == "GET" and not cverb:
                self._tick(link)  # time passes for the cluster's running operations too
                return 200, self._public_cluster(cluster)
            return self._cluster_call(method, cverb, cluster, base=base, link=link, body=body)
        if pool is None:
            if method != "POST":
                return 405, _error(405, "method not allowed")
            new = copy.deepcopy(body["nodePool"])
            if any(p["name"] == new["name"] for p in cluster["nodePools"]):
                return 409, _error(409, f"Already exists: node pool {new['name']}.")
            return 200, self._operation(base, "CREATE_NODE_POOL", link,
                                        lambda: cluster["nodePools"].append(self._pool(new)))
        found = next((p for p in cluster["nodePools"] if p["name"] == pool), None)
        if found is None:
            return 404, _error(404, f"Not found: node pool {pool}.")
        if method == "GET" and not pverb:
            return 200, prune_defaults(found)
        return self._pool_call(method, pverb, found, base=base, link=link, body=body)

    def _create_cluster(self, project: str, location: str, base: str,
                        body: Any) -> tuple[int, Any]:
        spec = copy.deepcopy(body["cluster"])
        key = f"{project}/{location}/{spec['name']}"
        if key in self.clusters:
            return 409, _error(409, f"Already exists: projects/{project}/locations/{location}/"
                                    f"clusters/{spec['name']}.")
        cluster = copy.deepcopy(spec)
        cluster.update({
            "status": "PROVISIONING", "endpoint": self.cluster_endpoint,
            "masterAuth": {"clusterCaCertificate": self.cluster_ca},
            "currentMasterVersion": f"{spec.get('initialClusterVersion', '1.34')}.1-gke.1000",
            "location": location, "labelFingerprint": "a1b2c3",
            "selfLink": f"https://container.googleapis.com{base}/clusters/{spec['name']}",
            "nodePools": [self._pool(p) for p in spec.get("nodePools", [])],
        })
        self.clusters[key] = cluster

        def done() -> None:
            cluster["status"] = "RUNNING"

        return 200, self._operation(base, "CREATE_CLUSTER", cluster["selfLink"], done)

    def _pool(self, spec: dict[str, Any]) -> dict[str, Any]:
        pool = copy.deepcopy(spec)
        pool.setdefault("config", {})
        pool["config"].setdefault("imageType", "COS_CONTAINERD")
        pool["config"].setdefault("diskType", "pd-balanced")
        pool["config"].setdefault("serviceAccount", "default")
        pool["config"].setdefault("metadata", {"disable-legacy-endpoints": "true"})
        pool.update({"status": "RUNNING", "version": "1.34.1-gke.1000",
                     "podIpv4CidrSize": 24})
        return pool

    def _public_cluster(self, cluster: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = prune_defaults(copy.deepcopy(cluster))
        return out

    def _cluster_call(self, method: str, verb: str | None, cluster: dict[str, Any], *, base: str,
                      link: str, body: Any) -> tuple[int, Any]:
        if method == "PUT" and not verb:
            update = body.get("update") or {}
            if len(update) != 1:
                return 400, _error(400, "Exactly one update can be applied to a cluster with "
                                        "each request.")
            (field_name, value), = update.items()
            target = {"desiredLocations": "locations",
                      "desiredReleaseChannel": "releaseChannel",
                      "desiredWorkloadIdentityConfig": "workloadIdentityConfig",
                      "desiredLoggingService": "loggingService",
                      "desiredMonitoringService": "monitoringService",
                      "desiredLoggingConfig": "loggingConfig",
                      "desiredMonitoringConfig": "monitoringConfig"}.get(field_name)
            if target is None:
                return 400, _error(400, f"Unsupported update field {field_name}.")
            return 200, self._operation(base, "UPDATE_CLUSTER", link,
                                        lambda: cluster.__setitem__(target, copy.deepcopy(value)))
        simple = {"setAddons": ("addonsConfig", "SET_ADDONS"),
                  "setNetworkPolicy": ("networkPolicy", "SET_NETWORK_POLICY")}
        if method == "POST" and verb in simple:
            key, op_type = simple[verb]
            return 200, self._operation(base, op_type, link,
                                        lambda: cluster.__setitem__(key, copy.deepcopy(body[key])))
        if method == "POST" and verb == "setResourceLabels":
            if body.get("labelFingerprint") != cluster["labelFingerprint"]:
                return 412, _error(412, "Labels could not be set due to fingerprint mismatch.")

            def relabel() -> None:
                cluster["resourceLabels"] = copy.deepcopy(body["resourceLabels"])
                cluster["labelFingerprint"] = self._next("fp")

            return 200, self._operation(base, "SET_LABELS", link, relabel)
        return 400, _error(400, f"Unsupported call {method} :{verb}.")

    def _pool_call(self, method: str, verb: str | None, pool: dict[str, Any], *, base: str,
                   link: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and verb in ("setAutoscaling", "setManagement"):
            key = "autoscaling" if verb == "setAutoscaling" else "management"
            return 200, self._operation(base, "SET_NODE_POOL_SIZE" if key == "autoscaling"
                                        else "SET_NODE_POOL_MANAGEMENT", link,
                                        lambda: pool.__setitem__(key, copy.deepcopy(body[key])))
        if method == "PUT" and not verb:
            if not body.get("nodeVersion") or not body.get("imageType"):
                return 400, _error(400, "nodeVersion and imageType are required.")
            if body["nodeVersion"] != pool["version"] and body["nodeVersion"] != "-":
                return 400, _error(400, "the double does not upgrade node versions.")

            def apply() -> None:
                for key, value in body.items():
                    if key in ("nodeVersion", "imageType", "name"):
                        continue
                    if key == "locations":
                        pool["locations"] = copy.deepcopy(value)
                    elif key in ("labels", "taints"):
                        pool["config"][key] = copy.deepcopy(value.get(key, {} if key == "labels"
                                                                      else []))
                    else:
                        pool["config"][key] = copy.deepcopy(value)

            return 200, self._operation(base, "UPDATE_CLUSTER", link, apply)
        return 400, _error(400, f"Unsupported node pool call {method} :{verb}.")

    # --- Cloud DNS ----------------------------------------------------------------------
    def _dns(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        zm = re.fullmatch(r"/dns/v1/projects/([^/]+)/managedZones", path)
        if zm and method == "POST":
            if f"{zm.group(1)}/{body['name']}" in self.zones:
                return 409, _dns_error(409, "alreadyExists", f"The resource 'entity.managedZone'"
                                       f" named '{body['name']}' already exists")
            self.add_zone(zm.group(1), body["name"], body["dnsName"])
            zone_body = self.zones[f"{zm.group(1)}/{body['name']}"]
            zone_body.update({k: v for k, v in body.items() if k not in zone_body})
            zone_body["nameServers"] = [f"ns-cloud-a{i}.googledomains.com." for i in (1, 2)]
            return 200, copy.deepcopy(zone_body)
        m = re.fullmatch(r"/dns/v1/projects/([^/]+)/managedZones/([^/]+)(/.*)?", path)
        if not m:
            return 404, _error(404, f"Not found: {path}")
        project, zone, rest = m.group(1), unquote(m.group(2)), unquote(m.group(3) or "")
        key = f"{project}/{zone}"
        if key not in self.zones:
            return 404, _dns_error(404, "notFound", f"The 'parameters.managedZone' resource "
                                                    f"named '{zone}' does not exist.")
        if not rest and method == "GET":
            return 200, copy.deepcopy(self.zones[key])
        rm = re.fullmatch(r"/rrsets/([^/]+)/([^/]+)", rest)
        if rm and method == "GET":
            found = self.rrsets[key].get((rm.group(1), rm.group(2)))
            if found is None:
                return 404, _dns_error(404, "notFound", f"The 'parameters.name' resource named "
                                                        f"'{rm.group(1)}' does not exist.")
            return 200, copy.deepcopy(found)
        if rest == "/changes" and method == "POST":
            if self.before_change is not None:
                hook, self.before_change = self.before_change, None
                hook(self)
            return self._change(key, body)
        cm = re.fullmatch(r"/changes/([^/]+)", rest)
        if cm and method == "GET":
            change = self.changes.get(cm.group(1))
            if change is None:
                return 404, _dns_error(404, "notFound", f"Change {cm.group(1)} not found.")
            change["status"] = "done"
            return 200, copy.deepcopy(change)
        return 404, _error(404, f"Not found: {path}")

    def _change(self, key: str, body: Any) -> tuple[int, Any]:
        sets = self.rrsets[key]
        for i, deletion in enumerate(body.get("deletions") or []):
            live = sets.get((deletion["name"], deletion["type"]))
            if live is None or _dns_canon(live) != _dns_canon(deletion):
                return 412, _dns_error(412, "conditionNotMet", f"Precondition not met for "
                                                               f"'entity.change.deletions[{i}]'")
        deleted = {(d["name"], d["type"]) for d in body.get("deletions") or []}
        for i, addition in enumerate(body.get("additions") or []):
            ident = (addition["name"], addition["type"])
            if ident in sets and ident not in deleted:
                return 409, _dns_error(409, "alreadyExists", f"The resource "
                                       f"'entity.change.additions[{i}]' named '{ident[0]} "
                                       f"({ident[1]})' already exists")
        for ident in deleted:
            sets.pop(ident, None)
        for addition in body.get("additions") or []:
            sets[(addition["name"], addition["type"])] = _dns_kinds(addition)
        cid = str(len(self.changes) + 1)
        change = {"kind": "dns#change", "id": cid, "status": "pending",
                  "startTime": "2026-11-26T00:00:00.000Z",
                  "additions": [_dns_kinds(a) for a in body.get("additions") or []],
                  "deletions": [_dns_kinds(d) for d in body.get("deletions") or []]}
        self.changes[cid] = change
        return 200, copy.deepcopy(change)


def _dns_kinds(rrset: dict[str, Any]) -> dict[str, Any]:
    """The record set as Cloud DNS returns it, with its ``kind`` markers."""
    out = copy.deepcopy(rrset)
    out["kind"] = "dns#resourceRecordSet"
    policy = out.get("routingPolicy")
    if policy:
        policy["kind"] = "dns#rRSetRoutingPolicy"
        geo = policy.get("geo")
        if geo:
            geo["kind"] = "dns#rRSetRoutingPolicyGeoPolicy"
            for item in geo.get("items", []):
                item["kind"] = "dns#rRSetRoutingPolicyGeoPolicyGeoPolicyItem"
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "kind"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _dns_canon(rrset: dict[str, Any]) -> str:
    return json.dumps(_strip(rrset), sort_keys=True)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "status": _STATUS_NAMES.get(code, "UNKNOWN")}}


def _dns_error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}


class _Handler(BaseHTTPRequestHandler):
    double: GcpDouble

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        status, payload = self.double.handle(self.command, self.path, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def serve(double: GcpDouble | None = None) -> Iterator[tuple[GcpDouble, str]]:
    """Run the double on 127.0.0.1 (a free port); yields (double, base URL)."""
    state = double or GcpDouble()
    handler = type("Handler", (_Handler,), {"double": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
