"""The kinds the Kubernetes API TEST DOUBLE serves: the built-ins and those CRDs register.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). Applying a CustomResourceDefinition
serves its versions and keeps its openAPIV3Schema, as a strict JSON Schema, to validate its
objects (validation.py), as the apiextensions server does; deleting it stops serving them.
"""

from __future__ import annotations

from typing import Any

from .common import _now_iso
from .resources import _RW, _Resource
from .state import DoubleState


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


class ServedKinds(DoubleState):
    """Every kind served, and the CRDs that add kinds."""

    # -- resources -----------------------------------------------------------------------

    def resources(self) -> list[_Resource]:
        """Every kind served: the built-ins and the served versions of the applied CRDs."""
        return [*self._builtins.values(), *self._custom.values()]

    def _resource(self, api_version: str, plural: str) -> _Resource | None:
        for res in self.resources():
            if res.api_version == api_version and res.plural == plural:
                return res
        return None

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
