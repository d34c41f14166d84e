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

import json
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "region": {"type": "str", "required": True},
            "plan_dir": {"type": "path"},
            "mode": {"type": "str", "choices": ["plan", "apply"], "default": "plan"},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.bundle import diff_entries, plan, summarise, write
    from ansible.module_utils.tai_deploy.staging import (
        StagingError,
        promote_staging,
        staging_dir,
    )
    p = module.params
    root = Path(p["root"])
    final = Path(p["plan_dir"]) if p["plan_dir"] else root
    if final != root and staging_dir(final.parent, p["region"]) != root:
        module.fail_json(msg=f"{root} is not the staging folder of {final}; the plan stays where "
                             "it is.")
    try:
        wanted = summarise(root, p["region"], p["mode"])
        bundle = plan(root, wanted, prune=False)
        if not module.check_mode:
            if bundle.changed:
                write(bundle)
            if final != root:
                promote_staging(final.parent, p["region"])
    except StagingError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"Cannot write the plan summary under {root}: "
                             f"{exc.strerror or exc.__class__.__name__}; the folder comes from "
                             "tai_build_root (the TAI_BUILD_ROOT environment variable).")
    result = {
        "changed": bundle.changed,
        "artifact_count": json.loads(wanted["summary.json"])["artifact_count"],
        "summary_path": str(final / "SUMMARY.md"),
    }
    if module._diff:
        result["diff"] = diff_entries(bundle)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
