#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: initialise Vault once and unseal every sealed node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_init_unseal
short_description: Initialise a Vault cluster once and unseal every sealed node
description:
  - Reads C(sys/seal-status) of the first node of O(nodes). When it is not initialised, calls
    C(sys/init) (O(secret_shares) shares, threshold O(secret_threshold); recovery shares when
    the server uses an auto-unseal seal such as Google Cloud KMS) and writes the shards and the
    initial root token to O(init_file), encrypted with ansible-vault and written atomically,
    B(before) doing anything else with them.
  - Then visits every node in order. A sealed node is unsealed with the stored shards; a raft
    follower that has not joined yet is waited for (O(join_timeout)); with auto-unseal the
    module only waits until the node has unsealed itself (O(unseal_timeout)).
  - Refuses, with one sentence and without changing anything, when the first node is initialised
    but O(init_file) does not exist, when the node is B(not) initialised but O(init_file)
    exists (never initialises twice), or when the stored shards are refused (the node's unseal
    progress is reset).
  - Shards and tokens are never returned and are masked in all output. O(password_file) is the
    usual ansible-vault password file (an executable file is run, as Ansible does).
  - Nodes are URLs (C(https://vault.example:8200)) or Kubernetes targets (C(pod/vault-0)) reached
    through C(kubectl port-forward), which the module opens and closes itself.
version_added: "0.1.0"
author: tai-deploy contributors
requirements:
  - requests
  - cryptography
  - PyYAML
extends_documentation_fragment:
  - tai_vault
options:
  nodes:
    description:
      - The Vault nodes. The first one is initialised when needed; all are unsealed.
      - Each is an C(http://) or C(https://) URL, or a Kubernetes target such as C(pod/vault-0)
        reached through O(port_forward).
    type: list
    elements: str
    required: true
  secret_shares:
    description: Number of key shares created at init (unseal or recovery shares).
    type: int
    default: 5
  secret_threshold:
    description: Number of shares needed to unseal or to generate a root token.
    type: int
    default: 3
  holders:
    description:
      - The holders of the shards, one per share, each a C(name) and an OpenPGP C(public_key)
        (ASCII-armoured or the base64 of the binary key). At init Vault encrypts shard i to
        holder i (C(pgp_keys), C(recovery_pgp_keys)), and the file keeps only the ciphertexts.
      - Ignored once Vault is initialised (a rotation re-encrypts the shards).
    type: list
    elements: dict
    default: []
  unseal_keys:
    description:
      - Shamir seal with holders only. The unseal shards the holders decrypted for this run;
        never stored. Without them a sealed node stops the run with one sentence.
    type: list
    elements: str
    default: []
  join_timeout:
    description: Seconds to wait for a raft follower to join before unsealing it.
    type: float
    default: 120
  unseal_timeout:
    description: Seconds to wait for a node to report unsealed after the shards were accepted.
    type: float
    default: 60
attributes:
  check_mode:
    support: full
    details: Reads the seal status and reports what would be initialised or unsealed.
  diff_mode:
    support: none
notes:
  - Runs on the controller. Test it against OpenBao (API-compatible), see tests/*/test_vault*.py.
seealso:
  - module: vault_configure
"""

EXAMPLES = r"""
- name: Initialise Vault once and unseal every replica through kubectl port-forward
  vault_init_unseal:
    nodes: [pod/vault-0, pod/vault-1, pod/vault-2]
    init_file: "{{ vault_init_file }}"
    password_file: "{{ vault_secrets_password_file }}"
    ca_cert: "{{ vault_api_ca_cert }}"
    port_forward:
      kubectl: "{{ tai_kubectl_binary }}"
      context: "{{ tai_kube_context }}"
      namespace: vault

- name: Unseal a server reached by URL
  vault_init_unseal:
    nodes: [http://127.0.0.1:8200]
    init_file: /secure/vault-init.yml
    password_file: ~/.vault-password
"""

RETURN = r"""
initialized_now:
  description: Whether this run initialised Vault (in check mode, whether it would).
  returned: always
  type: bool
key_type:
  description: C(unseal) (Shamir seal) or C(recovery) (auto-unseal seal) shards.
  returned: always
  type: str
  sample: unseal
seal_type:
  description: The server's seal type as reported by C(sys/seal-status).
  returned: always
  type: str
  sample: shamir
nodes:
  description: Per node, its state before the run and what the module did.
  returned: always
  type: list
  elements: dict
  sample: [{"node": "pod/vault-0", "before": "sealed", "action": "unsealed"}]
init_file:
  description: The encrypted init material file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

# The port_forward suboptions (the same in vault_init_unseal and vault_configure).
PORT_FORWARD_ARGSPEC = {
    "kubectl": {"type": "path", "required": True},
    "namespace": {"type": "str", "default": "vault"},
    "context": {"type": "str"},
    "remote_port": {"type": "int", "default": 8200},
    "scheme": {"type": "str", "choices": ["http", "https"], "default": "https"},
    "timeout": {"type": "float", "default": 30},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nodes": {"type": "list", "elements": "str", "required": True},
            "init_file": {"type": "path", "required": True},
            "password_file": {"type": "path", "required": True, "no_log": False},
            "secret_shares": {"type": "int", "default": 5},
            "secret_threshold": {"type": "int", "default": 3},
            "ca_cert": {"type": "path"},
            "port_forward": {"type": "dict", "options": PORT_FORWARD_ARGSPEC},
            "timeout": {"type": "float", "default": 10},
            "join_timeout": {"type": "float", "default": 120},
            "unseal_timeout": {"type": "float", "default": 60},
            "holders": {"type": "list", "elements": "dict", "default": []},
            "unseal_keys": {"type": "list", "elements": "str", "default": [], "no_log": True},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.vault_api import VaultError
    from ansible.module_utils.tai_deploy.vault_bootstrap import (
        Connector,
        PortForward,
        init_and_unseal,
    )
    from ansible.module_utils.tai_deploy.vault_custody import CustodyError, parse_holders
    from ansible.module_utils.tai_deploy.vault_secrets import AnsibleVaultCipher, MaterialError

    p = module.params
    forward = PortForward(**p["port_forward"]) if p["port_forward"] else None
    connector = Connector(ca_cert=p["ca_cert"], timeout=p["timeout"], forward=forward)
    try:
        holders = [(h.name, h.key.base64) for h in parse_holders(p["holders"])]
        cipher = AnsibleVaultCipher.from_password_file(p["password_file"])
        result = init_and_unseal(
            p["nodes"], init_file=p["init_file"], cipher=cipher, connector=connector,
            shares=p["secret_shares"], threshold=p["secret_threshold"],
            check=module.check_mode, join_timeout=p["join_timeout"],
            unseal_timeout=p["unseal_timeout"], on_secret=module.no_log_values.update,
            holders=holders, unseal_keys=p["unseal_keys"])
    except (VaultError, MaterialError, CustodyError) as exc:
        module.fail_json(msg=str(exc), init_file=p["init_file"])
    except OSError as exc:
        module.fail_json(msg=f"cannot write {p['init_file']}: {exc.strerror}",
                         init_file=p["init_file"])
    except Exception as exc:
        # Anything else still goes through fail_json, which masks every secret registered so
        # far (no_log_values); a raw traceback would not.
        module.fail_json(msg=f"unexpected {type(exc).__name__} in vault_init_unseal: {exc}")
    module.exit_json(
        changed=result.changed, initialized_now=result.initialized_now,
        key_type=result.key_type, seal_type=result.seal_type,
        nodes=[n.as_dict() for n in result.nodes], init_file=p["init_file"])


if __name__ == "__main__":
    main()
