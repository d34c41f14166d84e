"""Kubernetes manifests: split, name and validate them offline.

Core kinds are checked with kubernetes-validate in strict mode against the schemas of the
pinned Kubernetes minor version. Custom resources of Istio, Prometheus Operator, KEDA and
cert-manager are checked against their projects' CRD schemas (crd_schemas.py, from the
cloudcoil-models-* packages). Other custom resources have no schema offline; they get the
structural checks that every object must pass and are reported as ``structural`` so that nobody
mistakes them for schema-validated objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .crd_schemas import CrdSchemaError, known_group
from .crd_schemas import problems as crd_problems

# API groups whose kinds kubernetes-validate knows (core and built-in groups).
_BUILTIN_GROUP = re.compile(
    r"^(v1|(apps|batch|policy|autoscaling|networking\.k8s\.io|rbac\.authorization\.k8s\.io|"
    r"storage\.k8s\.io|scheduling\.k8s\.io|coordination\.k8s\.io|discovery\.k8s\.io|"
    r"admissionregistration\.k8s\.io|apiextensions\.k8s\.io|certificates\.k8s\.io|"
    r"node\.k8s\.io|flowcontrol\.apiserver\.k8s\.io|apiregistration\.k8s\.io)/[a-z0-9]+)$"
)
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class ManifestProblem:
    """One reason why one object would be refused."""

    ref: str
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}"


@dataclass
class ValidationReport:
    schema_validated: int = 0
    structural_only: list[str] = field(default_factory=list)
    # custom resources checked against an upstream CRD schema: "<ref> (<package> <version>)"
    crd_validated: list[str] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def is_builtin(api_version: str) -> bool:
    return bool(_BUILTIN_GROUP.match(api_version))


def object_ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<unnamed>")
    kind = obj.get("kind", "<no kind>")
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


def load_documents(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML stream (e.g. `helm template` output), dropping empties."""
    docs: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"a YAML document is a {type(doc).__name__}, not a mapping")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            docs.extend(d for d in doc["items"] if isinstance(d, dict))
        else:
            docs.append(doc)
    return docs


def manifest_path(obj: Mapping[str, Any]) -> str:
    """Where an object is written in a bundle: <namespace or _cluster>/<kind>-<name>.yaml."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or "_cluster"
    kind = str(obj.get("kind", "object")).lower()
    name = str(meta.get("name", "unnamed"))
    return f"{ns}/{kind}-{name}.yaml"


def _structural_problems(obj: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if not isinstance(obj.get("apiVersion"), str) or not obj.get("apiVersion"):
        out.append("apiVersion is missing")
    if not isinstance(obj.get("kind"), str) or not obj.get("kind"):
        out.append("kind is missing")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        out.append("metadata is missing")
        return out
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS1123.match(name):
        out.append(f"metadata.name {name!r} is not a valid DNS-1123 name")
    for key in ("labels", "annotations"):
        values = meta.get(key) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            out.append(f"metadata.{key} values must all be strings")
    return out


def _schema_problem(obj: Mapping[str, Any], version: str) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        msg = str(exc.message).splitlines()[0]
        return f"{msg} (at {path})" if path else msg
    except kubernetes_validate.SchemaNotFoundError:
        return f"no schema for {obj.get('apiVersion')} {obj.get('kind')} in Kubernetes {version}"
    except kubernetes_validate.utils.VersionNotSupportedError:
        return f"kubernetes-validate has no schemas for Kubernetes {version}"
    return None


def validate_objects(objects: Iterable[Mapping[str, Any]], version: str) -> ValidationReport:
    """Validate every object; never raises for bad input, reports it instead."""
    report = ValidationReport()
    seen: set[str] = set()
    for obj in objects:
        ref = object_ref(obj)
        if ref in seen:
            report.problems.append(ManifestProblem(ref, "defined twice in the same bundle"))
        seen.add(ref)
        problems = _structural_problems(obj)
        if problems:
            report.problems.extend(ManifestProblem(ref, p) for p in problems)
            continue
        if is_builtin(str(obj["apiVersion"])):
            problem = _schema_problem(obj, version)
            if problem:
                report.problems.append(ManifestProblem(ref, problem))
            else:
                report.schema_validated += 1
        elif known_group(str(obj["apiVersion"])):
            try:
                found, src = crd_problems(obj)
            except CrdSchemaError as exc:
                report.problems.append(ManifestProblem(ref, str(exc)))
                continue
            report.problems.extend(ManifestProblem(ref, p) for p in found)
            if not found:
                report.schema_validated += 1
                report.crd_validated.append(f"{ref} ({src})")
        else:
            report.structural_only.append(ref)
    return report
