"""Fixtures of the end-to-end tests: playbooks and roles run through ansible-playbook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.bluegreen_env import BlueGreenLab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[BlueGreenLab]:
    """Three regions of Kubernetes API test doubles seeded like the chart (blue at v1.0.0)."""
    with BlueGreenLab(tmp_path / "lab") as running:
        yield running
