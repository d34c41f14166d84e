#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: create or update a GKE cluster and its node pools through the GKE REST API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gke_cluster
short_description: Create or update a GKE cluster and its node pools (GKE REST API v1)
description:
  - Reads the live cluster, compares it with O(cluster) (a v1 C(Cluster) object with its
    C(nodePools), exactly the C(cluster) of a C(clusters.create) body) and makes only the calls
    needed, each waited for through C(operations.get) before the next (GKE runs one operation
    per cluster at a time).
  - A missing cluster is created with all its node pools (C(clusters.create)).
  - An existing cluster is updated field by field, which google.cloud.gcp_container_cluster
    does not do - C(clusters.update) with one C(desiredXxx) field per call (locations, release
    channel, workload identity, logging and monitoring), C(setAddons), C(setNetworkPolicy) and
    C(setResourceLabels).
  - Missing node pools are created (C(nodePools.create)); existing ones are updated with
    C(setAutoscaling), C(setManagement) and C(nodePools.update) (labels, taints, machine type,
    disk size, workload metadata, locations). Node pools that O(cluster) does not list are left
    alone and reported in a warning.
  - Settings GKE cannot change in place (Spot, OAuth scopes, service account and shielded
    settings of a node pool) fail the task with one sentence naming the pool and the field.
    Create-only settings (description, initial version, IP allocation, initial node counts) are
    used on creation only.
  - Comparison follows proto3 JSON, where false, 0 and empty values are omitted by the API, so a
    second run with the same input makes no call and reports C(changed=false).
  - HTTP 429 and 5xx answers are retried with exponential back-off (O(retries) attempts); any
    other error fails with one sentence naming the call, the cluster and the API's message.
version_added: "0.1.0"
author: tai-deploy contributors
requirements:
  - google-auth
  - requests
extends_documentation_fragment:
  - tai_gcp
options:
  project:
    description: GCP project id.
    type: str
    required: true
  location:
    description: Region (regional cluster) or zone of the cluster.
    type: str
    required: true
  cluster:
    description:
      - The desired v1 C(Cluster) object, with C(name) and C(nodePools) (for example
        C(cluster) of C(build/<region>/gke/cluster.json)).
    type: dict
    required: true
  api_endpoint:
    description:
      - Root URL of the GKE API, as in Google's client libraries. Plain C(http) is accepted only
        for a loopback address (a test double).
    type: str
    default: https://container.googleapis.com
  scopes:
    description: OAuth scopes requested for the credentials.
    type: list
    elements: str
    default: [https://www.googleapis.com/auth/cloud-platform]
  wait_timeout:
    description:
      - Seconds to wait for all the operations of the run together (a regional cluster with
        three node pools takes 10-20 minutes to create).
    type: int
    default: 2700
  poll_interval:
    description: Seconds between two reads of a running operation.
    type: float
    default: 10
  request_timeout:
    description: Seconds to wait for one HTTP answer.
    type: float
    default: 60
  progress_file:
    description:
      - File that receives one line per read of a running operation (operation, type, what it
        does, status, elapsed time). The project's action plugin of the same name sets it and
        shows the lines while the module runs (cluster creation takes about ten minutes).
    type: path
  progress_interval:
    description:
      - Seconds between two progress lines shown by the action plugin (the module ignores it).
    type: float
    default: 30
attributes:
  check_mode:
    support: full
    details: Reads the cluster and reports the calls it would make (RV(actions)) without any.
  diff_mode:
    support: full
notes:
  - Runs on the controller. The credentials need C(roles/container.clusterAdmin) (and
    C(roles/iam.serviceAccountUser) on the node service account).
"""

EXAMPLES = r"""
- name: Create or update the regional cluster from the rendered request
  gke_cluster:
    project: tai-production
    location: europe-west1
    cluster: "{{ (lookup('ansible.builtin.file', gke_cluster_json) | from_json).cluster }}"
  register: gke_cluster_result

- name: Plan against a loopback test double of the GKE API
  gke_cluster:
    project: tai-production
    location: europe-west1
    cluster: "{{ gke_cluster_body }}"
    api_endpoint: http://127.0.0.1:8080
    auth_kind: none
  check_mode: true
"""

RETURN = r"""
actions:
  description: The calls made (or, in check mode, that would be made), in order.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "set_node_pool_autoscaling", "target": "spot-pool", "method": "POST",
            "path": "/v1/projects/p/locations/l/clusters/c/nodePools/spot-pool:setAutoscaling",
            "fields": ["autoscaling"], "body": {"autoscaling": {"enabled": true}}}]
operations:
  description: Names of the GKE operations that were waited for.
  returned: always
  type: list
  elements: str
cluster:
  description:
    - Facts of the live cluster after the run (name, status, endpoint, current master version,
      self link, base64 CA certificate, node pool names). Empty in check mode before creation.
  returned: always
  type: dict
"""

from collections.abc import Callable

from ansible.module_utils.basic import AnsibleModule


def _progress_writer(path: str | None) -> Callable[[str], None] | None:
    if not path:
        return None

    def write(line: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:  # noqa: PTH123 - one line, appended
            fh.write(line.replace("\n", " ") + "\n")

    return write


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "str", "required": True},
            "location": {"type": "str", "required": True},
            "cluster": {"type": "dict", "required": True},
            "api_endpoint": {"type": "str", "default": "https://container.googleapis.com"},
            "auth_kind": {"type": "str", "default": "application",
                          "choices": ["application", "serviceaccount", "none"]},
            "service_account_file": {"type": "path"},
            "scopes": {"type": "list", "elements": "str",
                       "default": ["https://www.googleapis.com/auth/cloud-platform"]},
            "wait_timeout": {"type": "int", "default": 2700},
            "poll_interval": {"type": "float", "default": 10},
            "retries": {"type": "int", "default": 5},
            "retry_base_delay": {"type": "float", "default": 1.0},
            "request_timeout": {"type": "float", "default": 60},
            "progress_file": {"type": "path"},
            "progress_interval": {"type": "float", "default": 30},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.gcp_rest import (
        GcpApiError,
        GcpConfigError,
        RestClient,
        RetryPolicy,
        make_session,
    )
    from ansible.module_utils.tai_deploy.gke import ClusterRef, Converger, GkeError
    p = module.params
    name = str(p["cluster"].get("name") or "")
    if not name:
        module.fail_json(msg="The cluster body has no name; render it with one.")
    try:
        session = make_session(p["auth_kind"], p["api_endpoint"], p["scopes"],
                               p["service_account_file"])
        client = RestClient(session, p["api_endpoint"], service="the GKE API",
                            retry=RetryPolicy(max(1, p["retries"]), p["retry_base_delay"]),
                            timeout=p["request_timeout"])
        converger = Converger(client, ClusterRef(p["project"], p["location"], name),
                              wait_timeout=p["wait_timeout"], poll_interval=p["poll_interval"],
                              progress=_progress_writer(p["progress_file"]))
        result = converger.converge(p["cluster"], check_mode=module.check_mode)
    except (GcpConfigError, GcpApiError, GkeError) as exc:
        module.fail_json(msg=str(exc))
    for warning in result.warnings:
        module.warn(warning)
    out = {
        "changed": result.changed,
        "actions": [a.as_dict() for a in result.actions],
        "operations": result.operations,
        "cluster": result.cluster_facts() if result.cluster else {},
    }
    if module._diff:
        out["diff"] = {"before": result.before, "after": result.after,
                       "before_header": f"live {name}", "after_header": f"desired {name}"}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
