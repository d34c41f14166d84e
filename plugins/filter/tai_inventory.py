# Copyright: tai-deploy contributors
"""Filters of the validation play: the inventory variables its check receives, picked by name.

``hostvars[inventory_hostname] | tai_host_variables(names)`` is ``{name: value}`` for every
name, ``None`` for a variable the host does not define (so that the check names it rather than
the play failing on the undefined variable). ``hostvars | tai_hosts_variables(hosts, names)``
is the same for each of ``hosts`` (the cross-region rules: geo locations, load balancer
addresses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def tai_host_variables(host_vars: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    # hostvars templates a value when it is read (Mapping.get reads it through __getitem__).
    return {name: host_vars.get(name) for name in names}


def tai_hosts_variables(hostvars: Mapping[str, Any], hosts: Iterable[str],
                        names: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(names)
    return {host: tai_host_variables(hostvars[host], wanted) for host in hosts}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_host_variables": tai_host_variables,
                "tai_hosts_variables": tai_hosts_variables}
