#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: delete the objects a role applied that its plan no longer contains."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_prune
short_description: Delete from the cluster the objects that a role's plan dropped
description:
  - Lists, for each kind of O(kinds), the objects labelled
    C(app.kubernetes.io/managed-by=tai-deploy) and C(tai-deploy.io/role=<role>) (O(role)),
    and deletes those whose C(Kind/namespace/name)
    is not among the manifests of O(manifest_dirs) (the plan in C(build/<region>/)).
  - Objects of Helm releases (C(managed-by=Helm)), of other roles, or created by hand never
    carry both labels and are never touched. A kind the API does not serve (its CRD not
    installed) is skipped.
  - Check mode lists what would be deleted (RV(pruned)) and deletes nothing; diff mode shows
    each object as it is before the deletion.
version_added: "0.1.0"
author: tai-deploy contributors
extends_documentation_fragment: [tai_k8s]
options:
  role:
    description: Role whose objects are pruned (value of the C(tai-deploy.io/role) label).
    type: str
    required: true
  kinds:
    description: Kinds the role applies, each a mapping with C(apiVersion) and C(kind).
    type: list
    elements: dict
    required: true
  manifest_dirs:
    description: Plan folders whose manifests are kept.
    type: list
    elements: path
    required: true
  request_timeout:
    description: Timeout of one API request, in seconds.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Delete the mesh objects that the plan no longer contains
  tai_prune:
    role: istio
    kinds:
      - {apiVersion: security.istio.io/v1, kind: PeerAuthentication}
      - {apiVersion: cert-manager.io/v1, kind: Certificate}
    manifest_dirs: ["{{ tai_build_dir }}/istio/manifests"]
    context: "{{ tai_kube_context }}"
"""

RETURN = r"""
pruned:
  description: Objects deleted (or, in check mode, that would be), as Kind/namespace/name.
  returned: always
  type: list
  elements: str
  sample: ["PrometheusRule/monitoring/tai-old-rules"]
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "role": {"type": "str", "required": True},
            "kinds": {"type": "list", "elements": "dict", "required": True},
            "manifest_dirs": {"type": "list", "elements": "path", "required": True},
            # kubernetes.core's auth options (plugins/doc_fragments/tai_k8s.py).
            "kubeconfig": {"type": "path"},
            "context": {"type": "str"},
            "host": {"type": "str", "aliases": ["api_server"]},
            "api_key": {"type": "str", "no_log": True, "aliases": ["api_token"]},
            "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
            "client_cert": {"type": "path", "aliases": ["cert_file"]},
            "client_key": {"type": "path", "aliases": ["key_file"]},
            "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
            "proxy": {"type": "str"},
            "request_timeout": {"type": "float", "default": 30.0},
        },
        mutually_exclusive=[("host", "kubeconfig"), ("host", "context")],
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared (ansible-lint runs this file on its own).
    import yaml
    from ansible.module_utils.tai_deploy.k8s_api import (
        ApiError,
        KubeClient,
        KubeConfigError,
        KubeError,
        access_from_options,
    )
    from ansible.module_utils.tai_deploy.prune import (
        PruneError,
        delete,
        find,
        owner_selector,
        planned_refs,
    )

    p = module.params
    for i, item in enumerate(p["kinds"]):
        if not isinstance(item.get("apiVersion"), str) or not isinstance(item.get("kind"), str):
            module.fail_json(msg=f"kinds[{i}] needs apiVersion and kind (strings)")
    try:
        keep = planned_refs(p["manifest_dirs"])
        access = access_from_options(**{k: p[k] for k in (
            "kubeconfig", "context", "host", "api_key", "ca_cert", "client_cert", "client_key",
            "validate_certs", "proxy")})
        with KubeClient(access, timeout=p["request_timeout"]) as client:
            found = find(client, p["kinds"], owner_selector(p["role"]), keep)
            pruned = [c.ref for c in found] if module.check_mode else delete(client, found)
    except (PruneError, KubeConfigError, ApiError, KubeError, OSError, ValueError) as exc:
        module.fail_json(msg=f"Cannot prune the objects of role {p['role']}: {exc}")
    result = {"changed": bool(pruned), "pruned": pruned}
    if module._diff:
        # a Secret's values never reach the output
        shown = [{**c.body, **({"data": dict.fromkeys(c.body.get("data") or {}, "(hidden)")}
                               if c.body.get("kind") == "Secret" else {})} for c in found]
        result["diff"] = [{"before_header": c.ref, "after_header": "/dev/null",
                           "before": yaml.safe_dump(body, sort_keys=True), "after": ""}
                          for c, body in zip(found, shown, strict=True)]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
