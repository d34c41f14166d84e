#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: write one role's rendered artifacts, validated, in a single call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_bundle
short_description: Validate and write a set of rendered artifacts to a plan folder
description:
  - Writes a role's whole desired state (request bodies, Helm values, Kubernetes manifests) under
    one folder, typically C(build/<region>/<role>/), in a single module call.
  - Kubernetes manifests are validated before anything is written. Built-in kinds are checked
    with kubernetes-validate in strict mode for O(kubernetes_version); custom resources of
    Istio, Prometheus Operator, KEDA and cert-manager against those projects' CRD schemas
    (the cloudcoil-models-* packages, unknown fields refused) and listed in
    RV(crd_validated); other custom resources get structural checks only and are listed in
    RV(structural_only). If any object is invalid the module fails and writes nothing.
  - Each manifest is written to C(<manifests_dir>/<namespace>/<kind>-<name>.yaml); cluster-scoped
    objects go under C(_cluster).
  - Files are compared with what is on disk and written atomically only when they differ; files
    of the folder that the bundle no longer contains are removed when O(prune=true). A second run
    with the same input reports C(changed=false).
version_added: "0.1.0"
author: tai-deploy contributors
options:
  dest:
    description: Folder of the bundle. Created when missing.
    type: path
    required: true
  files:
    description:
      - Plain artifacts. Each item has a C(path) relative to O(dest) and either C(content)
        (text, written as is) or C(data) (structure, serialised by the file extension as JSON
        or YAML with sorted keys).
      - An item may declare C(gcp_schema) - a mapping with C(api) (for example C(container.v1))
        and C(schema) (C(Cluster)) or C(method) (C(globalAddresses.insert)), or the string
        C(items) (a list of gcp_resource items, each create/update body checked against its
        C(method_id)). Its C(data) is then checked against Google's discovery document
        before anything is written; an unknown field, a wrong type or a bad enum value fails
        the task naming the file and the field path.
    type: list
    elements: dict
    default: []
  manifests:
    description:
      - Kubernetes objects, either a list of mappings or a multi-document YAML string such as
        the output of C(helm template).
    type: raw
  releases:
    description:
      - Third-party Helm releases to plan. Each item has C(name), C(namespace), C(chart),
        C(repository), C(version) and C(values); the module writes C(releases/<name>.yaml) (what
        apply installs, with C(values_file)) and C(values/<name>.yaml).
      - C(version) must be an exact chart version; ranges and C(latest) are refused.
    type: list
    elements: dict
    default: []
  chart:
    description:
      - A local Helm chart to render with C(helm template) for O(kubernetes_version) and the
        complete O(chart.values) (given on helm's standard input); its manifests are then
        validated and written like O(manifests). If helm refuses the values, the task fails
        with O(chart.refusal) and helm's reason in one sentence, and writes nothing.
      - Rendering in this task rather than in a command task before it saves a module process
        and templating the values a second time.
    type: dict
    suboptions:
      path:
        description: Folder of the chart.
        type: path
        required: true
      release:
        description: Release name given to C(helm template).
        type: str
        required: true
      namespace:
        description: Namespace of the release.
        type: str
        required: true
      values:
        description: Every value the chart is rendered with.
        type: dict
        default: {}
      values_path:
        description: When set, the values are also written to this path of the bundle.
        type: str
      helm:
        description: The helm binary.
        type: str
        default: helm
      refusal:
        description: What the failure message says before helm's reason.
        type: str
        default: The chart refused its values
  manifests_dir:
    description: Sub-folder of O(dest) that receives the manifests.
    type: str
    default: manifests
  kubernetes_version:
    description:
      - Kubernetes minor version (for example C(1.34)) whose schemas validate the manifests.
      - Required when O(manifests) is given.
    type: str
  prune:
    description: Remove files under O(dest) that are not part of this bundle.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Runs on the controller (regions are inventory hosts with C(ansible_connection=local)).
"""

EXAMPLES = r"""
- name: Write the GKE request bodies of this region
  tai_bundle:
    dest: "{{ tai_build_dir }}/gke"
    files:
      - path: cluster.json
        data: "{{ gke_cluster_body }}"
      - path: README.txt
        content: "Request bodies for projects.locations.clusters"

- name: Render, validate and write a local chart and the values it is rendered with
  tai_bundle:
    dest: "{{ tai_build_dir }}/tai-services"
    kubernetes_version: "1.34"
    chart:
      path: charts/tai-chart
      release: tai
      namespace: tai-system
      values: "{{ tai_services_values }}"
      values_path: values.yaml
      refusal: charts/tai-chart refused the values of europe-west1
"""

RETURN = r"""
dest:
  description: The bundle folder.
  returned: always
  type: str
files:
  description: Every file of the bundle after the run, with its state and SHA-256.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "cluster.json", "state": "unchanged", "sha256": "9f2c..."}]
summary:
  description: Count of files per state (created, updated, unchanged, removed).
  returned: always
  type: dict
  sample: {"created": 0, "updated": 1, "unchanged": 7, "removed": 0}
schema_validated:
  description: Number of manifests validated against the Kubernetes schema.
  returned: always
  type: int
crd_validated:
  description: Custom resources validated against their CRD's schema, with the package of it.
  returned: always
  type: list
  elements: str
  sample: ["Gateway/istio-system/tai-gateway (cloudcoil-models-istio 1.24.2.1)"]
structural_only:
  description: Custom resources that only got structural checks (no schema available offline).
  returned: always
  type: list
  elements: str
problems:
  description: Why manifests were refused, one line per problem.
  returned: on validation failure
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

# The module's only argument spec. Its action plugin (plugins/action/, same name) validates
# with it too and calls the same core in Ansible's worker, without a module process.
ARGUMENT_SPEC: dict[str, Any] = {
    "dest": {"type": "path", "required": True},
    "files": {"type": "list", "elements": "dict", "default": []},
    "manifests": {"type": "raw"},
    "chart": {"type": "dict", "options": {
        "path": {"type": "path", "required": True},
        "release": {"type": "str", "required": True},
        "namespace": {"type": "str", "required": True},
        "values": {"type": "dict", "default": {}},
        "values_path": {"type": "str"},
        "helm": {"type": "str", "default": "helm"},
        "refusal": {"type": "str", "default": "The chart refused its values"},
    }},
    "manifests_dir": {"type": "str", "default": "manifests"},
    "releases": {"type": "list", "elements": "dict", "default": []},
    "kubernetes_version": {"type": "str"},
    "prune": {"type": "bool", "default": True},
}
SPEC_OPTIONS: dict[str, Any] = {"required_by": {"manifests": ["kubernetes_version"],
                                                "chart": ["kubernetes_version"]},
                                "mutually_exclusive": [["manifests", "chart"]]}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, **SPEC_OPTIONS, supports_check_mode=True)
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.plan_tasks import run_bundle
    result = run_bundle(module.params, check_mode=module.check_mode, diff=module._diff)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
