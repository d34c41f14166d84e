#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: rotate Vault's unseal or recovery shards with a verified rekey."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_rekey
short_description: Rotate Vault's unseal shards (or recovery shards) without ever losing one
description:
  - Rekeys the Vault reached through O(node) with the current shards stored in O(init_file) and
    stores the new ones there. Shamir seals rotate their B(unseal) shards (C(sys/rekey/*));
    auto-unseal seals such as Google Cloud KMS rotate their B(recovery) shards
    (C(sys/rekey-recovery-key/*)).
  - "Order, so that a crash at any point leaves a file that unseals Vault: start a rekey with
    C(require_verification); submit a threshold of the current shards; write the new shards to
    O(init_file) as C(pending) next to the current ones (encrypted, atomic); verify a threshold
    of the new shards with Vault, which makes them the active ones; promote them to current in
    the file (atomic) and drop the old ones."
  - A rerun finishes an interrupted rotation. When the file holds pending shards and Vault still
    waits for their verification, the verification is continued. When no verification is
    waiting, the module finds out whether Vault already verified them (a rekey that is started
    with them and cancelled at once, which changes nothing) and promotes them, or else rotates
    anew from the current shards.
  - A rekey in progress that is not this module's (stale, from a crashed run or someone else) is
    cancelled first (C(DELETE sys/rekey/init)); its shards were never verified, so the current
    ones stay valid.
  - Refuses with one sentence, without changing anything, when the file is missing, holds shards
    of the other kind, when Vault is sealed or not initialised, or when Vault refuses the
    current shards (the rekey is cancelled and the file not written).
  - Shards are never returned and are masked in all output. O(password_file) is the usual
    ansible-vault password file (an executable file is run, as Ansible does).
  - The node is a URL (C(https://vault.example:8200)) or a Kubernetes target (C(pod/vault-0))
    reached through C(kubectl port-forward), which the module opens and closes itself. A standby
    node forwards the rekey to the active one.
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
      - The Vault node to talk to. An C(http://) or C(https://) URL, or a Kubernetes target such
        as C(pod/vault-0) reached through O(port_forward).
    type: str
    required: true
  secret_shares:
    description: Number of new shards. Default the number of current shards.
    type: int
  holders:
    description:
      - The holders of the new shards (C(name), OpenPGP C(public_key)), one per share. The rekey
        is started with their keys, so the new shards are stored encrypted to them; the
        verification then waits for their decrypted new shards (O(new_keys), a second run).
    type: list
    elements: dict
    default: []
  current_keys:
    description: The current shards decrypted by their holders (when the file holds them encrypted).
    type: list
    elements: str
    default: []
  new_keys:
    description: The new shards decrypted by their holders, to verify a pending rotation.
    type: list
    elements: str
    default: []
  secret_threshold:
    description:
      - Number of new shards needed to unseal (or to authorise a root token). Default the
        current threshold. Vault refuses a threshold of 1 with more than one share.
    type: int
attributes:
  check_mode:
    support: full
    details: Reads the seal and rekey status and the file, and reports the planned actions.
  diff_mode:
    support: none
notes:
  - Runs on the controller. Every run that succeeds rotates (or finishes a rotation), so it
    reports C(changed=true); it is an operation, not a desired state.
  - HashiCorp Vault serves the rekey endpoints without a token. OpenBao 2.5 and later disable
    them unless the listener sets C(disable_unauthed_rekey_endpoints = false).
seealso:
  - module: vault_init_unseal
"""

EXAMPLES = r"""
- name: Rotate the unseal shards through kubectl port-forward, keeping 5 shards, threshold 3
  vault_rekey:
    node: pod/vault-0
    init_file: "{{ vault_init_file }}"
    password_file: "{{ vault_secrets_password_file }}"
    ca_cert: "{{ vault_api_ca_cert }}"
    port_forward:
      kubectl: "{{ tai_kubectl_binary }}"
      context: "{{ tai_kube_context }}"
      namespace: vault

- name: Rotate into 7 shards with threshold 4, on a server reached by URL
  vault_rekey:
    node: https://vault.internal.example:8200
    init_file: /secure/vault-init.yml
    password_file: ~/.vault-password
    secret_shares: 7
    secret_threshold: 4
"""

RETURN = r"""
rotated:
  description: Whether new shards became the active ones and the file holds only them (in check
    mode, whether that would happen).
  returned: always
  type: bool
resumed:
  description: Whether this run finished a rotation that an earlier, interrupted run started.
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
shares:
  description: Number of shards after the rotation.
  returned: always
  type: int
  sample: 5
threshold:
  description: Threshold after the rotation.
  returned: always
  type: int
  sample: 3
previous_shares:
  description: Number of shards before the rotation.
  returned: always
  type: int
previous_threshold:
  description: Threshold before the rotation.
  returned: always
  type: int
actions:
  description: What the module did (in check mode, would do), in order. Never a shard.
  returned: always
  type: list
  elements: str
init_file:
  description: The encrypted init material file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

# The port_forward suboptions (the same as in vault_init_unseal and vault_configure).
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
            "node": {"type": "str", "required": True},
            "init_file": {"type": "path", "required": True},
            "password_file": {"type": "path", "required": True, "no_log": False},
            "secret_shares": {"type": "int"},
            "secret_threshold": {"type": "int"},
            "ca_cert": {"type": "path"},
            "port_forward": {"type": "dict", "options": PORT_FORWARD_ARGSPEC},
            "timeout": {"type": "float", "default": 10},
            "holders": {"type": "list", "elements": "dict", "default": []},
            "current_keys": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "new_keys": {"type": "list", "elements": "str", "default": [], "no_log": True},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.vault_api import VaultError
    from ansible.module_utils.tai_deploy.vault_bootstrap import Connector, PortForward
    from ansible.module_utils.tai_deploy.vault_custody import CustodyError, parse_holders
    from ansible.module_utils.tai_deploy.vault_rekey import rotate_shards
    from ansible.module_utils.tai_deploy.vault_secrets import AnsibleVaultCipher, MaterialError

    p = module.params
    forward = PortForward(**p["port_forward"]) if p["port_forward"] else None
    connector = Connector(ca_cert=p["ca_cert"], timeout=p["timeout"], forward=forward)
    try:
        holders = [(h.name, h.key.base64) for h in parse_holders(p["holders"])]
        cipher = AnsibleVaultCipher.from_password_file(p["password_file"])
        result = rotate_shards(
            p["node"], init_file=p["init_file"], cipher=cipher, connector=connector,
            shares=p["secret_shares"], threshold=p["secret_threshold"],
            check=module.check_mode, on_secret=module.no_log_values.update,
            holders=holders, current_keys=p["current_keys"], new_keys=p["new_keys"])
    except (VaultError, MaterialError, CustodyError) as exc:
        module.fail_json(msg=str(exc), init_file=p["init_file"])
    except OSError as exc:
        module.fail_json(msg=f"cannot write {p['init_file']}: {exc.strerror}",
                         init_file=p["init_file"])
    except Exception as exc:
        # Anything else still goes through fail_json, which masks every secret registered so
        # far (no_log_values); a raw traceback would not.
        module.fail_json(msg=f"unexpected {type(exc).__name__} in vault_rekey: {exc}")
    module.exit_json(changed=result.changed, init_file=p["init_file"], **result.as_dict())


if __name__ == "__main__":
    main()
