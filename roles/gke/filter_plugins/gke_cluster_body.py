# Copyright: tai-deploy contributors
"""Filters gke_cluster_body, gke_plan_files and gke_input_problems of the gke role.

Thin wrappers over the typed cores module_utils/tai_deploy/gke_body.py and gke_checks.py (the
tests import those directly). Filters run on the controller, where Ansible
does not put the project's module_utils on the import path, so the folder is added from this
file's location.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_MODULE_UTILS = Path(__file__).resolve().parents[3] / "module_utils"
if str(_MODULE_UTILS) not in sys.path:
    sys.path.insert(0, str(_MODULE_UTILS))

from tai_deploy import gke_body, gke_checks  # noqa: E402


def gke_cluster_body(values: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 Cluster object (with node pools) of one region."""
    return gke_body.cluster_body(values)


def gke_plan_files(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """cluster.json and one node-pools/<pool>.json per pool, for tai_bundle."""
    return gke_body.node_pool_files(cluster)


def gke_input_problems(values: Mapping[str, Any], region: str) -> list[str]:
    """One sentence per unusable hardened-cluster input of the region."""
    return gke_checks.problems(region, values)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"gke_cluster_body": gke_cluster_body, "gke_plan_files": gke_plan_files,
                "gke_input_problems": gke_input_problems}
