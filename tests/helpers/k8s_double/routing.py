"""The routing of the Kubernetes API TEST DOUBLE: a request's method and path to what answers.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). ``_route`` resolves a resource path
(``/api/v1/...`` or ``/apis/{group}/{version}/...``, namespaced or not, with a name and a
subresource) to a served kind; ``_dispatch`` sends a request to discovery (discovery.py), to a
list, a create or a collection delete of the store (store.py), or to ``_item``: the verbs on
one object (GET, PUT, PATCH in the formats of patches.py, DELETE), its ``status`` and
``scale`` subresources. The HTTP front end that calls ``_dispatch`` (authentication, body
decoding, faults, watches, the answer) is server.py.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .common import _HttpError
from .discovery import Discovery
from .patches import APPLY_PATCH, apply_patch, json_patch, merge_patch, strategic_merge_patch
from .resources import NAMESPACES, _Resource
from .store import Store

_COLLECTION = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


class Routing(Store, Discovery):
    """Which part of the double answers a request."""

    # -- resource paths ------------------------------------------------------------------

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
