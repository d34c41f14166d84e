# Copyright: tai-deploy contributors
"""Filter of the namespaces role: the region's effective namespace definitions.

Role defaults and the inventory's definitions combined in one place (recursively, as
Ansible's combine does); an entry with ``state: absent`` leaves the plan. The Namespace
objects themselves are built by tai_namespace_manifests (plugins/filter/tai_bodies.py).
Pure function; tests import it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Ansible's combine(recursive=true): mappings merged, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def tai_namespace_definitions(defaults: Mapping[str, Any],
                              overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``defaults`` with ``overrides`` laid over them, without the entries marked absent."""
    merged = _merge(defaults, overrides or {})
    out: dict[str, Any] = {}
    for name, ns in merged.items():
        entry = ns or {}
        if isinstance(entry, Mapping) and entry.get("state", "present") == "absent":
            continue
        out[name] = entry
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_namespace_definitions": tai_namespace_definitions}
