"""TEST DOUBLE of a Kubernetes API server, for tai-deploy's blue-green tests only.

It is NOT Kubernetes and must never be mistaken for one. It exists because no kube-apiserver
can run on these machines, and it imitates just enough of one, on loopback, for the
blue-green swap module, kubectl and the Kubernetes Python client (what kubernetes.core uses)
to talk to it through the real REST paths and JSON:

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/apps``,
  ``/apis/apps/v1`` (legacy discovery documents; aggregated discovery is not offered, so
  clients fall back to the legacy form as they do with older servers);
- ``/apis/apps/v1/namespaces/{ns}/deployments[/{name}[/status|/scale]]`` and
  ``/api/v1/namespaces/{ns}/services[/{name}[/status]]`` (GET, LIST with label/field
  selectors, POST, PUT, PATCH as JSON merge patch, JSON patch or a simplified strategic merge
  patch, DELETE), cluster-wide lists, and read-only namespaces;
- Leases, ``/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`` (what clients
  use as a lock, like client-go's leader election): stored, defaulted (nothing to default)
  and validated with kubernetes-validate like Deployments and Services; no generation and no
  status, as the API server keeps none for them (API reference: Lease v1 coordination.k8s.io);
- KEDA ScaledObjects, ``/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects[/{name}]``,
  stored and served like the other kinds (the same verbs, resourceVersion and 409 rules) but
  checked only structurally, as the CRD has no offline schema here (names, labels, string
  annotations, ``spec.scaleTargetRef.name``, ``spec.triggers`` a list). The double does not
  play KEDA: nothing scales a Deployment because of a ScaledObject;
- every stored object is defaulted like the API server does for the fields that matter here,
  checked for what the server's own validation refuses (selector/template label mismatch,
  immutable selector and clusterIP, label syntax, names) and validated with
  kubernetes-validate in strict mode. Unknown or mistyped fields are answered 400 BadRequest
  ("strict decoding error", what a real server says under ``fieldValidation=Strict``; the
  double is always strict), other schema violations 422 Invalid, both with a Status body;
- resourceVersion is bumped on every real change (not on no-op updates); a write carrying a
  stale ``metadata.resourceVersion`` is refused with 409 Conflict and the real message;
  ``metadata.generation`` of a Deployment is bumped when its spec changes;
- it plays the Deployment controller: a new generation is observed after ``observe_delay``;
  new pods become ready after a delay (or never), the old template's ready pods stay until the
  new ones are all ready, status counts and the Available/Progressing conditions follow,
  ProgressDeadlineExceeded is reported after ``spec.progressDeadlineSeconds``;
- it plays admission webhooks for pods: a pod the Deployment or StatefulSet controller would
  create is refused while a matching Mutating- or ValidatingWebhookConfiguration with
  ``failurePolicy: Fail`` has no available endpoint (the API server's InternalError "failed
  calling webhook"; the Deployment reports ReplicaFailure/FailedCreate, the StatefulSet a
  FailedCreate event) and created once it has one; no webhook is ever called;
- it plays cert-manager's controller minimally: a Certificate whose issuer exists gets its
  kubernetes.io/tls Secret and Ready=True (``certificates_issued = False``: orders that never
  complete); nothing is asked of any ACME server;
- it plays the pods and kube-proxy: each Deployment with pods runs a real grpcio server with
  the standard health service on loopback (status driven by a Behaviour chosen from the image
  tag), and each Service with a port named ``grpc`` gets a loopback TCP proxy that, like
  kube-proxy, picks a backend among the Deployments its selector matches that have available
  pods when a connection is opened. Connections already open stay where they are after a
  selector change, exactly the draining problem of gRPC's long-lived HTTP/2 connections.

Image tag conventions of ``behaviour_for_tag`` (tests may pass their own function): a tag
ending in ``-never`` never becomes available; ``-sick`` becomes available but answers
NOT_SERVING; ``-fail-after-swap`` answers SERVING until a non-preview Service has selected it
for ``fail_after`` seconds, then NOT_SERVING; ``-flap`` alternates; ``-slow`` takes 2 s to
become ready. Anything else is healthy.

Fault injection for tests: ``add_fault(Fault(...))`` makes the Nth matching request(s)
(``skip`` the first ones) answer an error (any status: a 500 InternalError, a 429
TooManyRequests with a ``Retry-After`` header, ...), close the connection before or after
applying the request, reset it (TCP RST, what a client sees as "connection reset by peer"),
answer only after a delay (before or after the request is applied), or (``touch``) have
"somebody else" modify the object first so that the request meets a genuine 409.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import ipaddress
import itertools
import json
import math
import os
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from helpers.k8s_exec import PodExec

SERVING, NOT_SERVING = "SERVING", "NOT_SERVING"
_STATUS = {SERVING: health_pb2.HealthCheckResponse.SERVING,
           NOT_SERVING: health_pb2.HealthCheckResponse.NOT_SERVING}
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# ------------------------------------------------------------------------------------------
# behaviours and faults


@dataclass(frozen=True)
class Behaviour:
    """How the pods of one image behave."""

    available: bool = True
    ready_delay: float | None = None  # None: the double's default
    health: str = SERVING
    fail_after: float | None = None  # seconds live (selected by a non-preview Service)
    flap_period: float | None = None


def behaviour_for_tag(tag: str) -> Behaviour:
    """The tag conventions described in the module docstring."""
    if tag.endswith("-never"):
        return Behaviour(available=False)
    if tag.endswith("-sick"):
        return Behaviour(health=NOT_SERVING)
    if tag.endswith("-fail-after-swap"):
        return Behaviour(fail_after=0.3)
    if tag.endswith("-flap"):
        return Behaviour(flap_period=0.15)
    if tag.endswith("-slow"):
        return Behaviour(ready_delay=2.0)
    return Behaviour()


def image_tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


@dataclass
class Fault:
    """Make matching requests misbehave. ``path`` is a regular expression (full match).

    action: ``error`` answers ``status``/``reason`` without touching anything (with a
    ``Retry-After: retry_after`` header when set, as the API server sends with 429); ``touch``
    changes the object (an annotation) before the request is handled, so a request with the
    old resourceVersion meets a genuine 409; ``drop`` closes the connection without doing
    anything; ``drop_after`` applies the request, then closes the connection unanswered;
    ``reset`` resets the connection (RST) without doing anything; ``delay`` handles the
    request normally. ``delay`` seconds pass before the request is handled (the store time
    moves with it) and ``delay_after`` seconds between storing and answering, with any action.
    ``hold`` handles the request normally once the test sets ``release`` (a slow answer whose
    end the test chooses, at most ``hold_timeout`` seconds).
    ``body``, a regular expression, also has to be found in the request body (e.g. only the
    patches that change a selector); ``token``, when set, is the bearer token the request has
    to carry (one client among several: a kubeconfig user with that token). The first
    ``skip`` matching requests pass untouched; then ``times`` of them misbehave.
    """

    method: str
    path: str
    action: str = "error"
    status: int = 409
    reason: str = "Conflict"
    message: str = "injected fault"
    times: int = 1
    skip: int = 0
    delay: float = 0.0
    delay_after: float = 0.0
    retry_after: float | None = None
    body: str | None = None
    token: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    hold_timeout: float = 60.0
    seen: int = 0
    hits: int = 0


@dataclass(frozen=True)
class RequestRecord:
    at: float
    method: str
    path: str
    query: str
    status: int
    content_type: str
    body: Any


class _HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class _Drop(Exception):
    """Close the client connection without an answer (``reset``: with a TCP RST)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("drop")
        self.reset = reset


# ------------------------------------------------------------------------------------------
# resources


@dataclass(frozen=True)
class _Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...]
    verbs: tuple[str, ...]
    subresources: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
DEPLOYMENTS = _Resource("apps", "v1", "deployments", "deployment", "Deployment", True,
                        ("deploy",), _RW, ("status", "scale"))
SERVICES = _Resource("", "v1", "services", "service", "Service", True, ("svc",), _RW,
                     ("status",))
NAMESPACES = _Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",),
                       _RW, ("status",))
LEASES = _Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, (), _RW, ())
SCALEDOBJECTS = _Resource("keda.sh", "v1alpha1", "scaledobjects", "scaledobject",
                          "ScaledObject", True, ("so",), _RW, ())
CRDS = _Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "customresourcedefinition", "CustomResourceDefinition", False, ("crd",), _RW,
                 ("status",))
PODS = _Resource("", "v1", "pods", "pod", "Pod", True, ("po",), _RW, ("status",))
SECRETS = _Resource("", "v1", "secrets", "secret", "Secret", True, (), _RW, ())


def _builtin(api_version: str, kind: str, plural: str, namespaced: bool = True,
             subresources: tuple[str, ...] = ()) -> _Resource:
    group, _, version = api_version.rpartition("/")
    return _Resource(group, version, plural, kind.lower(), kind, namespaced, (), _RW,
                     subresources)


