"""Where helm fetches a third-party chart: its upstream repository, or the operator's mirror.

Behind a firewall the platform's charts come from an internal chart repository (a static
``index.yaml`` served over HTTP(S), such as ChartMuseum, Harbor, Artifactory or a bucket) or an
OCI registry. ``tai_chart_mirror`` names it once for every release; the chart names and the
pinned versions stay those of ``tai_charts``, so a mirror must hold the same charts at the same
versions (``helm pull`` from upstream, then ``helm push`` or an index rebuild).

- empty: each release comes from its own ``repository`` (``helm install --repo URL CHART``);
- ``http://`` or ``https://`` URL: a chart repository, ``--repo MIRROR CHART``;
- ``oci://host[/path]``: an OCI registry, ``oci://host/path/CHART`` (Helm's OCI references,
  https://helm.sh/docs/topics/registries/), with no ``--repo``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_PATH = re.compile(r"^[-A-Za-z0-9._~/]*$")


def mirror_problems(value: Any, where: str = "tai_chart_mirror") -> list[str]:
    """One sentence when the mirror cannot name a chart repository or an OCI registry."""
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        return [f"{where} must be a chart repository URL (https://...) or an OCI registry "
                f"(oci://host/path), got {type(value).__name__} {value!r}."]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "oci") or not parts.netloc:
        return [f"{where} must be a chart repository URL (https://...) or an OCI registry "
                f"(oci://host/path), got {value!r}."]
    if (not _HOST.match(parts.netloc) or not _PATH.match(parts.path) or parts.query
            or parts.fragment):
        return [f"{where} must be a plain URL without credentials, query or fragment (helm "
                f"reads credentials from its registry and repository configuration), got "
                f"{value!r}."]
    return []


def chart_source(spec: Mapping[str, Any], mirror: str = "") -> dict[str, str]:
    """``chart_ref`` and ``repo_url`` (empty for OCI) of one planned release."""
    chart = str(spec["chart"])
    source = (mirror or str(spec["repository"])).rstrip("/")
    if source.startswith("oci://"):
        return {"chart_ref": f"{source}/{chart}", "repo_url": ""}
    return {"chart_ref": chart, "repo_url": source}
