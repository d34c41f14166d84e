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
checked_roles:
  description:
    - Roles whose inputs were checked (O(inputs)). A role of this list skips its own check of
      the same rules later in the run.
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

from typing import Any

from ansible.module_utils.basic import AnsibleModule

# The module's only argument spec. Its action plugin (plugins/action/, same name) validates
# with it too and calls the same core in Ansible's worker, without a module process.
ARGUMENT_SPEC: dict[str, Any] = {
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
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.plan_tasks import run_inventory_check
    result = run_inventory_check(module.params, check_mode=module.check_mode, diff=module._diff)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
