#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: write a GKE cluster's kubeconfig entry (like gcloud get-credentials)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gke_kubeconfig
short_description: Add or refresh a GKE cluster's entry in a kubeconfig file
description:
  - Does what C(gcloud container clusters get-credentials) does, from values the GKE API
    already returned (the cluster endpoint and CA certificate, see the gke_cluster module), with
    no gcloud call - a cluster, a user and a context named O(context) (gcloud's name is
    C(gke_<project>_<location>_<cluster>)).
  - The user runs O(auth_command) with O(auth_args) through the client-go C(exec) protocol
    (C(client.authentication.k8s.io/v1)); the project's C(scripts/tai-gke-token) prints a Google
    access token from Application Default Credentials, so neither gcloud nor
    C(gke-gcloud-auth-plugin) is needed and no token or key is written to the file.
  - Other entries are kept. The file is rewritten atomically with mode 0600, under a lock (regions
    run in parallel), and only when its parsed content would change, so C(changed) is honest.
version_added: "0.1.0"
author: tai-deploy contributors
options:
  path:
    description: The kubeconfig file. Created (with its folder) when missing.
    type: path
    default: ~/.kube/config
  context:
    description: Name of the cluster, user and context entries.
    type: str
    required: true
  server:
    description: API server URL, C(https://<endpoint>).
    type: str
    required: true
  certificate_authority_data:
    description:
      - Base64 CA certificate of the cluster (C(masterAuth.clusterCaCertificate)) for the IP
        endpoint. Empty for the DNS-based endpoint, whose certificate is publicly trusted.
    type: str
    default: ""
  auth_command:
    description: Credential plugin run by kubectl, helm and the Kubernetes Python client.
    type: str
    default: tai-gke-token
  auth_args:
    description: Arguments of O(auth_command) (the script, when the command is a Python).
    type: list
    elements: str
    default: []
  set_current_context:
    description:
      - Make O(context) the current context. Without it the current context is set only when
        the file has none; roles name their context explicitly.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Write the cluster's kubeconfig entry for kubernetes.core
  gke_kubeconfig:
    context: gke_tai-production_europe-west1_tai-cluster
    server: "https://{{ gke_cluster_result.cluster.dns_endpoint }}"
    auth_command: "{{ ansible_playbook_python }}"
    auth_args: ["{{ playbook_dir }}/../scripts/tai-gke-token"]
"""

RETURN = r"""
path:
  description: The kubeconfig file written.
  returned: always
  type: str
context:
  description: The context name, for C(context) of kubernetes.core modules.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "~/.kube/config"},
            "context": {"type": "str", "required": True},
            "server": {"type": "str", "required": True},
            "certificate_authority_data": {"type": "str", "default": ""},
            "auth_command": {"type": "str", "default": "tai-gke-token"},
            "auth_args": {"type": "list", "elements": "str", "default": []},
            "set_current_context": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.gke_kubeconfig import Entry, KubeconfigError, ensure
    p = module.params
    entry = Entry(p["context"], p["server"], p["certificate_authority_data"] or "",
                  p["auth_command"], tuple(p["auth_args"]))
    try:
        outcome = ensure(p["path"], entry, set_current=p["set_current_context"],
                         check_mode=module.check_mode)
    except (KubeconfigError, OSError) as exc:
        module.fail_json(msg=f"Cannot write the kubeconfig entry {p['context']} to "
                             f"{p['path']}: {exc}")
    out = {"changed": outcome.changed, "path": p["path"], "context": p["context"]}
    if module._diff:
        out["diff"] = {"before": outcome.before, "after": outcome.after,
                       "before_header": p["path"], "after_header": p["path"]}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
