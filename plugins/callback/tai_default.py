# Copyright: tai-deploy contributors
"""Stdout callback tai_default: Ansible's default output, except for a role's argument spec.

When a role runs alone (a molecule scenario, one phase playbook, an include_role), Ansible checks
its inputs against meta/argument_specs.yml in a task it adds before the role's own tasks
(ansible.builtin.validate_argument_spec). Its failure prints the whole argument spec, hundreds of
lines, around the real problem. This callback prints that failure as one sentence per bad
option, phrased as the validation play phrases the same problem
(module_utils/tai_deploy/inventory.py check_shapes), and leaves every other result untouched.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: tai_default
type: stdout
short_description: The default output, with argument-spec failures as one sentence per option
description:
  - Ansible's default stdout callback. A failed role argument-spec validation (the task Ansible
    adds before a role that has meta/argument_specs.yml) is shown as one sentence per bad option,
    naming the option, the region (host), what is allowed and the role, instead of the whole
    argument spec.
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout in configuration
"""

import re
from typing import Any

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

_VALIDATE = {"validate_argument_spec", "ansible.builtin.validate_argument_spec",
             "ansible.legacy.validate_argument_spec"}
_WANTED = {"dict": "a mapping", "list": "a list", "int": "a whole number", "float": "a number",
           "bool": "true or false", "str": "a string", "path": "a path", "raw": "any value",
           "bytes": "a size in bytes", "bits": "a size in bits", "jsonarg": "JSON",
           "json": "JSON"}
_GOT = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "a boolean",
        "list": "a list", "dict": "a mapping", "NoneType": "null"}
_TYPE = re.compile(r"argument '(?P<name>[^']+)' is of type (?:<class ')?(?P<got>[\w.]+)'?>? "
                   r"(?:found in '(?P<parent>[^']+)' )?and we were unable to convert to "
                   r"(?P<want>\w+)")
_CHOICE = re.compile(r"value of (?P<name>\S+) must be one of: (?P<choices>.*), got: "
                     r"(?P<got>.*?)(?: found in '(?P<parent>[^']+)')?$")
_UNKNOWN = re.compile(r"^(?:Unsupported parameters for .*?: )?(?P<names>[\w.]+(?:, [\w.]+)*)\. "
                      r"Supported parameters include: (?P<known>.*?)\.?$")
_MISSING = re.compile(r"missing required arguments: (?P<names>.*?)(?: found in "
                      r"'?(?P<parent>[^']+)'?)?$")


def _full(name: str, parent: str | None) -> str:
    return f"{parent}.{name}" if parent else name


def sentences(errors: list[str], role: str, region: str) -> list[str]:
    """One sentence per bad option from the messages of Ansible's argument spec validator."""
    spec = f"meta/argument_specs.yml of role {role}"
    out: list[str] = []
    for error in errors:
        text = " ".join(str(error).split())
        if m := _TYPE.search(text):
            got = _GOT.get(m["got"].rsplit(".", 1)[-1].lstrip("_").removeprefix("AnsibleTagged")
                           .lower() if m["got"].startswith("ansible") else m["got"], "a value")
            out.append(f"{_full(m['name'], m['parent'])} of region {region} must be "
                       f"{_WANTED.get(m['want'], m['want'])} ({spec}), got {got}.")
        elif m := _CHOICE.search(text):
            out.append(f"{_full(m['name'], m['parent'])} of region {region} is {m['got']}; it "
                       f"must be one of {m['choices']} ({spec}).")
        elif m := _UNKNOWN.search(text):
            found: dict[str, list[str]] = {}
            for full in m["names"].split(", "):
                parent, _, key = full.rpartition(".")
                found.setdefault(parent, []).append(key)
            out += [f"{parent or 'The role'} of region {region} has unknown keys "
                    f"{', '.join(keys)} (known: {m['known']}; {spec})."
                    for parent, keys in found.items()]
        elif m := _MISSING.search(text):
            out += [f"{_full(n.strip(), m['parent'])} of region {region} is not set; the {role} "
                    "role needs it." for n in m["names"].split(",") if n.strip()]
        else:
            out.append(f"{text.rstrip('.')} (region {region}, {spec}).")
    return out


class CallbackModule(DefaultCallback):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "tai_default"

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        data = result.result
        if result.task.action in _VALIDATE and data.get("argument_errors"):
            context = data.get("validate_args_context") or {}
            found = sentences(list(data["argument_errors"]), str(context.get("name", "?")),
                              str(result.host.name))
            # Replaced in this callback's own copy of the result: the task still failed.
            data.clear()
            data.update({"failed": True, "msg": " ".join(found)})
        super().v2_runner_on_failed(result, ignore_errors)
