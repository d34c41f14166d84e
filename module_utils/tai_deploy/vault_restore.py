"""Restore a raft snapshot into a region's Vault, on the controller (playbooks/vault-restore.yml).

Order, chosen so that nothing is overwritten by surprise and a crash loses nothing:

1. The snapshot was downloaded and checked before this runs (kind, region, sha256, archive).
2. An initialised Vault holds live data: without ``confirm`` the restore is refused.
3. A token: on a live Vault, a root token generated from the region's stored shards and at once
   exchanged for a short-lived orphan token (the configure step's way). On a Vault whose storage
   was lost (uninitialised), Vault is initialised with ONE throw-away shard, whose material is
   written (encrypted, atomically) to ``restore_init_file`` before it is used, so a rerun after a
   crash continues with it; the snapshot replaces that keyring, and the file is removed once the
   snapshot is in.
4. ``POST sys/storage/raft/snapshot`` (same cluster id) or ``snapshot-force`` (another cluster:
   the throw-away one, or another region's). After a forced restore Vault seals itself and keeps
   the old seal configuration in memory until it restarts: the playbook restarts the server pods,
   then the existing unseal path unseals them with the snapshot cluster's shards.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backup_store import StoredObject
from .vault_api import (
    VaultClient,
    VaultError,
    create_orphan_token,
    generate_root,
    initialize,
    revoke_self,
    seal_status,
    submit_unseal_keys,
    wait_serving,
)
from .vault_bootstrap import Connector, SecretSink, _ignore
from .vault_secrets import (
    Cipher,
    InitMaterial,
    MaterialError,
    ensure_writable,
    load_material,
    save_material,
)
from .vault_snapshot import SNAPSHOT_PATH, VaultHttp, cluster_facts, restore_endpoint


@dataclass
class RestoreResult:
    snapshot: str
    endpoint: str = ""
    actions: list[str] = field(default_factory=list)
    restart_needed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "endpoint": f"/v1/{self.endpoint}",
                "actions": self.actions, "restart_needed": self.restart_needed}


def _short_token(client: VaultClient, material: InitMaterial, ttl: str,
                 on_secret: SecretSink) -> str:
    root = generate_root(client, material.keys, material.threshold)
    on_secret([root])
    root_client = client.with_token(root)
    try:
        token = create_orphan_token(root_client, policies=["root"], ttl=ttl,
                                    display_name="tai-deploy-vault-restore")
        on_secret([token])
    finally:
        revoke_self(root_client)
    return token


def restore(  # noqa: PLR0915 - one flow, read top to bottom
        node: str, snapshot: Path, obj: StoredObject, *, init_file: str | Path,
            restore_init_file: str | Path, cipher: Cipher, connector: Connector,
            confirm: bool, token_ttl: str = "15m", check: bool = False,
            serve_timeout: float = 60.0, on_secret: SecretSink = _ignore) -> RestoreResult:
    result = RestoreResult(obj.name)
    restore_file = Path(restore_init_file)
    with connector.connect(node) as client:
        status = seal_status(client)
        throwaway = load_material(restore_file, cipher)
        if throwaway is not None:
            on_secret(throwaway.secrets())
        token: str | None = None
        if status.initialized and throwaway is None:
            if not confirm:
                raise VaultError(
                    f"Vault at {node} is initialised and holds live data; restoring {obj.name} "
                    "would replace all of it, so the restore is refused without the explicit "
                    "confirmation (-e vault_restore_confirm=true)")
            if status.sealed:
                raise VaultError(f"Vault at {node} is sealed; unseal it first (--tags "
                                 "vault_unseal), or restore into a Vault whose storage is empty")
            material = load_material(init_file, cipher)
            if material is None:
                raise MaterialError(f"{init_file} does not exist; the restore needs the "
                                    "region's shards to obtain a token")
            on_secret(material.secrets())
            result.actions.append("took a short-lived token from the stored shards")
            if not check:
                token = _short_token(client, material, token_ttl, on_secret)
        elif throwaway is not None:
            result.actions.append(f"continued with the throw-away keys of {restore_file}")
            if status.sealed and not check:
                submit_unseal_keys(client, throwaway.keys, throwaway.threshold)
            token = throwaway.root_token
        else:
            result.actions.append("initialised the empty Vault with one throw-away shard")
            if not check:
                ensure_writable(restore_file)
                keys, root = initialize(client, 1, 1, recovery=status.recovery_seal)
                on_secret([*keys, root])
                material = InitMaterial.new(status.key_type, 1, 1, keys, root)
                save_material(restore_file, material, cipher)
                if not status.recovery_seal:
                    submit_unseal_keys(client, keys, 1)
                token = root
        if check:
            result.endpoint = SNAPSHOT_PATH
            result.actions.append(f"would send {obj.name} to Vault at {node}")
            return result
        wait_serving(client, serve_timeout)
        http = VaultHttp(client.addr, connector.ca_cert, token)
        live = cluster_facts(http)["cluster_id"]
        result.endpoint = restore_endpoint(obj.metadata.get("tai-vault-cluster-id", ""), live)
        http.upload(result.endpoint, snapshot)
        result.actions.append(f"restored {obj.name} through /v1/{result.endpoint}")
        if result.endpoint != SNAPSHOT_PATH:
            # Vault sealed itself with the snapshot's keyring; it reads the snapshot cluster's
            # seal configuration only at start.
            result.restart_needed = True
            restore_file.unlink(missing_ok=True)
        elif throwaway is None:
            with contextlib.suppress(VaultError):
                revoke_self(client.with_token(token))
    return result


def verify(node: str, obj: StoredObject, *, connector: Connector, timeout: float = 120.0
           ) -> dict[str, str]:
    """Vault serves again, unsealed, as the snapshot's cluster; its facts."""
    with connector.connect(node) as client:
        wait_serving(client, timeout)
        facts = cluster_facts(VaultHttp(client.addr, connector.ca_cert))
    expected = obj.metadata.get("tai-vault-cluster-id", "")
    if expected and facts["cluster_id"] != expected:
        raise VaultError(f"Vault at {node} serves cluster {facts['cluster_id']}, not the "
                         f"snapshot's cluster {expected}; the restore did not take")
    return facts
