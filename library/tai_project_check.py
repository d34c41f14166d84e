#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: validate the project phase's inputs of one region."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_project_check
short_description: Validate the project phase's network names and subnet ranges
description:
  - Checks the names of the VPC, subnet and secondary ranges and the region's subnet CIDRs
    (valid, private, large enough, disjoint within the subnet and across all regions).
  - Fails with one sentence per problem naming the variable, the region, the value given and
    what is allowed. Never changes anything.
version_added: "0.1.0"
author: tai-deploy contributors
options:
  region:
    description: The inventory host (a GCP region) whose inputs are checked.
    type: str
    required: true
  variables:
    description:
      - The region's variables by name, plus C(all_subnet_ranges) (region -> ranges of every
        region of the inventory).
    type: dict
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Check the region's network inputs
  tai_project_check:
    region: "{{ inventory_hostname }}"
    variables:
      tai_network_name: "{{ tai_network_name }}"
      tai_region_subnet_ranges: "{{ tai_region_subnet_ranges | default(none) }}"
"""

RETURN = r"""
checked:
  description: Names of the variables that were checked.
  returned: always
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
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.plan_tasks import run_project_check
    result = run_project_check(module.params, check_mode=module.check_mode, diff=module._diff)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
