"""Suite-wide pytest hooks."""

from __future__ import annotations

import pytest


def _cost(item: pytest.Item) -> int:
    if item.get_closest_marker("rehearsal"):
        return 0
    if item.get_closest_marker("playbook"):
        return 1
    return 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding the slowest tests first: a rehearsal, then ansible-playbook end to end.

    `pytest -n 2 --dist loadfile --no-loadscope-reorder` (scripts/test) hands whole files to
    the two workers in this order, so the long files start first and both workers end
    together. The sort is stable: each file keeps its tests in their order (the numbered Vault
    suites share a server and run in order), and files of the same cost keep theirs.
    """
    cost: dict[str, int] = {}
    for item in items:
        cost[str(item.path)] = min(cost.get(str(item.path), 2), _cost(item))
    items.sort(key=lambda item: cost[str(item.path)])
