"""How the Kubernetes API TEST DOUBLE stores objects: create, update, list, resourceVersion.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). Like the API server: the server's
fields are set on create, every stored object is defaulted for the fields that matter here and
validated (validation.py); resourceVersion is bumped on every real change (not on no-op
updates), a write carrying a stale ``metadata.resourceVersion`` is refused with 409 Conflict and
the real message; ``metadata.generation`` is bumped when the spec changes; lists filter by label
and field selectors. A write then has its side effects: a CRD serves its kinds (kinds.py), a
Service's selector is recorded and its gRPC port gets its kube-proxy (kube_proxy.py).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .behaviour import image_tag
from .common import _HttpError, _now_iso
from .kinds import ServedKinds
from .kube_proxy import KubeProxy
from .resources import (
    _NO_GENERATION,
    _NO_STATUS,
    CRDS,
    DEPLOYMENTS,
    NAMESPACES,
    SERVICES,
    _Resource,
)
from .validation import Validation


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


class Store(ServedKinds, Validation, KubeProxy):
    """The stored objects and every write to them."""

    # -- lists ---------------------------------------------------------------------------

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

    # -- a controller's status write -----------------------------------------------------

    def _set_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if obj.get("status") != status:
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
