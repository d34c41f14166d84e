"""How CI's `pytest -n 2 --dist loadgroup` shares the tests between its two workers.

Loaded with ``-p helpers.distribution`` (scripts/test). ``--dist loadfile`` kept every file on
one worker, so a file of slow playbook runs (the analysis gates: each test starts its own lab,
gRPC fleet and Prometheus) ran alone on one worker while the other finished early. Here:

- a test that uses a fixture shared by several tests (scope module, class or package) stays
  with the other tests of its file, in one group, so the fixture is set up once;
- a test whose fixtures are all its own goes to whichever worker is free;
- an explicit ``pytest.mark.xdist_group`` is kept;
- the heaviest units are handed out first (tests marked ``playbook`` count ten times a plain
  test), so that the two workers finish together. Run with ``--no-loadscope-reorder``, which
  keeps this order (xdist would otherwise sort the groups by their number of tests).

Outside ``--dist loadgroup`` this plugin changes nothing.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

SHARED_SCOPES = {"module", "class", "package"}
PLAYBOOK_WEIGHT = 10


def _shares_a_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return True
    return any(defs and defs[-1].scope in SHARED_SCOPES
               for defs in info.name2fixturedefs.values())


def _weight(item: pytest.Item) -> int:
    return PLAYBOOK_WEIGHT if item.get_closest_marker("playbook") else 1


def _unit(item: pytest.Item) -> str:
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return item.nodeid
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))


def _loadgroup(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") == "loadgroup"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests that share a fixture (before xdist names the groups by their marks)."""
    if not _loadgroup(config):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None and _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def heaviest_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heaviest units first, once pytest has ordered the tests by their fixtures."""
    if not _loadgroup(config):
        return
    units: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        units[_unit(item)].append(item)
    # sorted() is stable: units of equal weight keep pytest's order, and so do a unit's tests.
    ordered = sorted(units.values(), key=lambda unit: -sum(_weight(i) for i in unit))
    items[:] = [item for unit in ordered for item in unit]
