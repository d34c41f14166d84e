#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: restore a raft snapshot from the backup bucket into a region's Vault."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_snapshot_restore
short_description: Restore a Vault raft snapshot from Cloud Storage, or verify the restored Vault
description:
  - O(action=restore) picks the snapshot (O(snapshot), else the newest of O(region)), downloads
    it, refuses it in one sentence when it is missing, not a snapshot of the backup job, from
    another region (unless O(allow_other_region)), not a raft snapshot archive or when its
    sha256 differs from the one recorded beside it; then refuses to replace an initialised
    Vault without O(confirm), and restores it through C(sys/storage/raft/snapshot) (same
    cluster) or C(snapshot-force) (another cluster's keys; RV(restart_needed) is then true, and the
    playbook restarts the server pods and unseals them with M(vault_init_unseal)).
  - An uninitialised Vault (storage lost) is initialised with one throw-away shard first,
    kept encrypted in O(restore_init_file) until the snapshot is in.
  - O(action=verify) waits until Vault serves, unsealed, as the snapshot's cluster.
  - Check mode downloads and checks the snapshot and reports what would be done.
version_added: "0.1.0"
author: tai-deploy contributors
requirements: [requests, cryptography, PyYAML, google-auth]
extends_documentation_fragment:
  - tai_vault
options:
  action:
    description: What to do.
    type: str
    choices: [restore, verify]
    default: restore
  node:
    description: The Vault node, an http(s) URL or a Kubernetes target such as C(pod/vault-0).
    type: str
    required: true
  region:
    description: Region whose Vault is restored (and whose snapshots are looked for).
    type: str
    required: true
  bucket:
    description: Backup bucket.
    type: str
    required: true
  snapshot:
    description: Object name of the snapshot; empty for the newest one of O(region).
    type: str
    default: ""
  allow_other_region:
    description: Accept a snapshot taken in another region.
    type: bool
    default: false
  confirm:
    description: Allow replacing the data of an initialised Vault.
    type: bool
    default: false
  restore_init_file:
    description: Encrypted file of the throw-away shard used while an empty Vault is restored.
    type: path
    required: true
  workdir:
    description: Local folder for the downloaded snapshot.
    type: path
    required: true
  storage_endpoint:
    description: Cloud Storage endpoint; a loopback URL for a test double.
    type: str
    default: https://storage.googleapis.com
  auth_kind:
    description: C(application) (Application Default Credentials) or C(none) (loopback only).
    type: str
    choices: [application, none]
    default: application
  token_ttl:
    description: Lifetime of the short-lived token used on a live Vault.
    type: str
    default: 15m
  timeout:
    description: Seconds per Vault request.
    type: float
    default: 600
"""

EXAMPLES = r"""
- name: Restore the newest snapshot of the region
  vault_snapshot_restore:
    node: pod/vault-0
    region: europe-west1
    bucket: tai-tai-production-europe-west1-backups
    init_file: secrets/production/europe-west1/vault-init.yml
    restore_init_file: secrets/production/europe-west1/vault-restore.yml
    password_file: ~/.tai-vault-pass
    workdir: /tmp/vault-restore
    port_forward: {kubectl: kubectl, namespace: vault, context: gke_p_europe-west1_tai-cluster}
"""

RETURN = r"""
snapshot:
  description: Object name of the snapshot.
  returned: always
  type: str
endpoint:
  description: Vault endpoint the snapshot was sent to.
  returned: action=restore
  type: str
restart_needed:
  description: The server pods must restart before they can be unsealed (forced restore).
  returned: action=restore
  type: bool
actions:
  description: What was done, in order.
  returned: action=restore
  type: list
  elements: str
facts:
  description: Region, time, Vault version, cluster id and sha256 recorded with the snapshot.
  returned: always
  type: dict
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

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
            "action": {"type": "str", "choices": ["restore", "verify"], "default": "restore"},
            "node": {"type": "str", "required": True},
            "region": {"type": "str", "required": True},
            "bucket": {"type": "str", "required": True},
            "snapshot": {"type": "str", "default": ""},
            "allow_other_region": {"type": "bool", "default": False},
            "confirm": {"type": "bool", "default": False},
            "init_file": {"type": "path", "required": True},
            "restore_init_file": {"type": "path", "required": True},
            "password_file": {"type": "path", "required": True, "no_log": False},
            "workdir": {"type": "path", "required": True},
            "storage_endpoint": {"type": "str", "default": "https://storage.googleapis.com"},
            "auth_kind": {"type": "str", "choices": ["application", "none"],
                          "default": "application"},
            "token_ttl": {"type": "str", "default": "15m"},
            "ca_cert": {"type": "path"},
            "port_forward": {"type": "dict", "options": PORT_FORWARD_ARGSPEC},
            "timeout": {"type": "float", "default": 600},
        },
        supports_check_mode=True,
    )
    from ansible.module_utils.tai_deploy.backup_store import (
        BackupStore,
        StoreError,
        check_origin,
        controller_transport,
        verify_download,
    )
    from ansible.module_utils.tai_deploy.vault_api import VaultError
    from ansible.module_utils.tai_deploy.vault_bootstrap import Connector, PortForward
    from ansible.module_utils.tai_deploy.vault_restore import restore, verify
    from ansible.module_utils.tai_deploy.vault_secrets import AnsibleVaultCipher, MaterialError
    from ansible.module_utils.tai_deploy.vault_snapshot import (
        KIND,
        SnapshotError,
        check_snapshot_file,
        latest,
    )

    p = module.params
    forward = PortForward(**p["port_forward"]) if p["port_forward"] else None
    connector = Connector(ca_cert=p["ca_cert"], timeout=p["timeout"], forward=forward)
    out: dict[str, object] = {}
    changed = False
    try:
        store = BackupStore(p["bucket"], controller_transport(p["auth_kind"],
                                                              p["storage_endpoint"]),
                            p["storage_endpoint"])
        if p["snapshot"]:
            obj = store.get(p["snapshot"])
            if obj is None:
                raise StoreError(f"snapshot {p['snapshot']} does not exist in "
                                 f"gs://{p['bucket']}; nothing was restored")
        else:
            obj = latest(store, p["region"])
        check_origin(obj, kind=KIND, region=p["region"],
                     allow_other_region=p["allow_other_region"])
        out.update(snapshot=obj.name, facts=obj.metadata)
        if p["action"] == "verify":
            out["served"] = verify(p["node"], obj, connector=connector)
        else:
            local = Path(p["workdir"]) / "vault.snap"
            local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                store.download(obj.name, local)
                verify_download(obj, local)
                check_snapshot_file(local, obj.name)
                cipher = AnsibleVaultCipher.from_password_file(p["password_file"])
                result = restore(p["node"], local, obj, init_file=p["init_file"],
                                 restore_init_file=p["restore_init_file"], cipher=cipher,
                                 connector=connector, confirm=p["confirm"],
                                 token_ttl=p["token_ttl"], check=module.check_mode,
                                 on_secret=module.no_log_values.update)
            finally:
                local.unlink(missing_ok=True)
            out.update(result.as_dict())
            changed = True
    except (StoreError, SnapshotError, VaultError, MaterialError) as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg=f"unexpected {type(exc).__name__} in vault_snapshot_restore: {exc}")
    module.exit_json(changed=changed, **out)


if __name__ == "__main__":
    main()
