"""Fixtures of the tests that import the typed cores (module_utils/tai_deploy) directly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.bluegreen_env import NAMESPACE, SERVICES, chart_objects
from helpers.k8s_double import KubeApiDouble


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    """One Kubernetes API test double seeded like the chart: every service's blue slot at
    v1.0.0, available."""
    with KubeApiDouble(ready_delay=0.1, observe_delay=0.02) as d:
        for name, port in SERVICES.items():
            d.seed(*chart_objects(name, port))
        d.wait_for(lambda: all(
            (d.find("Deployment", NAMESPACE, f"{s}-blue") or {}).get("status", {}).get(
                "availableReplicas") == 3 for s in SERVICES))
        yield d
