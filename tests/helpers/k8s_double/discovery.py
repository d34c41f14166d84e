"""The discovery documents of the Kubernetes API TEST DOUBLE: /version, /api, /apis, OpenAPI v3.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). Legacy discovery documents only
(aggregated discovery is not offered, so clients fall back to the legacy form as they do with
older servers), listing the built-in kinds and those the applied CRDs serve.
"""

from __future__ import annotations

import re
from typing import Any

from .kinds import ServedKinds
from .resources import NAMESPACES


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA before beta before alpha, then by number
    (API reference: CustomResourceDefinition versions, "Version priority")."""
    m = re.match(r"^v([0-9]+)(?:(alpha|beta)([0-9]+))?$", version)
    if m is None:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


class Discovery(ServedKinds):
    """What clients read to learn which kinds and verbs are served."""

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
