#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: every check of one region's plan, before anything is written."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_inventory_check
short_description: Validate everything a region's plan depends on, in one call
description:
  - Checks the region's inventory variables, the options of the run (limit, tags, build root),
    every role's inputs (shapes from the roles' meta/argument_specs.yml, then the ranges,
    cross-field rules and chart values of module_utils/tai_deploy/inventory.py) and the rules
    that relate this region to the others (geo location, load balancer address, tier group).
  - Fails with one sentence per problem, naming the variable, the region and what is allowed.
    Reports every problem found, not only the first.
  - When O(stage=true) and every check passed, prepares the staging folder the run writes its
    plan into (a copy of the current plan of the region) and returns it as RV(build_dir); the
    summary play moves it into place when every role succeeded. Nothing is written in check
    mode or when a check failed.
version_added: "0.1.0"
author: tai-deploy contributors
options:
  region:
    description: The inventory host (a GCP region) whose plan is checked.
    type: str
    required: true
  variables:
    description:
      - The region's inventory variables by name. A variable that is not defined is passed as
        null.
    type: dict
    required: true
  inputs:
    description:
      - Every role's inputs (role name to input name to value), as the tai_role_inputs lookup
        computes them; key C(_problems) lists inputs that could not be evaluated.
    type: dict
    default: {}
  project_root:
    description: Root of the repository (roles/, playbooks/).
    type: path
  regions:
    description: Every region of the inventory with its load balancer address and geo location.
    type: dict
    default: {}
  tier_groups:
    description: Tier name to the regions of its inventory group (tai_primary, ...).
    type: dict
    default: {}
  charts:
    description: The chart pins (tai_charts).
    type: dict
    default: {}
  limit:
    description: The run's --limit (ansible_limit), null when none was given.
    type: raw
  run_tags:
    description: The run's --tags (ansible_run_tags).
    type: list
    elements: str
    default: [all]
  skip_tags:
    description: The run's --skip-tags (ansible_skip_tags).
    type: list
    elements: str
    default: []
  build_root:
    description: Root of the plans (tai_build_root, from TAI_BUILD_ROOT).
    type: raw
  stage:
    description:
      - Prepare the staging folder of the region's plan when every check passed, and return the
        staging folders of the region's plan and of the project-wide plan (C(_project)).
    type: bool
    default: false
  stage_project:
    description:
      - With O(stage), also prepare the staging folder of the project-wide plan
        (C(<build root>/_project), a copy of it). Set on one region of the run only, since the
        project-wide plan is written once per run (run_once) and moved into place by the last
        play when every region succeeded.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Validate this region's variables
  tai_inventory_check:
    region: "{{ inventory_hostname }}"
    variables:
      tai_gcp_project: "{{ tai_gcp_project | default(none) }}"
      tai_region_lb_address: "{{ tai_region_lb_address | default(none) }}"
"""

RETURN = r"""
checked:
  description: Names of the inventory variables that were checked.
  returned: always
  type: list
  elements: str
build_dir:
  description: Folder the roles write the region's plan into (the staging folder when staged).
  returned: success
  type: str
project_build_dir:
  description: Folder the project-wide plan is written into (the staging folder when staged).
  returned: success
  type: str
errors:
  description: One sentence per problem.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "region": {"type": "str", "required": True},
            "variables": {"type": "dict", "required": True},
            # Inputs declared no_log in an argument spec arrive redacted (tai_role_inputs).
            "inputs": {"type": "dict", "default": {}},
            "project_root": {"type": "path"},
            "regions": {"type": "dict", "default": {}},
            "tier_groups": {"type": "dict", "default": {}},
            "charts": {"type": "dict", "default": {}},
            "limit": {"type": "raw"},
            "run_tags": {"type": "list", "elements": "str", "default": ["all"]},
            "skip_tags": {"type": "list", "elements": "str", "default": []},
            "build_root": {"type": "raw"},
            "stage": {"type": "bool", "default": False},
            "stage_project": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.inventory import (
        PlanInputs,
        check_plan,
        check_run,
        defined_tags,
        load_argument_specs,
    )
    from ansible.module_utils.tai_deploy.staging import (
        PROJECT_PLAN,
        StagingError,
        begin_staging,
        staging_dir,
    )
    p = module.params
    region = p["region"]
    root = p["project_root"]
    tags = [*p["run_tags"], *p["skip_tags"]]
    known = defined_tags(root) if root and set(tags) - {"all"} else set()
    errors = check_run(region, limit=p["limit"], run_tags=p["run_tags"],
                       skip_tags=p["skip_tags"], known_tags=known, build_root=p["build_root"],
                       all_regions=sorted(p["regions"]))
    inputs = dict(p["inputs"])
    errors += [str(e) for e in inputs.pop("_problems", [])]
    specs = {role: load_argument_specs(f"{root}/roles", role) for role in inputs} if root else {}
    errors += [e for e in check_plan(PlanInputs(
        region=region, variables=p["variables"], inputs=inputs, specs=specs,
        regions=p["regions"], tier_groups=p["tier_groups"], charts=p["charts"],
        project_root=root or "")) if e not in errors]
    if errors:
        module.fail_json(msg=" ".join(errors), errors=errors)
    build_dir = f"{p['build_root']}/{region}"
    project_build_dir = f"{p['build_root']}/{PROJECT_PLAN}"
    if p["stage"] and not module.check_mode:
        try:
            build_dir = str(begin_staging(p["build_root"], region))
            project_build_dir = str(staging_dir(p["build_root"], PROJECT_PLAN))
            if p["stage_project"]:
                begin_staging(p["build_root"], PROJECT_PLAN)
        except StagingError as exc:
            module.fail_json(msg=str(exc), errors=[str(exc)])
    module.exit_json(changed=False, checked=sorted(p["variables"]), build_dir=build_dir,
                     project_build_dir=project_build_dir)


if __name__ == "__main__":
    main()
