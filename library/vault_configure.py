#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: bring Vault's auth methods, mounts, policies and config objects to a state."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_configure
short_description: Idempotently configure Vault auth methods, secrets engines, policies and roles
description:
  - Reads every item of O(configuration) from Vault first and writes only what is missing or
    differs, so C(changed) is true only when Vault was changed (unlike
    C(community.hashi_vault.vault_write), which always reports a change).
  - Order is auth methods, secrets engines, ACL policies, then configuration objects (for
    example C(auth/kubernetes/config) and C(auth/kubernetes/role/<name>)). Of a configuration
    object only the fields given are compared; lists compare as sets and durations in seconds.
    Fields that Vault never returns (write-only credentials) are refused because they cannot be
    compared.
  - The token comes from O(init_file) (ansible-vault encrypted, see M(vault_init_unseal)) - the
    initial root token while it is still stored, otherwise a root token generated with the
    stored shards (C(sys/generate-root), one-time-password flow). That root token is exchanged at
    once for an orphan token that expires after O(token_ttl), then revoked; the initial root token
    is also removed from O(init_file). The short-lived token is revoked at the end.
  - Tokens and shards are never returned and are masked in all output. Non-fatal problems (a
    short-lived token that could not be revoked) are reported as warnings.
  - Refuses to replace an auth method or mount of another type and to change a KV mount's
    version.
version_added: "0.1.0"
author: tai-deploy contributors
requirements:
  - requests
  - cryptography
  - PyYAML
extends_documentation_fragment:
  - tai_vault
options:
  node:
    description:
      - The Vault node to talk to (standby nodes forward to the active one), an http(s) URL or a
        Kubernetes target such as C(pod/vault-0) reached through O(port_forward).
    type: str
    required: true
  configuration:
    description:
      - The desired state, with the lists C(auth_methods) (C(path), C(type), C(description)),
        C(secrets_engines) (C(path), C(type), C(options), C(description)), C(policies)
        (C(name), C(policy) text) and C(endpoints) (C(path), C(data)).
      - Mutually exclusive with O(configuration_file).
    type: dict
  configuration_file:
    description: A JSON or YAML file with the same structure as O(configuration) (the plan).
    type: path
  token_ttl:
    description: Lifetime of the short-lived token the module works with.
    type: str
    default: 15m
  serve_timeout:
    description: Seconds to wait for the node to be unsealed and to have an active leader.
    type: float
    default: 60
attributes:
  check_mode:
    support: full
    details:
      - Compares and reports without writing. It still needs a token, so it mints and revokes a
        short-lived one (or reads with the initial root token, which it leaves in place).
  diff_mode:
    support: full
notes:
  - Runs on the controller. Tested against OpenBao (API-compatible), see tests/test_vault*.py.
seealso:
  - module: vault_init_unseal
"""

EXAMPLES = r"""
- name: Configure Kubernetes auth, the TAI policy and role, and the KV v2 mount
  vault_configure:
    node: pod/vault-0
    configuration_file: "{{ tai_build_dir }}/vault/configuration.json"
    init_file: "{{ vault_init_file }}"
    password_file: "{{ vault_secrets_password_file }}"
    ca_cert: "{{ vault_api_ca_cert }}"
    port_forward:
      kubectl: "{{ tai_kubectl_binary }}"
      context: "{{ tai_kube_context }}"

- name: Configure a server reached by URL
  vault_configure:
    node: http://127.0.0.1:8200
    init_file: /secure/vault-init.yml
    password_file: ~/.vault-password
    configuration:
      secrets_engines:
        - {path: tai, type: kv, options: {version: "2"}}
      policies:
        - name: tai-app
          policy: |
            path "tai/data/*" { capabilities = ["read"] }
"""

RETURN = r"""
changes:
  description: One entry per configuration item with what was done (created, updated, unchanged).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "policy", "name": "tai-app", "action": "unchanged"}]
summary:
  description: Count of items per action.
  returned: always
  type: dict
  sample: {"created": 0, "updated": 0, "unchanged": 5}
