# Copyright: tai-deploy contributors
"""Vars plugin tai_host_group_vars: Ansible's host_group_vars, with parse errors that say where.

ansible-core's host_group_vars re-raises a YAML error of a host_vars or group_vars file as its
bare message ("YAML parsing failed: Mapping values are not allowed in this context."), losing the
file and line the parser knew. This plugin loads the same files the same way and, on a parse
error, names the file, the line and the column.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: tai_host_group_vars
short_description: host_vars and group_vars files, with parse errors that name file and line
description:
  - Loads C(host_vars/) and C(group_vars/) next to the inventory and the playbook exactly as
    ansible.builtin.host_group_vars does.
  - A file that is not valid YAML (or holds a duplicate key, see C(duplicate_dict_key)) stops the
    run with one sentence naming the file, the line and the column.
options:
  stage:
    ini:
      - key: stage
        section: vars_host_group_vars
    env:
      - name: ANSIBLE_VARS_PLUGIN_STAGE
  _valid_extensions:
    default: [".yml", ".yaml", ".json"]
    description: File extensions that are loaded.
    type: list
    elements: string
    ini:
      - key: yaml_valid_extensions
        section: defaults
    env:
      - name: ANSIBLE_YAML_FILENAME_EXT
"""

from typing import Any

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.vars.host_group_vars import VarsModule as _HostGroupVars


def _located(exc: BaseException) -> AnsibleParserError | None:
    """The same error, with the file and line of the innermost error that knows them."""
    seen: BaseException | None = exc
    while seen is not None:
        origin = getattr(seen, "obj", None)
        path = getattr(origin, "path", None)
        if path and isinstance(seen, AnsibleError):
            line, col = getattr(origin, "line_num", None), getattr(origin, "col_num", None)
            where = f"{path}, line {line}" + (f", column {col}" if col else "") if line else path
            message = str(getattr(seen, "message", seen)).rstrip(".")
            return AnsibleParserError(f"{where}: {message}.", obj=origin)
        seen = seen.__cause__ or seen.__context__
    return None


class VarsModule(_HostGroupVars):  # type: ignore[misc]
    REQUIRES_ENABLED = True

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> Any:
        try:
            return super().get_vars(loader, path, entities, cache)
        except AnsibleParserError as exc:
            located = _located(exc)
            if located is None:
                raise
            raise located from None
