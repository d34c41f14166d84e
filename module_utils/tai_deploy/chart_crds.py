"""The CRDs of a pinned chart version, to apply them explicitly.

Helm installs the files of a chart's ``crds/`` folder on the first install only and never
upgrades or deletes them (Helm's documentation, "Custom Resource Definitions": "There is no
support at this time for upgrading or deleting CRDs using Helm"). kube-prometheus-stack keeps
Prometheus Operator's CRDs there, so a chart bump would leave the old CRDs in place and the new
operator would meet fields its CRDs do not know. Apply mode reads them with ``helm show crds``
at the pinned version and sends them with server-side apply before ``helm upgrade``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .manifests import validate_objects

CRD_API = "apiextensions.k8s.io/v1"


class ChartCrdError(ValueError):
    """The chart's crds/ folder holds something that is not a valid CRD."""


def show_crds_argv(helm: str, spec: Mapping[str, Any]) -> list[str]:
    """``helm show crds`` of a release spec (releases/<name>.yaml): an HTTP chart repository
    with --repo, or an OCI registry as oci://<registry>/<chart>."""
    repo, chart, version = str(spec["repository"]), str(spec["chart"]), str(spec["version"])
    if repo.startswith("oci://"):
        return [helm, "show", "crds", f"{repo.rstrip('/')}/{chart}", "--version", version]
    return [helm, "show", "crds", chart, "--repo", repo, "--version", version]


def chart_crds(text: str, release: str, kubernetes_version: str) -> list[dict[str, Any]]:
    """The CRDs printed by ``helm show crds``, each checked with kubernetes-validate."""
    try:
        docs = [d for d in yaml.safe_load_all(text or "") if d]
    except yaml.YAMLError as exc:
        raise ChartCrdError(f"the CRDs of release {release} are not valid YAML: "
                            f"{str(exc).splitlines()[0]}") from exc
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("apiVersion") != CRD_API or \
                doc.get("kind") != "CustomResourceDefinition":
            kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            raise ChartCrdError(f"the crds/ folder of release {release} holds a {kind}, not a "
                                f"{CRD_API} CustomResourceDefinition")
        out.append(doc)
    report = validate_objects(out, kubernetes_version)
    if report.problems:
        raise ChartCrdError(f"the CRDs of release {release} would be refused by Kubernetes "
                            f"{kubernetes_version}: " + "; ".join(map(str, report.problems[:5])))
    return out
