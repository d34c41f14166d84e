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
  description: Path of SUMMARY.md.
  returned: always
  type: str
"""

import json
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "region": {"type": "str", "required": True},
            "mode": {"type": "str", "choices": ["plan", "apply"], "default": "plan"},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.bundle import diff_entries, plan, summarise, write
    p = module.params
    try:
        wanted = summarise(p["root"], p["region"], p["mode"])
        bundle = plan(p["root"], wanted, prune=False)
        if bundle.changed and not module.check_mode:
            write(bundle)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the plan summary under {p['root']}: {exc}")
    result = {
        "changed": bundle.changed,
        "artifact_count": json.loads(wanted["summary.json"])["artifact_count"],
        "summary_path": str(Path(p["root"]) / "SUMMARY.md"),
    }
    if module._diff:
        result["diff"] = diff_entries(bundle)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
