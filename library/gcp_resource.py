#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: converge a list of Google Cloud REST resources in order, read before write."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gcp_resource
short_description: Converge Google Cloud REST resources and IAM policies, read before write
description:
  - Takes the items a role rendered under C(build/) (see C(module_utils/tai_deploy/gcp_resource.py)
    for their shape) and converges them in order in one module call - C(rest) objects (GET, create
    when 404, compare the fields we own, update or report unchanged), C(services) (Service
    Usage batchEnable) and C(iam_policy) (read-modify-write with the etag, adding only our
    members).
  - Waits for the long-running operation of each call (Compute global and regional operations,
    Service Usage and Firestore operations).
  - Reports changed only when something was created, updated or enabled; a rerun on a converged
    project makes only reads.
  - A call to an API that the project has not enabled fails with one sentence naming the service.
version_added: "0.1.0"
author: tai-deploy contributors
extends_documentation_fragment: [tai_gcp]
options:
  items:
    description: Resources to converge, in order; later items may use C($(id.output)) strings.
    type: list
    elements: dict
    required: true
  api_endpoints:
    description:
      - Root URL per service host (for example C(compute.googleapis.com) mapped to a loopback
        test double's URL); a service not listed uses C(https://<service>).
    type: dict
    default: {}
  poll_interval:
    description: Seconds between two reads of a running operation.
    type: float
    default: 2
  operation_timeout:
    description: Seconds to wait for one operation.
    type: int
    default: 900
  iam_retry_seconds:
    description: How long a member that IAM does not see yet (a new service account) is retried.
    type: int
    default: 120
  request_timeout:
    description: Seconds per HTTP request.
    type: float
    default: 60
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Converge the project's network
  gcp_resource:
    items: "{{ lookup('ansible.builtin.file', project_region_file) | from_json }}"
"""

RETURN = r"""
results:
  description: One entry per item - id, title, action (created, updated, unchanged), fields,
    outputs.
  returned: always
  type: list
  elements: dict
outputs:
  description: Values read back per item id (for example the address Google allocated).
  returned: always
  type: dict
api_calls:
  description: HTTP requests made, per service host.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "items": {"type": "list", "elements": "dict", "required": True},
            "api_endpoints": {"type": "dict", "default": {}},
            "auth_kind": {"type": "str", "default": "application",
                          "choices": ["application", "serviceaccount", "none"]},
            "service_account_file": {"type": "path"},
            "poll_interval": {"type": "float", "default": 2},
            "operation_timeout": {"type": "int", "default": 900},
            "iam_retry_seconds": {"type": "int", "default": 120},
            "retries": {"type": "int", "default": 5},
            "retry_base_delay": {"type": "float", "default": 1.0},
            "request_timeout": {"type": "float", "default": 60},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.gcp_resource import ConvergeError, Converger
    from ansible.module_utils.tai_deploy.gcp_rest import (
        GcpApiError,
        GcpConfigError,
        RestClient,
        RetryPolicy,
        make_session,
    )
    p = module.params
    clients: dict[str, RestClient] = {}
    sessions: dict[str, object] = {}

    def client_for(service: str) -> RestClient:
        if service not in clients:
            endpoint = str(p["api_endpoints"].get(service) or f"https://{service}")
            # one session per endpoint: anonymous access is checked against each (loopback)
            if endpoint not in sessions:
                sessions[endpoint] = make_session(p["auth_kind"], endpoint, (),
                                                  p["service_account_file"])
            clients[service] = RestClient(
                sessions[endpoint], endpoint, service=service,
                retry=RetryPolicy(max(1, p["retries"]), p["retry_base_delay"]),
                timeout=p["request_timeout"])
        return clients[service]

    converger = Converger(client_for, check_mode=module.check_mode,
                          poll_interval=p["poll_interval"],
                          operation_timeout=p["operation_timeout"],
                          iam_retry_seconds=p["iam_retry_seconds"])
    try:
        converger.converge(p["items"])
    except (GcpConfigError, GcpApiError, ConvergeError) as exc:
        module.fail_json(msg=str(exc), results=[r.as_dict() for r in converger.results])
    out = {
        "changed": converger.changed,
        "results": [r.as_dict() for r in converger.results],
        "outputs": converger.outputs,
        "api_calls": {s: len(c.calls) for s, c in clients.items()},
    }
    if module._diff:
        out["diff"] = [{"before_header": r.title, "after_header": r.title,
                        "before": r.before, "after": r.after}
                       for r in converger.results if r.action != "unchanged"]
    module.exit_json(**out)


if __name__ == "__main__":
    main()
