"""Delete from a cluster the objects that a role's plan no longer contains.

Only objects this project applied itself are candidates: those carrying its ownership labels
(``app.kubernetes.io/managed-by: tai-deploy`` and ``tai-deploy.io/role: <role>``; each cluster
serves one region, so the role label is what tells two owners apart). Objects of Helm releases
carry ``managed-by: Helm`` and are never touched; neither is anything an operator created.

Kinds are resolved through the API's discovery documents (``/api/v1``, ``/apis/<group>/
<version>``), the way kubectl does, so a kind whose CRD is not installed is simply absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .k8s_api import ApiError, KubeClient
from .manifests import load_documents, object_ref

ROLE_LABEL = "tai-deploy.io/role"
MANAGED_BY = "app.kubernetes.io/managed-by"


class PruneError(ValueError):
    """A prune that cannot be planned; the message is for the operator."""


@dataclass(frozen=True)
class Candidate:
    ref: str
    path: str
    body: dict[str, Any]


def owner_selector(role: str) -> dict[str, str]:
    return {MANAGED_BY: "tai-deploy", ROLE_LABEL: role}


def _base(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def resource_of(client: KubeClient, api_version: str, kind: str) -> tuple[str, bool] | None:
    """(plural, namespaced) of a kind from discovery; None when the API does not serve it."""
    try:
        doc = client.get(_base(api_version))
    except ApiError as exc:
        if exc.not_found:
            return None
        raise
    for res in doc.get("resources") or []:
        if res.get("kind") == kind and "/" not in str(res.get("name", "")):
            return str(res["name"]), bool(res.get("namespaced"))
    return None


def planned_refs(manifest_dirs: Iterable[str | Path]) -> set[str]:
    """The refs (Kind/namespace/name) of every manifest in the plan folders."""
    refs: set[str] = set()
    for folder in manifest_dirs:
        root = Path(folder)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.yaml")):
            refs.update(object_ref(obj) for obj in load_documents(path.read_text()))
    return refs


def find(client: KubeClient, kinds: Sequence[Mapping[str, str]], selector: Mapping[str, str],
         keep: set[str]) -> list[Candidate]:
    """Objects of ``kinds`` labelled ``selector`` whose ref is not in ``keep``."""
    if not selector.get(MANAGED_BY) or not selector.get(ROLE_LABEL):
        raise PruneError(f"a prune selects on both {MANAGED_BY} and {ROLE_LABEL}; refusing a "
                         f"selector without them ({dict(selector)})")
    label = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    out: list[Candidate] = []
    for item in kinds:
        api_version, kind = str(item["apiVersion"]), str(item["kind"])
        found = resource_of(client, api_version, kind)
        if found is None:
            continue
        plural, _ = found
        listing = client.get(f"{_base(api_version)}/{plural}", {"labelSelector": label})
        for listed in listing.get("items") or []:
            obj = {"apiVersion": api_version, "kind": kind, **listed}
            meta = obj.get("metadata") or {}
            labels = meta.get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue  # the server's selector is authoritative; this guards a sloppy one
            ref = object_ref(obj)
            if ref in keep:
                continue
            ns = meta.get("namespace")
            path = (f"{_base(api_version)}/namespaces/{ns}/{plural}/{meta['name']}" if ns
                    else f"{_base(api_version)}/{plural}/{meta['name']}")
            out.append(Candidate(ref, path, obj))
    return sorted(out, key=lambda c: c.ref)


def delete(client: KubeClient, candidates: Iterable[Candidate]) -> list[str]:
    """Delete each candidate (an object already gone counts as deleted)."""
    done: list[str] = []
    for c in candidates:
        try:
            client.request("DELETE", c.path, body={"kind": "DeleteOptions", "apiVersion": "v1",
                                                   "propagationPolicy": "Background"})
        except ApiError as exc:
            if not exc.not_found:
                raise
        done.append(c.ref)
    return done
