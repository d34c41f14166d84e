# Copyright: tai-deploy contributors
"""Lookup tai_role_inputs: the value of every input a role declares, as the role would see it.

The validation play runs before any role, so role defaults are not variables there. Rather than
copying each default into the play (two places to keep in step), this lookup reads the two files
that define a role's inputs: ``meta/argument_specs.yml`` (which inputs there are) and
``defaults/main.yml`` (their defaults). Each input takes the value Ansible would give it inside
the role: the inventory's or the extra vars' value when one is defined, else the role default,
templated with the role's other defaults in scope. A value that cannot be templated becomes a
sentence in ``_problems`` instead of an exception.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: tai_role_inputs
short_description: Every declared input of the given roles, with role defaults applied
description:
  - Returns one mapping per role name given, of every option of the role's main entry point
    (meta/argument_specs.yml) to its value; inputs defined nowhere are null.
  - Key C(_problems) lists inputs whose value could not be templated, one sentence each.
options:
  _terms:
    description: Role names (folders of roles/).
    required: true
  roles_dir:
    description: Folder that holds the roles.
    type: path
    required: true
"""

RETURN = r"""
_raw:
  description: A mapping of role name to a mapping of input name to value, plus C(_problems).
  type: list
  elements: dict
"""

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase


def _redacted(value: Any) -> Any:
    """The shape of a secret without its text (the checks need types, never the secret)."""
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return "(not shown)" if isinstance(value, str) else value


class LookupModule(LookupBase):  # type: ignore[misc]
    def run(self, terms: list[str], variables: Any = None, **kwargs: Any) -> list[Any]:
        self.set_options(var_options=variables, direct=kwargs)
        roles_dir = Path(self.get_option("roles_dir"))
        variables = variables or {}
        specs: dict[str, dict[str, Any]] = {}
        defaults: dict[str, Any] = {}
        for role in terms:
            spec_file = roles_dir / role / "meta" / "argument_specs.yml"
            spec = self._loader.load_from_file(str(spec_file))
            specs[role] = dict(((spec or {}).get("argument_specs") or {}).get("main", {})
                               .get("options") or {})
            path = roles_dir / role / "defaults" / "main.yml"
            if path.is_file():
                defaults.update(self._loader.load_from_file(
                    str(path), trusted_as_template=True) or {})
        scope = {**defaults, **variables}
        templar = self._templar.copy_with_new_env(available_variables=scope)
        out: dict[str, Any] = {"_problems": []}
        region = variables.get("inventory_hostname", "?")
        for role, options in specs.items():
            values: dict[str, Any] = {}
            for name in options:
                raw = scope.get(name)
                try:
                    values[name] = templar.template(raw)
                    if options[name].get("no_log"):
                        values[name] = _redacted(values[name])
                except AnsibleError as exc:
                    message = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0]
                    out["_problems"].append(
                        f"{name} of region {region} cannot be evaluated: {message.rstrip('.')}.")
                    values[name] = None
            out[role] = values
        return [out]
