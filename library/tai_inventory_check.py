#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: validate one region's inventory variables before any role runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_inventory_check
short_description: Validate a region's inventory variables
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "region": {"type": "str", "required": True},
            "variables": {"type": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.inventory import RegionVars, check_region
    p = module.params
    errors = check_region(RegionVars(p["region"], p["variables"]))
    if errors:
        module.fail_json(msg=" ".join(errors), errors=errors)
    module.exit_json(changed=False, checked=sorted(p["variables"]))


if __name__ == "__main__":
    main()
