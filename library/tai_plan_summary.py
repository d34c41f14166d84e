#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: index a region's plan bundle in SUMMARY.md and summary.json."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_plan_summary
short_description: List every artifact of a region's plan in SUMMARY.md and summary.json
description:
  - Scans C(build/<region>/) after the roles have rendered and writes an index with the SHA-256
    of every artifact, grouped by role, so that a reviewer can read the plan like a
    C(terraform plan) and two plans can be compared by hash.
  - Deterministic output; a second run with an unchanged plan reports C(changed=false).
version_added: "0.1.0"
author: tai-deploy contributors
options:
  root:
    description: The region's bundle folder.
    type: path
    required: true
  region:
    description: Region name shown in the summary.
    type: str
    required: true
  plan_dir:
    description:
      - Where the region's plan lives (C(build/<region>)) when O(root) is the run's staging
        folder. After the index is written, the staging folder replaces it in one step, so a run
        makes its plan visible only when every role before this task succeeded. Nothing moves
        in check mode.
    type: path
  mode:
    description: C(plan) or C(apply), shown in the summary.
    type: str
    choices: [plan, apply]
    default: plan
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Index the region's plan
  tai_plan_summary:
    root: "{{ tai_build_dir }}"
    region: "{{ inventory_hostname }}"
"""

RETURN = r"""
artifact_count:
  description: Number of artifacts listed.
  returned: always
  type: int
summary_path:
  description: Path of SUMMARY.md (in O(plan_dir) when given).
  returned: always
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

# The module's only argument spec. Its action plugin (plugins/action/, same name) validates
# with it too and calls the same core in Ansible's worker, without a module process.
ARGUMENT_SPEC: dict[str, Any] = {
    "root": {"type": "path", "required": True},
    "region": {"type": "str", "required": True},
    "plan_dir": {"type": "path"},
    "mode": {"type": "str", "choices": ["plan", "apply"], "default": "plan"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.plan_tasks import run_plan_summary
    result = run_plan_summary(module.params, check_mode=module.check_mode, diff=module._diff)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