# The built-in kinds the plan, the TAI chart and the platform charts create, with their plural
# and scope as the Kubernetes API reference lists them
# (https://kubernetes.io/docs/reference/kubernetes-api/). Their bodies are validated with
# kubernetes-validate's schemas of the same Kubernetes minor.
_BUILTINS = (
    DEPLOYMENTS, SERVICES, NAMESPACES, LEASES, SCALEDOBJECTS, CRDS, PODS, SECRETS,
    _builtin("v1", "ConfigMap", "configmaps"),
    _builtin("v1", "ServiceAccount", "serviceaccounts"),
    _builtin("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("status",)),
    _builtin("v1", "ResourceQuota", "resourcequotas", True, ("status",)),
    _builtin("v1", "LimitRange", "limitranges"),
    _builtin("v1", "Endpoints", "endpoints"),
    _builtin("v1", "Event", "events"),
    _builtin("apps/v1", "StatefulSet", "statefulsets", True, ("status", "scale")),
    _builtin("apps/v1", "DaemonSet", "daemonsets", True, ("status",)),
    _builtin("apps/v1", "ReplicaSet", "replicasets", True, ("status", "scale")),
    _builtin("apps/v1", "ControllerRevision", "controllerrevisions"),
    _builtin("batch/v1", "Job", "jobs", True, ("status",)),
    _builtin("batch/v1", "CronJob", "cronjobs", True, ("status",)),
    _builtin("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
             ("status",)),
    _builtin("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("status",)),
    _builtin("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    _builtin("networking.k8s.io/v1", "Ingress", "ingresses", True, ("status",)),
    _builtin("rbac.authorization.k8s.io/v1", "Role", "roles"),
    _builtin("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    _builtin("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    _builtin("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _builtin("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
             "mutatingwebhookconfigurations", False),
    _builtin("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
             "validatingwebhookconfigurations", False),
    _builtin("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False),
    _builtin("storage.k8s.io/v1", "StorageClass", "storageclasses", False),
    _builtin("apiregistration.k8s.io/v1", "APIService", "apiservices", False, ("status",)),
)
_BY_PLURAL = {r.plural: r for r in _BUILTINS}
_BY_KIND = {r.kind.lower(): r for r in _BUILTINS}
# Kinds whose objects carry metadata.generation (bumped when the spec changes) and a status.
_NO_GENERATION = {"", "configmaps", "secrets", "serviceaccounts", "endpoints", "events",
                  "leases", "roles", "rolebindings", "clusterroles", "clusterrolebindings",
                  "limitranges", "controllerrevisions", "namespaces", "pods", "services",
                  "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                  "priorityclasses", "storageclasses"}
_NO_STATUS = {"configmaps", "secrets", "serviceaccounts", "endpoints", "events", "leases",
              "roles", "rolebindings", "clusterroles", "clusterrolebindings", "limitranges",
              "controllerrevisions", "mutatingwebhookconfigurations",
              "validatingwebhookconfigurations", "priorityclasses", "storageclasses",
              "networkpolicies"}
_COLLECTION = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------
# patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A simplified strategic merge patch: lists of objects with a ``name`` merge by name.

    Enough for kubectl's scale/patch of the fields used here; ``$patch`` directives are
    refused rather than misapplied.
    """
    if isinstance(patch, dict):
        if any(str(k).startswith("$") for k in patch):
            raise _HttpError(415, "UnsupportedMediaType",
                             "the test double does not implement strategic merge directives")
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if (isinstance(patch, list) and isinstance(target, list) and patch
            and all(isinstance(p, dict) and "name" in p for p in patch)
            and all(isinstance(t, dict) and "name" in t for t in target)):
        merged = [copy.deepcopy(t) for t in target]
        for item in patch:
            for i, existing in enumerate(merged):
                if existing["name"] == item["name"]:
                    merged[i] = strategic_merge_patch(existing, item)
                    break
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _HttpError(422, "Invalid", f"JSON patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    if not isinstance(ops, list):
        raise _HttpError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)

    def parent(parts: list[str]) -> tuple[Any, str]:
        node = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node, parts[-1]

    def get(path: str) -> Any:
        node = doc
        for p in _pointer(path):
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node

    for op in ops:
        try:
            kind, path = op["op"], op["path"]
            parts = _pointer(path)
            if kind == "test":
                if get(path) != op["value"]:
                    raise _HttpError(422, "Invalid",
                                     f"the server rejected our request due to an error in our "
                                     f"request: testing value {path} failed")
                continue
            if kind in ("copy", "move"):
                value = copy.deepcopy(get(op["from"]))
                if kind == "move":
                    node, key = parent(_pointer(op["from"]))
                    del node[int(key) if isinstance(node, list) else key]
                kind = "add"
            else:
                value = op.get("value")
            node, key = parent(parts)
            if kind == "add":
                if isinstance(node, list):
                    node.insert(len(node) if key == "-" else int(key), value)
                else:
                    node[key] = value
            elif kind == "replace":
                if isinstance(node, list):
                    node[int(key)] = value
                else:
                    if key not in node:
                        raise KeyError(key)
                    node[key] = value
            elif kind == "remove":
                del node[int(key) if isinstance(node, list) else key]
            else:
                raise _HttpError(422, "Invalid", f"unknown JSON patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise _HttpError(422, "Invalid",
                             f"the server rejected our request due to an error in our request: "
                             f"{exc!r} in {op!r}") from exc
    return doc


PROTOBUF = "application/vnd.kubernetes.protobuf"


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as
    bytes (https://protobuf.dev/programming-guides/encoding/)."""
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, data[i:i + size]
            i += size
        elif wire == 1:
            yield number, data[i:i + 8]
            i += 8
        elif wire == 5:
            yield number, data[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _proto_map(entries: list[bytes], decode: Callable[[bytes], Any]) -> dict[str, Any]:
    out = {}
    for entry in entries:
        kv = dict(_fields(entry))
        out[kv.get(1, b"").decode()] = decode(kv.get(2, b""))
    return out


def _proto_object_meta(data: bytes) -> dict[str, Any]:
    """ObjectMeta from k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto (the fields a
    client sets: name 1, generateName 2, namespace 3, resourceVersion 6, labels 11,
    annotations 12, finalizers 14)."""
    meta: dict[str, Any] = {}
    labels: list[bytes] = []
    annotations: list[bytes] = []
    for number, value in _fields(data):
        names = {1: "name", 2: "generateName", 3: "namespace", 6: "resourceVersion",
                 5: "uid"}
        if number in names and value:
            meta[names[number]] = value.decode()
        elif number == 11:
            labels.append(value)
        elif number == 12:
            annotations.append(value)
        elif number == 14:
            meta.setdefault("finalizers", []).append(value.decode())
    if labels:
        meta["labels"] = _proto_map(labels, bytes.decode)
    if annotations:
        meta["annotations"] = _proto_map(annotations, bytes.decode)
    return meta


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    """A request body in Kubernetes' protobuf encoding: the ``k8s\\x00`` magic, then a
    runtime.Unknown (typeMeta 1, raw 2) wrapping the object (API reference: "Alternate
    representations of resources"; k8s.io/apimachinery/pkg/runtime/serializer/protobuf).
    Only the kinds clients send this way here are understood: Secrets (Helm's release
    storage, through client-go's typed clientset) and ConfigMaps."""
    if not raw.startswith(b"k8s\x00"):
        raise ValueError("the protobuf body lacks the k8s magic prefix")
    unknown = dict(_fields(raw[4:]))
    type_meta = {n: v.decode() for n, v in _fields(unknown.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if (api_version, kind) not in (("v1", "Secret"), ("v1", "ConfigMap")):
        raise ValueError(f"the test double cannot decode {api_version} {kind} from protobuf")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    data: list[bytes] = []
    string_data: list[bytes] = []
    binary: list[bytes] = []
    for number, value in _fields(unknown.get(2, b"")):
        if number == 1:
            obj["metadata"] = _proto_object_meta(value)
        elif number == 2:
            data.append(value)
        elif kind == "Secret" and number == 3:
            obj["type"] = value.decode()
        elif kind == "Secret" and number == 4:
            string_data.append(value)
        elif kind == "Secret" and number == 5:
            obj["immutable"] = bool(value)
        elif kind == "ConfigMap" and number == 3:
            binary.append(value)
        elif kind == "ConfigMap" and number == 4:
            obj["immutable"] = bool(value)
    if data:
        obj["data"] = _proto_map(data, (lambda b: base64.b64encode(b).decode())
                                 if kind == "Secret" else bytes.decode)
    if string_data:
        obj["stringData"] = _proto_map(string_data, bytes.decode)
    if binary:
        obj["binaryData"] = _proto_map(binary, lambda b: base64.b64encode(b).decode())
    return obj


APPLY_PATCH = "application/apply-patch+yaml"


def apply_patch(target: Any, patch: Any) -> Any:
    """Server-side apply of one field manager's configuration, simplified: the applied fields
    are merged into the live object like a strategic merge patch (lists of objects by name).
    Fields the manager stopped applying are not removed: the double keeps no managedFields
    (API reference: Server-Side Apply, "Merge strategy")."""
    if isinstance(patch, dict):
        patch = {k: v for k, v in patch.items() if k not in ("status",)}
    return strategic_merge_patch(target, patch)


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA before beta before alpha, then by number
    (API reference: CustomResourceDefinition versions, "Version priority")."""
    m = re.match(r"^v([0-9]+)(?:(alpha|beta)([0-9]+))?$", version)
    if m is None:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


def _crd_problems(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[str]:
    """What the API server refuses in a CustomResourceDefinition beyond its schema (API
    reference: CustomResourceDefinition v1; name must be <plural>.<group>, one storage
    version, scope immutable)."""
    spec = obj.get("spec") or {}
    out = []
    names = spec.get("names") or {}
    if obj["metadata"].get("name") != f"{names.get('plural')}.{spec.get('group')}":
        out.append(f"metadata.name: Invalid value: {obj['metadata'].get('name')!r}: must be "
                   "spec.names.plural+\".\"+spec.group")
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    if sum(1 for v in versions if v.get("storage")) != 1:
        out.append("spec.versions: Invalid value: must have exactly one version marked as "
                   "storage version")
    if old is not None and spec.get("scope") != (old.get("spec") or {}).get("scope"):
        out.append("spec.scope: Invalid value: field is immutable")
    return out


def _openapi_to_jsonschema(node: Any, *, root: bool = False) -> Any:
    """A CRD's structural openAPIV3Schema as a JSON Schema that refuses unknown fields (what
    the API server does under fieldValidation=Strict; otherwise it prunes them): objects with
    ``properties`` and no ``x-kubernetes-preserve-unknown-fields`` get additionalProperties
    false; ``nullable`` admits null; ``x-kubernetes-int-or-string`` admits both."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items()
           if not str(k).startswith("x-kubernetes-") and k != "nullable"}
    if "properties" in node:
        out["properties"] = {k: _openapi_to_jsonschema(v)
                             for k, v in node["properties"].items()}
    if root:
        out.setdefault("properties", {}).update({
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object"}})
        out["properties"].pop("status", None)
        out["properties"]["status"] = {}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (node.get("type") == "object" or "properties" in node) and "properties" in node and \
            not node.get("x-kubernetes-preserve-unknown-fields") and \
            "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


# ------------------------------------------------------------------------------------------
# pods and kube-proxy


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


# ------------------------------------------------------------------------------------------
# the double


def _tls_material() -> tuple[bytes, bytes, bytes]:
    """A test CA and a certificate for 127.0.0.1 it signed (PEM), with the key identifiers
    Python 3.13's strict verification (VERIFY_X509_STRICT) requires."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s double test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=4))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=4))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


def _self_signed(dns_names: list[str]) -> tuple[bytes, bytes]:
    """A self-signed certificate for dns_names and its key (PEM), issued by the double."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s double cert-manager")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + timedelta(days=90)))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in dns_names]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class KubeApiDouble:
    """A loopback Kubernetes API TEST DOUBLE (see the module docstring)."""

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
        self.exec = PodExec(self)  # pods/{name}/exec: helpers/k8s_exec.py
        for ns in namespaces:
            self._objects[("namespaces", "", ns)] = {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": str(uuid.uuid4()),
                             "resourceVersion": str(next(self._rv)),
                             "creationTimestamp": _now_iso(),
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

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

    @property
    def port(self) -> int:
        assert self._http is not None
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- test API ------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

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

    # -- HTTP ----------------------------------------------------------------------------

    def handle(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path, query = split.path.rstrip("/") or "/", parse_qs(split.query)
        if self.exec.serve(h, method, path, query):  # a WebSocket upgrade, not a JSON answer
            return
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        body: Any = None
        status = 200
        answer: Any
        headers: dict[str, str] = {}
        try:
            if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
                raise _HttpError(401, "Unauthorized", "Unauthorized")
            if raw:
                try:
                    body = (yaml.safe_load(raw) if content_type == APPLY_PATCH
                            else decode_protobuf(raw) if content_type == PROTOBUF
                            else json.loads(raw))
                except (ValueError, yaml.YAMLError) as exc:
                    if method == "DELETE":  # DeleteOptions: nothing the double needs
                        body = None
                    else:
                        raise _HttpError(400, "BadRequest",
                                         f"the body of the request was not valid JSON: {exc}"
                                         ) from exc
            if method == "GET" and query.get("watch", ["false"])[0] in ("true", "1"):
                self._watch(h, path, query)
                return
            fault = self._fault(method, path, raw.decode("utf-8", "replace"),
                                h.headers.get("Authorization"))
            if fault is not None and fault.delay > 0:
                time.sleep(fault.delay)
            if fault is not None and fault.action == "hold":
                fault.release.wait(fault.hold_timeout)
            if fault is not None and fault.action == "error":
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                raise _HttpError(fault.status, fault.reason, fault.message)
            if fault is not None and fault.action in ("drop", "reset"):
                raise _Drop(reset=fault.action == "reset")
            with self._lock:
                if fault is not None and fault.action == "touch":
                    self._touch(path)
                status, answer = self._dispatch(method, path, query, body, content_type)
            if fault is not None and fault.delay_after > 0:
                time.sleep(fault.delay_after)
            if fault is not None and fault.action == "drop_after":
                raise _Drop
        except _HttpError as err:
            status, answer = err.code, err.status()
        except _Drop as drop:
            self._record(method, path, split.query, status=0, content_type=content_type,
                         body=body)
            h.close_connection = True
            if drop.reset:  # SO_LINGER 0: close() sends a RST instead of a FIN
                with contextlib.suppress(OSError):
                    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    h.connection.close()
                return
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        self._record(method, path, split.query, status=status, content_type=content_type,
                     body=body)
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Audit-Id", str(uuid.uuid4()))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _watch(self, h: _Handler, path: str, query: Mapping[str, list[str]]) -> None:
        """A watch: newline-delimited WatchEvents in a chunked answer (API reference: "Efficient
        detection of changes"), ADDED for what exists (or what changed after the given
        resourceVersion), then MODIFIED/DELETED as they happen, until timeoutSeconds."""
        with self._lock:
            route = self._route(path)
            if route is None:
                raise _HttpError(404, "NotFound",
                                 "the server could not find the requested resource")
            res, ns, by_namespace, name, _ = route
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = min(float(query.get("timeoutSeconds", ["300"])[0]), 300.0)
        label_sel = _parse_selector(query.get("labelSelector", [""])[0])
        field_sel = _parse_selector(query.get("fieldSelector", [""])[0])
        if name is not None:
            field_sel.append(("metadata.name", "=", name))
        self._record("GET", path, "watch", status=200, content_type="", body=None)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def matching() -> dict[tuple[str, str], dict[str, Any]]:
            out = {}
            for (q, ins, iname), obj in self._objects.items():
                if q != res.qualified or (by_namespace and ins != ns):
                    continue
                fields = {"metadata.name": iname, "metadata.namespace": ins}
                if _matches(label_sel, obj["metadata"].get("labels") or {}) and _matches(
                        field_sel, fields):
                    out[(ins, iname)] = obj
            return out

        def send(kind: str, obj: Mapping[str, Any]) -> None:
            data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        seen: dict[tuple[str, str], str] = {}
        deadline = time.time() + timeout
        try:
            with self._lock:
                current = matching()
                for key, obj in sorted(current.items()):
                    rv = obj["metadata"]["resourceVersion"]
                    if since == 0 or int(rv) > since:
                        send("ADDED", copy.deepcopy(obj))
                    seen[key] = rv
                if query.get("sendInitialEvents", ["false"])[0] == "true":
                    # the end of the initial events of a streaming list (KEP-3157)
                    send("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                      "metadata": {
                                          "resourceVersion": str(self._current_rv()),
                                          "annotations": {
                                              "k8s.io/initial-events-end": "true"}}})
            while time.time() < deadline and not self._stop.is_set():
                time.sleep(self.tick)
                with self._lock:
                    current = matching()
                    events = []
                    for key, obj in sorted(current.items()):
                        rv = obj["metadata"]["resourceVersion"]
                        if key not in seen:
                            events.append(("ADDED", copy.deepcopy(obj)))
                        elif seen[key] != rv:
                            events.append(("MODIFIED", copy.deepcopy(obj)))
                        seen[key] = rv
                    for key in [k for k in seen if k not in current]:
                        del seen[key]
                        gone = next((d[4] for d in reversed(self._deleted)
                                     if (d[1], d[2]) == key and d[0] == res.qualified), None)
                        if gone is not None:
                            events.append(("DELETED", copy.deepcopy(gone)))
                for kind, obj in events:
                    send(kind, obj)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True

    def _record(self, method: str, path: str, query: str, *, status: int, content_type: str,
                body: Any) -> None:
        if self.log_file:
            with Path(self.log_file).open("a", encoding="utf-8") as log:
                log.write(f"{method} {path}?{query} {status} {content_type}\n")
        self.requests.append(RequestRecord(time.time(), method, path, query, status,
                                           content_type, body))

    def _fault(self, method: str, path: str, raw: str = "",
               authorization: str | None = None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.hits < fault.times and fault.method == method and re.fullmatch(
                        fault.path, path) and (fault.body is None or re.search(fault.body, raw)
                        ) and (fault.token is None or authorization == f"Bearer {fault.token}"):
                    fault.seen += 1
                    if fault.seen <= fault.skip:
                        continue
                    fault.hits += 1
                    return fault
        return None

    def _touch(self, path: str) -> None:
        route = self._route(path)
        if route is None or not route[3]:
            return
        res, ns, _, name, _ = route
        obj = self._objects.get((res.qualified, ns if res.namespaced else "", str(name)))
        if obj is not None:
            ann = obj["metadata"].setdefault("annotations", {})
            ann["double.test/touched"] = str(int(ann.get("double.test/touched", "0")) + 1)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self._after_write(res, ns, obj)

    # -- resources -----------------------------------------------------------------------

    def resources(self) -> list[_Resource]:
        """Every kind served: the built-ins and the served versions of the applied CRDs."""
        return [*self._builtins.values(), *self._custom.values()]

    def _resource(self, api_version: str, plural: str) -> _Resource | None:
        for res in self.resources():
            if res.api_version == api_version and res.plural == plural:
                return res
        return None

    def _route(self, path: str) -> tuple[_Resource, str, bool, str | None, str | None] | None:
        """(resource, namespace, namespaced URL, name, subresource) of a resource path."""
        m = _COLLECTION.match(path)
        if m is None:
            return None
        g = m.groupdict()
        api_version = g["core"] or f"{g['group']}/{g['version']}"
        plural, ns, name, sub = g["plural"], g["ns"], g["name"], g["sub"]
        res = self._resource(api_version, plural)
        if res is None and ns is not None and name is None and api_version == "v1":
            # /api/v1/namespaces/{name}/{subresource}
            res, name, sub, ns = NAMESPACES, ns, plural, None
        if res is None:
            return None
        return res, ns or "", ns is not None, name, sub

    # -- discovery -----------------------------------------------------------------------

    def _discovery(self, path: str) -> dict[str, Any] | None:
        """Legacy discovery documents (API reference: "The Kubernetes API", discovery API)."""
        if path == "/version":
            minor = self.kubernetes_version.split(".")[1]
            return {"major": "1", "minor": minor, "gitVersion": f"v1.{minor}.0-tai-double",
                    "gitCommit": "0" * 40, "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return self._openapi_v3(path.removeprefix("/openapi/v3").lstrip("/"))
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": f"127.0.0.1:{self.port}"}]}
        groups: dict[str, dict[str, Any]] = {}
        for res in self.resources():
            if not res.group:
                continue
            entry = groups.setdefault(res.group, {"name": res.group, "versions": []})
            gv = {"groupVersion": res.api_version, "version": res.version}
            if gv not in entry["versions"]:
                entry["versions"].append(gv)
                entry["versions"].sort(key=lambda v: _version_priority(v["version"]))
            entry["preferredVersion"] = entry["versions"][0]
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [groups[k] for k in sorted(groups)]}
        if path.removeprefix("/apis/") in groups:
            return {"kind": "APIGroup", "apiVersion": "v1",
                    **groups[path.removeprefix("/apis/")]}
        group_version = path.removeprefix("/api/") if path.startswith("/api/") else (
            path.removeprefix("/apis/") if path.startswith("/apis/") else "")
        listed = [res for res in self.resources() if res.api_version == group_version]
        if not listed or group_version.count("/") > 1:
            return None
        resources = []
        for res in sorted(listed, key=lambda r: r.plural):
            resources.append({"name": res.plural, "singularName": res.singular,
                              "namespaced": res.namespaced, "kind": res.kind,
                              "verbs": list(res.verbs), "shortNames": list(res.short_names),
                              **({"categories": ["all"]} if res is not NAMESPACES else {})})
            for sub in res.subresources:
                entry = {"name": f"{res.plural}/{sub}", "singularName": "",
                         "namespaced": res.namespaced, "kind": res.kind,
                         "verbs": ["get", "patch", "update"]}
                if sub == "scale":
                    entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                resources.append(entry)
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}

    def _openapi_v3(self, group_version: str) -> dict[str, Any] | None:
        """The OpenAPI v3 discovery index (``/openapi/v3``) and, per group-version, the PATCH
        operations with their ``x-kubernetes-group-version-kind`` and the ``fieldValidation``
        query parameter: what clients read to learn that the server validates fields itself
        (API reference: "OpenAPI V3"; KEP-2885 server-side field validation). Schemas are not
        published: validation happens here, strictly, on every write."""
        served = sorted({r.api_version for r in self._builtins.values()})
        if not group_version:
            return {"paths": {("api/" if "/" not in gv else "apis/") + gv: {
                "serverRelativeURL": f"/openapi/v3/{'api' if '/' not in gv else 'apis'}/{gv}"
                                     f"?hash={self._openapi_hash()}"} for gv in served}}
        gv = group_version.removeprefix("api/").removeprefix("apis/")
        if gv not in served:
            return None
        paths: dict[str, Any] = {}
        for res in self._builtins.values():
            if res.api_version != gv:
                continue
            prefix = f"/api/{gv}" if not res.group else f"/apis/{gv}"
            scope = "/namespaces/{namespace}" if res.namespaced else ""
            paths[f"{prefix}{scope}/{res.plural}/{{name}}"] = {"patch": {
                "operationId": f"patch{res.kind}",
                "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version,
                                                    "kind": res.kind},
                "x-kubernetes-action": "patch",
                "parameters": [{"name": "fieldValidation", "in": "query",
                                "schema": {"type": "string", "uniqueItems": True}},
                               {"name": "fieldManager", "in": "query",
                                "schema": {"type": "string", "uniqueItems": True}}],
                "responses": {"200": {"description": "OK"}}}}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.34.0"},
                "paths": paths, "components": {"schemas": {}}}

    def _openapi_hash(self) -> str:
        return "0" * 16

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: Mapping[str, list[str]], body: Any,
                  content_type: str) -> tuple[int, Any]:
        if method == "GET":
            doc = self._discovery(path)
            if doc is not None:
                return 200, doc
        route = self._route(path)
        if route is None:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        res, ns, by_namespace, name, sub = route
        if res.namespaced and ns and ("namespaces", "", ns) not in self._objects and (
                method != "GET" or name):
            raise _HttpError(404, "NotFound", f'namespaces "{ns}" not found',
                             {"name": ns, "kind": "namespaces"})
        if name is None:
            if method == "GET":
                return 200, self._list(res, ns if by_namespace else None, query)
            if method == "POST" and (by_namespace or not res.namespaced):
                obj = self._body_object(body, res)
                if res.namespaced:
                    obj.setdefault("metadata", {}).setdefault("namespace", ns)
                return 201, self._create(res, ns, obj, dry_run="dryRun" in query)
            if method == "DELETE" and by_namespace:
                for item in self._list(res, ns, query)["items"]:
                    self._item("DELETE", res, ns, item["metadata"]["name"], sub=None, body=None,
                               content_type="")
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            raise _HttpError(405, "MethodNotAllowed",
                             "the server does not allow this method on the requested "
                             "resource")
        if sub is not None and sub not in res.subresources:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        return self._item(method, res, ns, name, sub=sub, body=body, content_type=content_type,
                          query=query)

    @staticmethod
    def _body_object(body: Any, res: _Resource) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HttpError(400, "BadRequest",
                             f"{res.kind} in version \"{res.version}\" cannot be handled as a "
                             f"{res.kind}: the body is not a JSON object")
        return copy.deepcopy(body)

    def _list(self, res: _Resource, ns: str | None,
              query: Mapping[str, list[str]]) -> dict[str, Any]:
        label_sel = _parse_selector(query.get("labelSelector", [""])[0])
        field_sel = _parse_selector(query.get("fieldSelector", [""])[0])
        items = []
        for (plural, ins, name), obj in sorted(self._objects.items()):
            if plural != res.qualified or (ns is not None and ins != ns):
                continue
            labels = obj["metadata"].get("labels") or {}
            fields = {"metadata.name": name, "metadata.namespace": ins}
            if _matches(label_sel, labels) and _matches(field_sel, fields):
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(self._current_rv())}, "items": items}

    def _current_rv(self) -> int:
        return max([int(o["metadata"]["resourceVersion"]) for o in self._objects.values()]
                   + [int(d[3]) for d in self._deleted[-1:]])

    def _item(self, method: str, res: _Resource, ns: str, name: str, *, sub: str | None,
              body: Any, content_type: str,
              query: Mapping[str, list[str]] | None = None) -> tuple[int, Any]:
        query = query or {}
        key = (res.qualified, ns if res.namespaced else "", name)
        current = self._objects.get(key)
        if current is None and method == "PATCH" and content_type == APPLY_PATCH and sub is None:
            # Server-side apply creates what does not exist (API reference: Server-Side Apply).
            obj = self._body_object(body, res)
            obj.setdefault("metadata", {}).setdefault("name", name)
            if res.namespaced:
                obj["metadata"].setdefault("namespace", ns)
            return 201, self._create(res, ns, obj, dry_run="dryRun" in query)
        if current is None:
            raise _HttpError(404, "NotFound", f'{res.qualified} "{name}" not found',
                             {"name": name, "group": res.group, "kind": res.plural})
        if method == "GET":
            return 200, (self._scale_of(current) if sub == "scale" else copy.deepcopy(current))
        if method == "DELETE":
            if "dryRun" in query:
                return 200, copy.deepcopy(current)
            del self._objects[key]
            self._after_delete(res, ns, name)
            self._deleted.append((res.qualified, ns, name, str(next(self._rv)), current))
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                         "details": {"name": name, "group": res.group, "kind": res.plural}}
        if sub == "scale":
            scale = self._scale_of(current)
            new_scale = (self._body_object(body, res) if method == "PUT"
                         else self._patched(scale, body, content_type))
            rv = new_scale.get("metadata", {}).get("resourceVersion")
            update = copy.deepcopy(current)
            update["spec"]["replicas"] = new_scale.get("spec", {}).get("replicas", 0)
            if rv:
                update["metadata"]["resourceVersion"] = rv
            stored = self._update(res, ns, name, update, None)
            return 200, self._scale_of(stored)
        new = (self._body_object(body, res) if method == "PUT"
               else self._patched(current, body, content_type))
        return 200, self._update(res, ns, name, new, sub, dry_run="dryRun" in query)

    def _patched(self, current: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
        if content_type == "application/merge-patch+json":
            result = merge_patch(current, body)
        elif content_type == "application/strategic-merge-patch+json":
            result = strategic_merge_patch(current, body)
        elif content_type == "application/json-patch+json":
            result = json_patch(current, body)
        elif content_type == APPLY_PATCH:
            result = apply_patch(current, body)
        else:
            raise _HttpError(415, "UnsupportedMediaType",
                             f"the body of the request was in an unknown format - accepted "
                             f"media types include: application/json-patch+json, "
                             f"application/merge-patch+json, "
                             f"application/apply-patch+yaml, "
                             f"application/strategic-merge-patch+json (got {content_type!r})")
        if not isinstance(result, dict):
            raise _HttpError(422, "Invalid", "the patch does not produce an object")
        return result

    def _scale_of(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        meta = dep["metadata"]
        match = dep["spec"].get("selector", {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "uid": meta["uid"], "resourceVersion": meta["resourceVersion"],
                             "creationTimestamp": meta["creationTimestamp"]},
                "spec": {"replicas": dep["spec"].get("replicas", 1)},
                "status": {"replicas": (dep.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sorted(match.items()))}}

    # -- storage -------------------------------------------------------------------------

    def _create(self, res: _Resource, ns: str, obj: dict[str, Any], *,
                dry_run: bool = False) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if not res.namespaced:
            ns = ""
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name:
            raise _HttpError(422, "Invalid",
                             f'{res.kind_qualified} "" is invalid: metadata.name: Required value: '
                             "name or generateName is required")
        if res.namespaced and meta.get("namespace", ns) != ns:
            raise _HttpError(400, "BadRequest", "the namespace of the provided object does not "
                                                "match the namespace sent on the request")
        if res.namespaced and ("namespaces", "", ns) not in self._objects:
            raise _HttpError(404, "NotFound", f'namespaces "{ns}" not found')
        if res.namespaced and self._objects[("namespaces", "", ns)]["status"].get(
                "phase") == "Terminating":
            raise _HttpError(403, "Forbidden", f'unable to create new content in namespace {ns} '
                                               "because it is being terminated")
        key = (res.qualified, ns, name)
        if key in self._objects:
            raise _HttpError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists',
                             {"name": name, "group": res.group, "kind": res.plural})
        self._check_type(res, obj)
        meta.update({"uid": str(uuid.uuid4()), "creationTimestamp": _now_iso()})
        if res.namespaced:
            meta["namespace"] = ns
        for server_field in ("resourceVersion", "generation", "managedFields", "selfLink"):
            meta.pop(server_field, None)
        if res is SERVICES:
            obj["status"] = {"loadBalancer": {}}
        elif res is NAMESPACES:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif res.plural in _NO_STATUS:
            obj.pop("status", None)
        else:
            obj["status"] = {}
        if res.plural not in _NO_GENERATION or res in self._custom.values():
            meta["generation"] = 1
        self._default(res, obj, None)
        self._validate(res, obj, None)
        if dry_run:
            return copy.deepcopy(obj)
        meta["resourceVersion"] = str(next(self._rv))
        self._objects[key] = obj
        self._written_at[key] = time.time()
        self._after_write(res, ns, obj)
        return copy.deepcopy(obj)

    def _update(self, res: _Resource, ns: str, name: str, new: dict[str, Any],
                sub: str | None, *, dry_run: bool = False) -> dict[str, Any]:
        if not res.namespaced:
            ns = ""
        key = (res.qualified, ns, name)
        old = self._objects[key]
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise _HttpError(400, "BadRequest",
                             f"the name of the object ({meta.get('name')}) does not match the "
                             f"name on the URL ({name})")
        if res.namespaced and meta.get("namespace", ns) != ns:
            raise _HttpError(400, "BadRequest", "the namespace of the provided object does not "
                                                "match the namespace sent on the request")
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise _HttpError(409, "Conflict",
                             f'Operation cannot be fulfilled on {res.qualified} "{name}": the '
                             "object has been modified; please apply your changes to the latest "
                             "version and try again",
                             {"name": name, "group": res.group, "kind": res.plural})
        self._check_type(res, new)
        meta.pop("managedFields", None)
        if sub == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status") or {}
        else:
            merged = new
            if res.plural in _NO_STATUS:
                merged.pop("status", None)
            else:
                merged["status"] = copy.deepcopy(old.get("status") or {})
            if res is NAMESPACES:
                merged["spec"] = copy.deepcopy(old.get("spec") or {})
                merged["metadata"].setdefault("labels", {})[
                    "kubernetes.io/metadata.name"] = name
            for kept in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if kept in old["metadata"]:
                    merged["metadata"][kept] = old["metadata"][kept]
                else:
                    merged["metadata"].pop(kept, None)
            merged["metadata"]["name"] = name
            if res.namespaced:
                merged["metadata"]["namespace"] = ns
            else:
                merged["metadata"].pop("namespace", None)
            self._default(res, merged, old)
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        self._validate(res, merged, old)
        if merged == old or dry_run:
            return copy.deepcopy(merged)
        if "generation" in old["metadata"] and merged.get("spec") != old.get("spec"):
            merged["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        merged["metadata"]["resourceVersion"] = str(next(self._rv))
        self._objects[key] = merged
        if merged.get("spec") != old.get("spec"):
            self._written_at[key] = time.time()
        self._after_write(res, ns, merged)
        return copy.deepcopy(merged)

    @staticmethod
    def _check_type(res: _Resource, obj: dict[str, Any]) -> None:
        if obj.get("kind", res.kind) != res.kind or obj.get("apiVersion",
                                                            res.api_version) != res.api_version:
            raise _HttpError(400, "BadRequest",
                             f"the API version in the data ({obj.get('apiVersion')}) does not "
                             f"match the expected API version ({res.api_version}) or kind")
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version

    def _default(self, res: _Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if res not in (DEPLOYMENTS, SERVICES):
            if res is CRDS:
                for version in (obj.get("spec") or {}).get("versions") or []:
                    if isinstance(version, dict):
                        version.setdefault("storage", True)
                        version.setdefault("served", True)
            return
        spec: dict[str, Any] = obj.setdefault("spec", {})
        if res is DEPLOYMENTS:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxUnavailable": "25%", "maxSurge": "25%"}})
            pod = spec.get("template", {}).get("spec")
            if isinstance(pod, dict):
                pod.setdefault("restartPolicy", "Always")
                pod.setdefault("terminationGracePeriodSeconds", 30)
                pod.setdefault("dnsPolicy", "ClusterFirst")
                pod.setdefault("schedulerName", "default-scheduler")
                pod.setdefault("securityContext", {})
                for c in pod.get("containers") or []:
                    if not isinstance(c, dict):
                        continue
                    c.setdefault("terminationMessagePath", "/dev/termination-log")
                    c.setdefault("terminationMessagePolicy", "File")
                    c.setdefault("resources", {})
                    tag = image_tag(str(c.get("image", "")))
                    c.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
                    for p in c.get("ports") or []:
                        if isinstance(p, dict):
                            p.setdefault("protocol", "TCP")
        elif res is SERVICES:
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("internalTrafficPolicy", "Cluster")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            if "clusterIP" not in spec:
                old_ip = (old or {}).get("spec", {}).get("clusterIP")
                index = next(self._ips)
                spec["clusterIP"] = old_ip or f"10.96.{index // 250}.{index % 250 + 2}"
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            for p in spec.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    p.setdefault("targetPort", p.get("port"))

    # -- validation ----------------------------------------------------------------------

    def _validate(self, res: _Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = str(obj["metadata"].get("name"))
        prefix = f'{res.kind_qualified} "{name}" is invalid'
        problems: list[str] = []
        name_re = _DNS1035 if res is SERVICES else _DNS1123_SUBDOMAIN
        if not name_re.match(name) or len(name) > (63 if res is SERVICES else 253):
            problems.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 "
                            "name is required")
        problems += _label_problems(obj["metadata"].get("labels"), "metadata.labels")
        if res is DEPLOYMENTS:
            problems += self._deployment_problems(obj, old)
        elif res is SERVICES:
            problems += self._service_problems(obj, old)
        elif res is SCALEDOBJECTS and res not in self._custom.values():
            problems += self._scaledobject_problems(obj)
        elif res is CRDS:
            problems += _crd_problems(obj, old)
        if problems:
            raise _HttpError(422, "Invalid", f"{prefix}: {'; '.join(problems)}",
                             {"name": name, "group": res.group, "kind": res.kind,
                              "causes": [{"message": p} for p in problems]})
        schema = self._crd_schemas.get(res.api_version + "/" + res.plural)
        if schema is not None:
            self._custom_schema(res, obj, schema, prefix)
        elif res is not SCALEDOBJECTS:  # without its CRD: structural checks only
            self._schema(res, obj, prefix)

    def _deployment_problems(self, obj: Mapping[str, Any],
                             old: Mapping[str, Any] | None) -> list[str]:
        out: list[str] = []
        spec = obj.get("spec") or {}
        selector = spec.get("selector") or {}
        match = selector.get("matchLabels") or {}
        labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
        if not match and not selector.get("matchExpressions"):
            out.append("spec.selector: Required value")
        elif isinstance(match, dict) and isinstance(labels, dict) and any(
                labels.get(k) != v for k, v in match.items()):
            out.append(f"spec.template.metadata.labels: Invalid value: {labels}: `selector` "
                       "does not match template `labels`")
        if old is not None and selector != old.get("spec", {}).get("selector"):
            out.append(f"spec.selector: Invalid value: {selector}: field is immutable")
        out += _label_problems(labels, "spec.template.metadata.labels")
        containers = spec.get("template", {}).get("spec", {}).get("containers")
        if not containers:
            out.append("spec.template.spec.containers: Required value")
        else:
            names = [c.get("name") for c in containers if isinstance(c, dict)]
            if len(set(names)) != len(names):
                out.append("spec.template.spec.containers: Duplicate value")
            for i, c in enumerate(containers):
                if isinstance(c, dict) and not c.get("image"):
                    out.append(f"spec.template.spec.containers[{i}].image: Required value")
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            out.append("spec.replicas: Invalid value: must be greater than or equal to 0")
        return out

    @staticmethod
    def _service_problems(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[str]:
        out: list[str] = []
        spec = obj.get("spec") or {}
        selector = spec.get("selector") or {}
        if isinstance(selector, dict):
            out += _label_problems(selector, "spec.selector")
        ports = spec.get("ports") or []
        if spec.get("type", "ClusterIP") != "ExternalName" and not ports:
            out.append("spec.ports: Required value")
        names = [p.get("name") for p in ports if isinstance(p, dict)]
        if len(ports) > 1 and not all(names):
            out.append("spec.ports[].name: Required value")
        if len({n for n in names if n}) != len([n for n in names if n]):
            out.append("spec.ports[].name: Duplicate value")
        if old is not None and spec.get("clusterIP") != old.get("spec", {}).get("clusterIP"):
            out.append("spec.clusterIP: Invalid value: field is immutable")
        return out

    @staticmethod
    def _scaledobject_problems(obj: Mapping[str, Any]) -> list[str]:
        """Structural checks of a KEDA ScaledObject (what its CRD's schema requires)."""
        out: list[str] = []
        annotations = obj["metadata"].get("annotations")
        if annotations is not None and (not isinstance(annotations, dict) or not all(
                isinstance(v, str) for v in annotations.values())):
            out.append("metadata.annotations: Invalid value: values must be strings")
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [*out, "spec: Required value"]
        ref = spec.get("scaleTargetRef")
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
            out.append("spec.scaleTargetRef.name: Required value")
        if not isinstance(spec.get("triggers"), list):
            out.append("spec.triggers: Required value")
        return out

    def _schema(self, res: _Resource, obj: dict[str, Any], prefix: str) -> None:
        try:
            # status belongs to the server (its controllers write it): the client's is ignored
            kubernetes_validate.validate({k: v for k, v in obj.items() if k != "status"},
                                         self.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path)
            message = str(exc.message).splitlines()[0]
            if exc.validator == "additionalProperties":
                m = re.search(r"'([^']+)' was unexpected", message)
                unknown = f"{where}.{m.group(1)}" if m and where else (m.group(1) if m else where)
                raise _HttpError(400, "BadRequest",
                                 f'{res.kind} in version "{res.version}" cannot be handled as a '
                                 f'{res.kind}: strict decoding error: unknown field '
                                 f'"{unknown}"') from exc
            if exc.validator == "type":
                raise _HttpError(400, "BadRequest",
                                 f'{res.kind} in version "{res.version}" cannot be handled as a '
                                 f"{res.kind}: json: cannot unmarshal {where}: {message}") from exc
            raise _HttpError(422, "Invalid", f"{prefix}: {where or '<root>'}: {message}",
                             {"name": obj["metadata"].get("name"), "kind": res.kind}) from exc

    def _custom_schema(self, res: _Resource, obj: dict[str, Any], schema: Mapping[str, Any],
                       prefix: str) -> None:
        """A custom resource against its CRD's own openAPIV3Schema (the served version)."""
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        if not errors:
            return
        exc = errors[0]
        where = ".".join(str(p) for p in exc.absolute_path)
        message = str(exc.message).splitlines()[0]
        if exc.validator == "additionalProperties":
            m = re.search(r"'([^']+)' was unexpected", message)
            unknown = f"{where}.{m.group(1)}" if m and where else (m.group(1) if m else where)
            raise _HttpError(400, "BadRequest",
                             f'{res.kind} in version "{res.version}" cannot be handled as a '
                             f'{res.kind}: strict decoding error: unknown field "{unknown}"')
        raise _HttpError(422, "Invalid", f"{prefix}: {where or '<root>'}: {message}",
                         {"name": obj["metadata"].get("name"), "group": res.group,
                          "kind": res.kind})

    def _register_crd(self, crd: dict[str, Any]) -> None:
        """Serve the CRD's versions and accept its names, as the apiextensions server does
        (conditions NamesAccepted and Established; API reference: CustomResourceDefinition)."""
        self._unregister_crd(crd["metadata"]["name"])
        spec = crd["spec"]
        names = spec["names"]
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            subresources = tuple(sorted((version.get("subresources") or {}).keys()))
            res = _Resource(spec["group"], version["name"], names["plural"],
                            names.get("singular") or names["kind"].lower(), names["kind"],
                            spec.get("scope", "Namespaced") == "Namespaced",
                            tuple(names.get("shortNames") or ()), _RW, subresources)
            key = res.api_version + "/" + res.plural
            self._builtins.pop(key, None)
            self._custom[key] = res
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if isinstance(schema, dict):
                self._crd_schemas[key] = _openapi_to_jsonschema(schema, root=True)
        now = _now_iso()
        crd["status"] = {
            "acceptedNames": {k: v for k, v in names.items() if k != "categories"},
            "storedVersions": [v["name"] for v in spec.get("versions") or []
                               if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now}]}

    def _unregister_crd(self, name: str) -> None:
        for key, res in list(self._custom.items()):
            if res.qualified == name:
                del self._custom[key]
                self._crd_schemas.pop(key, None)

    # -- side effects --------------------------------------------------------------------

    def _after_write(self, res: _Resource, ns: str, obj: Mapping[str, Any]) -> None:
        if res is CRDS:
            assert isinstance(obj, dict)
            self._register_crd(obj)
            return
        if res is not SERVICES:
            return
        name = obj["metadata"]["name"]
        selector = dict(obj.get("spec", {}).get("selector") or {})
        history = self.selector_history.setdefault((ns, name), [])
        if not history or history[-1][1] != selector:
            history.append((time.time(), selector))
        ports = obj.get("spec", {}).get("ports") or []
        if any(p.get("name") == "grpc" for p in ports):
            self._proxy(ns, name)

    def _after_delete(self, res: _Resource, ns: str, name: str) -> None:
        """A CRD's kinds stop being served and its objects go (the proxy of a Service
        refuses connections by itself once the Service is gone)."""
        if res is CRDS:
            self._unregister_crd(name)
            for key in [k for k in self._objects if k[0] == name]:
                del self._objects[key]

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

    # -- the Deployment controller -------------------------------------------------------

    def _controller(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                with self._lock:
                    self._reconcile(time.time())
                    self._reconcile_workloads(time.time())
            except Exception as exc:  # a broken double must be loud, not silently stuck
                print(f"k8s_double {self.name}: controller error: {exc!r}", flush=True)

    def _reconcile(self, now: float) -> None:
        live: dict[str, set[str]] = {}
        for (plural, ns, name), svc in self._objects.items():
            if plural == "services" and not name.endswith("-preview"):
                for selected, _ in self._selected(ns, svc["spec"].get("selector") or {}):
                    live.setdefault(ns, set()).add(selected)
        for (kind, ns, name), obj in list(self._objects.items()):
            if kind != "deployments.apps":
                continue
            dep: dict[str, Any] = obj
            pods = self._pods.setdefault((ns, name), _Pods())
            self._observe(pods, dep, now)
            if pods.to_create:  # the ReplicaSet controller creates them, through admission
                pods.refusal = self._admission_refusal(
                    ns, (dep["spec"].get("template") or {}).get("metadata") or {})
                if pods.refusal is None:
                    pods.pending += [now + pods.create_delay] * pods.to_create
                    pods.to_create = 0
            desired = int(dep["spec"].get("replicas", 1))
            done = [t for t in pods.pending if t <= now]
            if done:
                pods.ready += len(done)
                pods.pending = [t for t in pods.pending if t > now]
            if pods.ready >= desired or desired == 0:
                pods.old_ready = 0
            total = pods.ready + len(pods.pending) + pods.old_ready
            if total > 0 and pods.server is None:
                pods.server = _PodServer(pods.answers).start()
            elif total == 0 and pods.server is not None:
                pods.server.stop()
                pods.server = None
            if name in live.get(ns, set()):
                pods.live_since = pods.live_since or now
            else:
                pods.live_since = None
            if pods.server is not None:
                pods.server.set(self._health(pods, now))
            status = self._status(pods, dep, desired, now)
            if status != dep.get("status"):
                dep["status"] = status
                dep["metadata"]["resourceVersion"] = str(next(self._rv))
                self.status_history.setdefault((ns, name), []).append((now, status))

    # -- admission webhooks --------------------------------------------------------------

    def _admission_refusal(self, ns: str, pod_meta: Mapping[str, Any]) -> str | None:
        """Why the API server refuses to create a pod in ``ns`` with these labels, or None.

        Admission as the API server plays it for registered webhooks (Kubernetes docs,
        "Dynamic Admission Control": https://kubernetes.io/docs/reference/access-authn-authz/
        extensible-admission-controllers/): a webhook of a Mutating- or
        ValidatingWebhookConfiguration is called for a pod CREATE when one of its ``rules``
        matches (operations, apiGroups, apiVersions, resources, with ``*``), its
        ``namespaceSelector`` matches the namespace's labels and its ``objectSelector`` the
        pod's labels (both label selectors; absent or empty match everything). A webhook whose
        Service has no available endpoint cannot be called; with ``failurePolicy: Fail`` (the
        v1 default) "an error calling the webhook causes the admission to fail and the API
        request to be rejected", with ``Ignore`` the pod is created without it. The message is
        the API server's (an InternalError, "failed calling webhook"). The double calls no
        webhook: a reachable one admits the pod unchanged; ``clientConfig.url`` webhooks are
        taken as reachable.
        """
        namespace = self._objects.get(("namespaces", "", ns)) or {}
        ns_labels = (namespace.get("metadata") or {}).get("labels") or {}
        labels = pod_meta.get("labels") or {}
        for (q, _, _), obj in sorted(self._objects.items()):
            if q not in ("mutatingwebhookconfigurations.admissionregistration.k8s.io",
                         "validatingwebhookconfigurations.admissionregistration.k8s.io"):
                continue
            for hook in obj.get("webhooks") or []:
                if not (any(_rule_matches_pod_create(r) for r in hook.get("rules") or [])
                        and _selector_matches(hook.get("namespaceSelector"), ns_labels)
                        and _selector_matches(hook.get("objectSelector"), labels)):
                    continue
                service = (hook.get("clientConfig") or {}).get("service")
                if not service:
                    continue
                problem = self._webhook_service_problem(service)
                if problem is None or hook.get("failurePolicy", "Fail") == "Ignore":
                    continue
                url = (f"https://{service['name']}.{service['namespace']}.svc:"
                       f"{service.get('port', 443)}{service.get('path', '')}"
                       f"?timeout={hook.get('timeoutSeconds', 10)}s")
                return (f'Internal error occurred: failed calling webhook "{hook.get("name")}": '
                        f'failed to call webhook: Post "{url}": {problem}')
        return None

    def _webhook_service_problem(self, service: Mapping[str, Any]) -> str | None:
        svc_ns, svc_name = str(service.get("namespace")), str(service.get("name"))
        svc = self._objects.get(("services", svc_ns, svc_name))
        if svc is None:
            return f'service "{svc_name}" not found'
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not any(pods.ready + pods.old_ready > 0 for _, pods in self._selected(svc_ns,
                                                                                selector)):
            return f'no endpoints available for service "{svc_name}"'
        return None

    def _record_event(self, about: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event about an object, as a controller records it (core/v1 Event); one
        per object and reason, its count bumped when it repeats."""
        meta = about["metadata"]
        ns, name = str(meta.get("namespace", "")), str(meta["name"])
        event_name = f"{name}.{hashlib.sha256(reason.encode()).hexdigest()[:16]}"
        key = ("events", ns, event_name)
        event = self._objects.get(key)
        if event is not None:
            if event.get("message") != message:
                event["message"] = message
                event["count"] = int(event.get("count", 1)) + 1
                event["lastTimestamp"] = _now_iso()
                event["metadata"]["resourceVersion"] = str(next(self._rv))
            return
        self._objects[key] = {
            "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason,
            "message": message, "count": 1, "firstTimestamp": _now_iso(),
            "lastTimestamp": _now_iso(),
            "involvedObject": {"kind": about.get("kind"), "namespace": ns, "name": name,
                               "uid": meta.get("uid")},
            "source": {"component": "statefulset-controller"},
            "metadata": {"name": event_name, "namespace": ns, "uid": str(uuid.uuid4()),
                         "creationTimestamp": _now_iso(),
                         "resourceVersion": str(next(self._rv))}}

    # -- the other controllers the apply waits for ----------------------------------------

    def _set_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if obj.get("status") != status:
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def _reconcile_workloads(self, now: float) -> None:
        """StatefulSets (with their Pods), DaemonSets, Jobs, PersistentVolumeClaims and
        LoadBalancer Services reach the status their controllers report once done (API
        reference: StatefulSetStatus, DaemonSetStatus, JobStatus, PersistentVolumeClaimStatus,
        ServiceStatus). Every pod becomes Running and Ready ``pod_ready_delay`` seconds after
        its workload was written; nothing runs in them."""
        for (q, ns, name), obj in list(self._objects.items()):
            meta = obj["metadata"]
            age = now - self._written_at.get((q, ns, name), 0.0)
            generation = meta.get("generation", 1)
            if q == "statefulsets.apps":
                spec = obj.get("spec") or {}
                replicas = int(spec.get("replicas", 1))
                template = json.dumps(spec.get("template"), sort_keys=True).encode()
                revision = f"{name}-{hashlib.sha256(template).hexdigest()[:10]}"
                created = self._sync_pods(ns, name, obj, replicas, revision,
                                          ready=age >= self.pod_ready_delay)
                ready = created if age >= self.pod_ready_delay else 0
                self._set_status(obj, {
                    "observedGeneration": generation, "replicas": created,
                    "readyReplicas": ready, "currentReplicas": created,
                    "updatedReplicas": created, "availableReplicas": ready,
                    "currentRevision": revision, "updateRevision": revision,
                    "collisionCount": 0})
            elif q == "daemonsets.apps":
                nodes = 3 if age >= self.pod_ready_delay else 0
                self._set_status(obj, {
                    "observedGeneration": generation, "desiredNumberScheduled": 3,
                    "currentNumberScheduled": 3, "numberReady": nodes,
                    "numberAvailable": nodes, "updatedNumberScheduled": 3,
                    "numberMisscheduled": 0, **({"numberUnavailable": 3} if not nodes else {})})
            elif q == "jobs.batch" and age >= self.pod_ready_delay and not (
                    obj.get("status") or {}).get("completionTime"):
                start = _now_iso(now - age)
                self._set_status(obj, {
                    "startTime": start, "completionTime": _now_iso(now), "succeeded": 1,
                    "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True",
                         "reason": "CompletionsReached", "message": "Reached expected number "
                         "of succeeded pods", "lastProbeTime": _now_iso(now),
                         "lastTransitionTime": _now_iso(now)},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods",
                         "lastProbeTime": _now_iso(now), "lastTransitionTime": _now_iso(now)}]})
            elif q == "persistentvolumeclaims":
                spec = obj.get("spec") or {}
                self._set_status(obj, {
                    "phase": "Bound", "accessModes": spec.get("accessModes") or [],
                    "capacity": (spec.get("resources") or {}).get("requests") or {}})
            elif q == "services" and (obj.get("spec") or {}).get("type") == "LoadBalancer":
                index = sum(map(ord, f"{ns}/{name}")) % 250
                self._set_status(obj, {"loadBalancer": {"ingress": [
                    {"ip": f"10.128.0.{index + 2}", "ipMode": "VIP"}]}})
            elif q == "certificates.cert-manager.io":
                self._issue_certificate(ns, obj, now)
            elif q in {"horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy"}:
                status = dict(obj.get("status") or {})
                if status.get("observedGeneration") != generation:
                    status["observedGeneration"] = generation
                    if q == "poddisruptionbudgets.policy":
                        status.update({"currentHealthy": 0, "desiredHealthy": 0,
                                       "disruptionsAllowed": 0, "expectedPods": 0})
                    self._set_status(obj, status)

    def _issue_certificate(self, ns: str, cert: dict[str, Any], now: float) -> None:
        """cert-manager's controller, minimally (a DOUBLE, not cert-manager): a Certificate whose
        issuer (``spec.issuerRef``: an Issuer of its namespace or a ClusterIssuer) exists gets its
        Secret ``spec.secretName`` of type kubernetes.io/tls (tls.crt, tls.key, ca.crt; a
        self-signed key pair for ``spec.dnsNames``; labels of ``spec.secretTemplate``; the
        cert-manager.io/* annotations) and the condition Ready=True; without its issuer, or
        while ``certificates_issued`` is False (an ACME order that does not complete), Ready is
        False as cert-manager reports it (cert-manager.io/v1 CertificateStatus, docs
        "Certificate resource": https://cert-manager.io/docs/usage/certificate/). Nothing is
        asked of any ACME server or DNS."""
        spec = cert.get("spec") or {}
        generation = cert["metadata"].get("generation", 1)
        status = cert.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"),
                     None)
        if ready and ready.get("status") == "True" and ready.get(
                "observedGeneration") == generation:
            return
        ref = spec.get("issuerRef") or {}
        kind, issuer_name = str(ref.get("kind") or "Issuer"), str(ref.get("name"))
        issuer = self._objects.get(("clusterissuers.cert-manager.io", "", issuer_name)
                                   if kind == "ClusterIssuer"
                                   else ("issuers.cert-manager.io", ns, issuer_name))
        stamp = _now_iso(now)
        if issuer is None or not self.certificates_issued:
            message = (f'Referenced "{kind}" not found: {kind.lower()}.cert-manager.io '
                       f'"{ref.get("name")}" not found' if issuer is None
                       else "Issuing certificate as Secret does not exist")
            reason = "Pending" if issuer is None else "DoesNotExist"
            if not ready or ready.get("message") != message:
                self._set_status(cert, {**status, "conditions": [
                    {"type": "Ready", "status": "False", "reason": reason, "message": message,
                     "lastTransitionTime": stamp, "observedGeneration": generation}]})
            return
        names = [str(n) for n in spec.get("dnsNames") or []]
        crt, key = _self_signed(names)
        template = spec.get("secretTemplate") or {}
        secret_name = str(spec.get("secretName"))
        self._objects[("secrets", ns, secret_name)] = {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": secret_name, "namespace": ns, "uid": str(uuid.uuid4()),
                         "creationTimestamp": stamp, "resourceVersion": str(next(self._rv)),
                         "labels": {**(template.get("labels") or {}),
                                    "controller.cert-manager.io/fao": "true"},
                         "annotations": {
                             **(template.get("annotations") or {}),
                             "cert-manager.io/certificate-name": cert["metadata"]["name"],
                             "cert-manager.io/issuer-name": str(ref.get("name")),
                             "cert-manager.io/issuer-kind": kind,
                             "cert-manager.io/issuer-group": str(ref.get("group") or ""),
                             "cert-manager.io/alt-names": ",".join(names)}},
            "data": {"tls.crt": base64.b64encode(crt).decode(),
                     "tls.key": base64.b64encode(key).decode(),
                     "ca.crt": base64.b64encode(crt).decode()}}
        self._set_status(cert, {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                            "message": "Certificate is up to date and has not expired",
                            "lastTransitionTime": stamp, "observedGeneration": generation}],
            "notBefore": stamp, "notAfter": _now_iso(now + 90 * 86400),
            "renewalTime": _now_iso(now + 60 * 86400),
            "revision": int(status.get("revision", 0)) + 1})

    def _sync_pods(self, ns: str, owner: str, sts: Mapping[str, Any], replicas: int,
                   revision: str, *, ready: bool) -> int:
        """Create, update and delete the pods of a StatefulSet; the number that exist."""
        template = (sts.get("spec") or {}).get("template") or {}
        created = replicas
        for i in range(replicas):
            key = ("pods", ns, f"{owner}-{i}")
            pod = self._objects.get(key)
            if pod is None:
                refusal = self._admission_refusal(ns, template.get("metadata") or {})
                if refusal is not None:  # the controller records it and retries later
                    self._record_event(sts, "FailedCreate", f"create Pod {owner}-{i} in "
                                       f"StatefulSet {owner} failed error: {refusal}")
                    created = i
                    break
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    **copy.deepcopy(template.get("metadata") or {}), "name": f"{owner}-{i}",
                    "namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _now_iso(),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": owner, "uid": sts["metadata"]["uid"],
                                         "controller": True, "blockOwnerDeletion": True}],
                    "resourceVersion": str(next(self._rv))},
                    "spec": copy.deepcopy(template.get("spec") or {}), "status": {}}
                pod["metadata"].setdefault("labels", {}).update({
                    "apps.kubernetes.io/pod-index": str(i),
                    "statefulset.kubernetes.io/pod-name": f"{owner}-{i}",
                    "controller-revision-hash": revision})
                self._objects[key] = pod
            state = "True" if ready else "False"
            containers = [c.get("name", "") for c in (pod["spec"].get("containers") or [])]
            self._set_status(pod, {
                "phase": "Running", "podIP": f"10.4.0.{10 + i}", "hostIP": "10.16.0.2",
                "startTime": pod["metadata"]["creationTimestamp"],
                "conditions": [{"type": t, "status": state if t in ("Ready", "ContainersReady")
                                else "True", "lastTransitionTime": _now_iso()}
                               for t in ("PodScheduled", "Initialized", "ContainersReady",
                                         "Ready")],
                "containerStatuses": [{"name": c, "ready": ready, "restartCount": 0,
                                       "started": True, "image": "", "imageID": "",
                                       "state": {"running": {"startedAt": _now_iso()}}}
                                      for c in containers]})
        for key in [k for k in self._objects if k[0] == "pods" and k[1] == ns
                    and k[2].startswith(owner + "-") and k[2][len(owner) + 1:].isdigit()
                    and int(k[2][len(owner) + 1:]) >= replicas]:
            del self._objects[key]
        return created

    def _observe(self, pods: _Pods, dep: Mapping[str, Any], now: float) -> None:
        generation = int(dep["metadata"].get("generation", 1))
        if generation == pods.generation:
            return
        if pods.seen_generation != generation:
            pods.seen_generation, pods.seen_at = generation, now
        if now - pods.seen_at < self.observe_delay:
            return
        spec = dep["spec"]
        template = json.dumps(spec.get("template"), sort_keys=True)
        containers = spec.get("template", {}).get("spec", {}).get("containers") or [{}]
        image = str(containers[0].get("image", ""))
        desired = int(spec.get("replicas", 1))
        beh = self.behaviour(image)
        delay = beh.ready_delay if beh.ready_delay is not None else self.ready_delay
        ready_at = now + delay if beh.available else math.inf
        pods.create_delay = ready_at - now
        if template != pods.template:
            pods.old_ready += pods.ready
            pods.old_image = pods.image or image
            pods.ready, pods.pending, pods.to_create = 0, [], desired
            pods.template, pods.image = template, image
            pods.progress_started = now
        else:
            current = pods.ready + len(pods.pending) + pods.to_create
            if desired > current:
                pods.to_create += desired - current
                pods.progress_started = now
            elif desired < current:
                extra = current - desired
                for_create = min(extra, pods.to_create)
                pods.to_create -= for_create
                extra -= for_create
                drop = min(extra, len(pods.pending))
                pods.pending = pods.pending[: len(pods.pending) - drop]
                pods.ready -= extra - drop
        pods.generation = generation

    def _health(self, pods: _Pods, now: float) -> str:
        image = pods.image if pods.ready > 0 or not pods.old_image else pods.old_image
        beh = self.behaviour(image)
        status = beh.health
        if beh.flap_period and int(now / beh.flap_period) % 2:
            status = NOT_SERVING
        if (beh.fail_after is not None and pods.live_since is not None
                and now - pods.live_since >= beh.fail_after):
            status = NOT_SERVING
        return status

    def _condition(self, pods: _Pods, kind: str, status: str, *, reason: str, message: str,
                   now: float) -> dict[str, str]:
        previous = pods.conditions.get(kind)
        stamp = _now_iso(now)
        if previous and previous["status"] == status and previous["reason"] == reason:
            cond = dict(previous)
            if previous["message"] != message:
                cond.update({"message": message, "lastUpdateTime": stamp})
        else:
            cond = {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp if not previous or previous["status"] != status
                    else previous["lastTransitionTime"]}
        pods.conditions[kind] = cond
        return cond

    def _status(self, pods: _Pods, dep: Mapping[str, Any], desired: int,
                now: float) -> dict[str, Any]:
        name = dep["metadata"]["name"]
        rs = f"{name}-{abs(hash(pods.template)) % 10 ** 10:010d}"[:63]
        available = pods.ready + pods.old_ready
        updated = pods.ready + len(pods.pending)
        total = updated + pods.old_ready
        status: dict[str, Any] = {"observedGeneration": pods.generation}
        for key, value in (("replicas", total), ("updatedReplicas", updated),
                           ("readyReplicas", available), ("availableReplicas", available),
                           ("unavailableReplicas", max(0, total - available))):
            if value:
                status[key] = value  # the API server omits zero counts
        ok = available >= desired
        conds = [self._condition(pods, "Available", "True" if ok else "False",
                                 reason="MinimumReplicasAvailable" if ok else
                                 "MinimumReplicasUnavailable",
                                 message="Deployment has minimum availability." if ok else
                                 "Deployment does not have minimum availability.", now=now)]
        deadline = int(dep["spec"].get("progressDeadlineSeconds", 600))
        if (pods.pending or pods.to_create) and now - pods.progress_started > deadline:
            conds.append(self._condition(pods, "Progressing", "False",
                                         reason="ProgressDeadlineExceeded",
                                         message=f'ReplicaSet "{rs}" has timed out progressing.',
                                         now=now))
        elif not pods.pending and not pods.to_create and pods.old_ready == 0:
            conds.append(self._condition(pods, "Progressing", "True",
                                         reason="NewReplicaSetAvailable",
                                         message=f'ReplicaSet "{rs}" has successfully '
                                                 'progressed.', now=now))
        else:
            conds.append(self._condition(pods, "Progressing", "True", reason="ReplicaSetUpdated",
                                         message=f'ReplicaSet "{rs}" is progressing.', now=now))
        if pods.to_create and pods.refusal:
            # The ReplicaSet's ReplicaFailure condition, which the Deployment controller copies
            # onto the Deployment (API reference: DeploymentCondition; the message is the error
            # the pod creation met).
            conds.append(self._condition(pods, "ReplicaFailure", "True", reason="FailedCreate",
                                         message=pods.refusal, now=now))
        else:
            pods.conditions.pop("ReplicaFailure", None)
        status["conditions"] = conds
        return status


def _kind(kind: str) -> _Resource:
    """The stored kind of a kind name ("Deployment", "deployments", "ScaledObject", ...)."""
    key = kind.lower()
    res = _BY_KIND.get(key) or _BY_PLURAL.get(key)
    if res is None:
        raise LookupError(f"the test double stores no {kind}")
    return res


def _label_problems(labels: Any, where: str) -> list[str]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [f"{where}: Invalid value: must be a map"]
    out = []
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if not _LABEL_NAME.match(name) or len(name) > 63:
            out.append(f"{where}: Invalid value: {key!r}: name part must consist of "
                       "alphanumeric characters, '-', '_' or '.'")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            out.append(f"{where}: Invalid value: {value!r}: a valid label must be an empty "
                       "string or consist of alphanumeric characters, '-', '_' or '.'")
    return out


def _rule_matches_pod_create(rule: Mapping[str, Any]) -> bool:
    """A webhook rule (admissionregistration/v1 RuleWithOperations) that covers pod CREATE."""
    def has(key: str, value: str) -> bool:
        return any(v in (value, "*") for v in rule.get(key) or [])
    return (has("operations", "CREATE") and has("apiGroups", "") and has("apiVersions", "v1")
            and any(r in ("pods", "*", "*/*") for r in rule.get("resources") or [])
            and rule.get("scope", "*") in ("*", "Namespaced"))


def _selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions with In, NotIn, Exists,
    DoesNotExist) against labels; an absent or empty selector matches everything."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _parse_selector(text: str) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), "!=", v.strip()))
        elif "==" in part or "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            out.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            out.append((part[1:], "!", None))
        else:
            out.append((part, "exists", None))
    return out


def _matches(selector: list[tuple[str, str, str | None]], values: Mapping[str, str]) -> bool:
    for key, op, value in selector:
        if (op == "=" and values.get(key) != value) or (op == "!=" and values.get(key) == value) \
                or (op == "exists" and key not in values) or (op == "!" and key in values):
            return False
    return True


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (helm and kubectl close idle keep-alive connections) is
        not an error of the double; anything else is printed as usual."""
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    double: KubeApiDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.double.handle(self, "GET")

    def do_POST(self) -> None:
        self.double.handle(self, "POST")

    def do_PUT(self) -> None:
        self.double.handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.double.handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.double.handle(self, "DELETE")
