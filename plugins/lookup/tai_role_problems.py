# Copyright: tai-deploy contributors
"""Lookup tai_role_problems: one sentence per problem of a role's inputs in this region.

The rules live in module_utils/tai_deploy/inventory.py (one place for every range, cross-field
and cross-region rule). The validation play runs them for every role in one module call; a
role's own check task runs this lookup so that the role refuses bad input on its own too
(molecule scenarios, tests that apply one role). A lookup runs in the controller's process:
no module start-up cost.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: tai_role_problems
short_description: Problems of a role's inputs, one sentence each
description:
  - Evaluates the role's inputs (see the tai_role_inputs lookup) and returns the sentences of
    module_utils/tai_deploy/inventory.py for that role; an empty list when all is well.
options:
  _terms:
    description: One role name.
    required: true
  exclude:
    description:
      - Inputs left out of the check, as if they were not set (a role whose step after the
        check validates them itself, as the tai_services chart does with its values).
    type: list
    elements: str
    default: []
"""

RETURN = r"""
_raw:
  description: Sentences, one per problem.
  type: list
  elements: str
"""

import sys
from pathlib import Path
from typing import Any

from ansible.plugins.loader import lookup_loader
from ansible.plugins.lookup import LookupBase

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.inventory import Context, role_problems


class LookupModule(LookupBase):  # type: ignore[misc]
    def run(self, terms: list[str], variables: Any = None, **kwargs: Any) -> list[Any]:
        variables = variables or {}
        role = terms[0]
        roles_dir = str(Path(str(variables.get("role_path") or
                                 Path(_MODULE_UTILS).parent / "roles" / role)).parent)
        inputs_lookup = lookup_loader.get("tai_role_inputs", loader=self._loader,
                                          templar=self._templar)
        found = inputs_lookup.run([role], variables, roles_dir=roles_dir)[0]
        excluded = set(kwargs.get("exclude") or ())
        inputs = {k: v for k, v in found[role].items() if k not in excluded}
        context_names = ("tai_charts", "tai_region_zones", "tai_gcp_project", "tai_environment")
        templar = self._templar.copy_with_new_env(available_variables=variables)
        known = {n: templar.template(variables[n]) for n in context_names if n in variables}
        groups = variables.get("groups") or {}
        context = Context(region=str(variables.get("inventory_hostname")),
                          regions=list(groups.get("tai_regions") or []),
                          charts=known.get("tai_charts") or {}, variables=known)
        return [list(found["_problems"]) + role_problems(role, inputs, context)]
