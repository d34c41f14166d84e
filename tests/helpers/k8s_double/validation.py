"""What the Kubernetes API TEST DOUBLE refuses in an object, as the API server would.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). Its rules come from authoritative
sources, never from the project's code: kubernetes-validate's schemas of the same Kubernetes
minor in strict mode (unknown or mistyped fields are answered 400 BadRequest, "strict decoding
error", what a real server says under ``fieldValidation=Strict``; the double is always strict;
other schema violations 422 Invalid, both with a Status body), a CRD's own openAPIV3Schema for
its custom resources, and what the server's own validation refuses beyond the schemas
(selector/template label mismatch, immutable selector and clusterIP, label syntax, names, a
CRD's name and storage version). KEDA ScaledObjects without their CRD are checked only
structurally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate

from .common import _HttpError
from .resources import CRDS, DEPLOYMENTS, SCALEDOBJECTS, SERVICES, _Resource
from .state import DoubleState

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


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


class Validation(DoubleState):
    """The API server's validation of every object written."""

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
                raise _unknown_field(res, where, message) from exc
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
            raise _unknown_field(res, where, message)
        raise _HttpError(422, "Invalid", f"{prefix}: {where or '<root>'}: {message}",
                         {"name": obj["metadata"].get("name"), "group": res.group,
                          "kind": res.kind})


def _unknown_field(res: _Resource, where: str, message: str) -> _HttpError:
    """The 400 of a strict decoding error: what the API server answers, under
    fieldValidation=Strict, for a field the schema does not have."""
    m = re.search(r"'([^']+)' was unexpected", message)
    unknown = f"{where}.{m.group(1)}" if m and where else (m.group(1) if m else where)
    return _HttpError(400, "BadRequest",
                      f'{res.kind} in version "{res.version}" cannot be handled as a '
                      f'{res.kind}: strict decoding error: unknown field "{unknown}"')
