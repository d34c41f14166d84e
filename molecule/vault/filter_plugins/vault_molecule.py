# Copyright: tai-deploy contributors
"""Filter of the vault scenario: the service secrets an inventory's encrypted vars would give.

``tai_service_names | vault_molecule_service_secrets`` is ``{service: {"api_key": ...}}`` for
every service of group_vars/all/services.yml, so that converge and verify send and compare the
same secrets and a service added to that list is covered without editing the scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def vault_molecule_service_secrets(services: Iterable[str]) -> dict[str, dict[str, str]]:
    return {name: {"api_key": f"molecule-{name}-key"} for name in services}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"vault_molecule_service_secrets": vault_molecule_service_secrets}