token_source:
  description: Where the root token came from (C(initial root token) or C(generate-root)).
  returned: always
  type: str
root_token_revoked:
  description: Whether the initial root token was revoked and removed from the init file.
  returned: always
  type: bool
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from ansible.module_utils.basic import AnsibleModule

if TYPE_CHECKING:
    from ansible.module_utils.tai_deploy.vault_api import Configuration

# The port_forward suboptions (the same in vault_init_unseal and vault_configure).
PORT_FORWARD_ARGSPEC = {
    "kubectl": {"type": "path", "required": True},
    "namespace": {"type": "str", "default": "vault"},
    "context": {"type": "str"},
    "remote_port": {"type": "int", "default": 8200},
    "scheme": {"type": "str", "choices": ["http", "https"], "default": "https"},
    "timeout": {"type": "float", "default": 30},
}


def _load_configuration(params: dict) -> Configuration:
    from ansible.module_utils.tai_deploy.vault_api import Configuration, VaultError

    data = params["configuration"]
    if params["configuration_file"]:
        path = Path(params["configuration_file"])
        try:
            text = path.read_text()
        except OSError as exc:
            raise VaultError(f"cannot read the configuration file {path}: {exc.strerror}"
                             ) from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):
            raise VaultError(f"the configuration file {path} is not valid JSON or YAML"
                             ) from None
    if not isinstance(data, dict):
        raise VaultError("the configuration must be a mapping")
    return Configuration.from_mapping(data)


def _dump(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "node": {"type": "str", "required": True},
            "configuration": {"type": "dict"},
            "configuration_file": {"type": "path"},
            "init_file": {"type": "path", "required": True},
            "password_file": {"type": "path", "required": True, "no_log": False},
            "token_ttl": {"type": "str", "default": "15m"},
            "ca_cert": {"type": "path"},
            "port_forward": {"type": "dict", "options": PORT_FORWARD_ARGSPEC},
            "timeout": {"type": "float", "default": 10},
            "serve_timeout": {"type": "float", "default": 60},
        },
        mutually_exclusive=[["configuration", "configuration_file"]],
        required_one_of=[["configuration", "configuration_file"]],
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.vault_api import VaultError
    from ansible.module_utils.tai_deploy.vault_bootstrap import Connector, PortForward, configure
    from ansible.module_utils.tai_deploy.vault_secrets import AnsibleVaultCipher, MaterialError

    p = module.params
    forward = PortForward(**p["port_forward"]) if p["port_forward"] else None
    connector = Connector(ca_cert=p["ca_cert"], timeout=p["timeout"], forward=forward)
    try:
        config = _load_configuration(p)
        cipher = AnsibleVaultCipher.from_password_file(p["password_file"])
        result = configure(
            p["node"], config, init_file=p["init_file"], cipher=cipher, connector=connector,
            token_ttl=p["token_ttl"], check=module.check_mode, serve_timeout=p["serve_timeout"],
            on_secret=module.no_log_values.update)
    except (VaultError, MaterialError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot write {p['init_file']}: {exc.strerror}")
    except Exception as exc:
        # Anything else still goes through fail_json, which masks every secret registered so
        # far (no_log_values); a raw traceback would not.
        module.fail_json(msg=f"unexpected {type(exc).__name__} in vault_configure: {exc}")
    out = {
        "changes": [{"kind": c.kind, "name": c.name, "action": c.action}
                    for c in result.changes],
        "summary": result.summary(),
        "token_source": result.token_source,
        "root_token_revoked": result.root_token_revoked,
    }
    for warning in result.warnings:
        module.warn(warning)
    if module._diff:
        out["diff"] = [{"before_header": f"{c.kind} {c.name}", "after_header": f"{c.kind} {c.name}",
                        "before": _dump(c.before), "after": _dump(c.after)}
                       for c in result.changes if c.changed]
    module.exit_json(changed=result.changed, **out)


if __name__ == "__main__":
    main()
