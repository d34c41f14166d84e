#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: validate one region's inventory variables before any role runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_inventory_check
short_description: Validate a region's inventory variables and the run's region selection
description:
  - Checks the variables every region needs (project, tier, zones, load balancer address,
    DNS geo location, Kubernetes version, apply switch, node pool sizes) for presence, type and
    possible values.
  - Fails with one sentence per problem, naming the variable, the region and where to fix it.
    Never changes anything.
version_added: "0.1.0"
author: tai-deploy contributors
options:
  region:
    description: The inventory host (a GCP region) whose variables are checked.
    type: str
    required: true
  variables:
    description:
      - The region's variables by name. A variable that is not defined is passed as null.
    type: dict
    required: true
  selected_regions:
    description: Regions the run selected (the play's hosts that are TAI regions).
    type: list
    elements: str
  known_regions:
    description: Every TAI region of the inventory.
    type: list
    elements: str
  limit:
    description: The run's C(--limit), for the message when it selects no region.
    type: str
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
  description: Names of the variables that were checked.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.tai_deploy.inventory import (
    RegionVars,
    check_region,
    check_selection,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "region": {"type": "str", "required": True},
            "variables": {"type": "dict", "required": True},
            "selected_regions": {"type": "list", "elements": "str"},
            "known_regions": {"type": "list", "elements": "str"},
            "limit": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    errors: list[str] = []
    if p["selected_regions"] is not None:
        errors += check_selection(p["selected_regions"], p["known_regions"] or [], p["limit"])
    if not errors and p["region"] in (p["known_regions"] or [p["region"]]):
        errors += check_region(RegionVars(p["region"], p["variables"]))
    if errors:
        module.fail_json(msg=" ".join(errors), errors=errors)
    module.exit_json(changed=False, checked=sorted(p["variables"]))


if __name__ == "__main__":
    main()
