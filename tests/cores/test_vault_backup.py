"""Vault raft snapshots to a bucket and back, on a REAL OpenBao server.

Secrets are written, a snapshot is taken with a token that holds only the role's
``vault-snapshot`` policy (what the CronJob's Kubernetes login yields) and uploaded to the Cloud
Storage double; the server's data directory is destroyed; the restore initialises the empty
server with a throw-away shard, forces the snapshot in, the server is restarted (the playbook
restarts the pods) and unsealed with the original shards: every secret is back, counted.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from helpers.ansible_run import REPO, run_playbook
from helpers.gcs_double import GcsDouble, gcs_double
from helpers.vault_server import BaoServer
from tai_deploy.backup_store import BackupStore, StoreError, UrllibTransport, check_origin
from tai_deploy.backup_store import verify_download as verify_sha
from tai_deploy.vault_api import (
    VaultClient,
    VaultError,
    create_orphan_token,
    ensure_secrets_engine,
    generate_root,
    revoke_self,
)
from tai_deploy.vault_bootstrap import Connector, init_and_unseal
from tai_deploy.vault_restore import restore, verify
from tai_deploy.vault_secrets import AnsibleVaultCipher, load_material
from tai_deploy.vault_snapshot import (
    SnapshotError,
    VaultHttp,
    check_snapshot_file,
    latest,
    take_snapshot,
)

REGION = "europe-west1"
SECRETS = 40
DEFAULTS = yaml.safe_load((REPO / "roles/vault/defaults/main.yml").read_text())


def snapshot_policy() -> str:
    text: str = DEFAULTS["vault_default_policies"]["vault-snapshot"]
    return text


def count_secrets(client: VaultClient) -> int:
    listed = client.request("LIST", "tai/metadata/app", missing_ok=True) or {}
    return len((listed.get("data") or {}).get("keys") or [])


World = tuple[BaoServer, Path, AnsibleVaultCipher, BackupStore, GcsDouble]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = BaoServer(tmp_path / "bao", lifetime=300)
    server.start()
    cipher = AnsibleVaultCipher(b"test-password")
    init_file = tmp_path / "secrets" / "vault-init.yml"
    init_and_unseal([server.addr], init_file=init_file, cipher=cipher, connector=Connector(),
                    shares=3, threshold=2)
    with gcs_double("tai-test-europe-west1-backups") as (endpoint, state):
        store = BackupStore(state.bucket, UrllibTransport(None), endpoint)
        try:
            yield server, init_file, cipher, store, state
        finally:
            server.stop()


def root_client(server: BaoServer, init_file: Path, cipher: AnsibleVaultCipher) -> VaultClient:
    material = load_material(init_file, cipher)
    assert material is not None
    client = VaultClient(server.addr)
    root = generate_root(client, material.keys, material.threshold)
    token = create_orphan_token(client.with_token(root), policies=["root"], ttl="10m",
                                display_name="test")
    revoke_self(client.with_token(root))
    return client.with_token(token)


def fill(admin: VaultClient, count: int) -> None:
    ensure_secrets_engine(admin, "tai", "kv", options={"version": "2"})
    for i in range(count):
        admin.request("POST", f"tai/data/app/secret-{i:05d}", {"data": {"value": f"v{i}"}})


def snapshot_token(admin: VaultClient) -> str:
    admin.request("PUT", "sys/policies/acl/vault-snapshot", {"policy": snapshot_policy()})
    data = admin.request("POST", "auth/token/create", {"policies": ["vault-snapshot"],
                                                       "ttl": "5m"}) or {}
    return str(data["auth"]["client_token"])


def test_the_snapshot_policy_reads_snapshots_and_nothing_else(world: World) -> None:
    server, init_file, cipher, store, _ = world
    admin = root_client(server, init_file, cipher)
    fill(admin, 2)
    narrow = admin.with_token(snapshot_token(admin))
    status, _ = narrow.call("GET", "tai/data/app/secret-00000")
    assert status == 403
    status, _ = narrow.call("GET", "sys/storage/raft/configuration")
    assert status == 403
    obj = take_snapshot(VaultHttp(server.addr, token=narrow._token), store, region=REGION,
                        workdir=init_file.parent)
    assert obj.name.startswith(f"vault/{REGION}/") and obj.size > 0


def test_snapshot_destroy_restore_unseal_every_secret_back(world: World, tmp_path: Path) -> None:
    server, init_file, cipher, store, state = world
    admin = root_client(server, init_file, cipher)
    fill(admin, SECRETS)
    assert count_secrets(admin) == SECRETS
    taken = take_snapshot(VaultHttp(server.addr, token=snapshot_token(admin)), store,
                          region=REGION, workdir=tmp_path,
                          now=datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    meta = state.objects[taken.name].resource["metadata"]
    assert meta["tai-region"] == REGION and meta["tai-created"] == "2026-12-01T03:00:00Z"
    assert meta["tai-vault-version"] and len(meta["tai-sha256"]) == 64

    server.stop()
    shutil.rmtree(server.workdir / f"raft-{server.node_id}")
    server.start()
    assert not server.seal_status()["initialized"]

    chosen = latest(store, REGION)
    assert chosen.name == taken.name
    check_origin(chosen, kind="vault-raft", region=REGION, allow_other_region=False)
    local = tmp_path / "restore.snap"
    store.download(chosen.name, local)
    verify_sha(chosen, local)
    check_snapshot_file(local, chosen.name)
    result = restore(server.addr, local, chosen, init_file=init_file,
                     restore_init_file=tmp_path / "secrets" / "vault-restore.yml",
                     cipher=cipher, connector=Connector(), confirm=False)
    assert result.endpoint == "sys/storage/raft/snapshot-force"
    assert result.restart_needed
    assert not (tmp_path / "secrets" / "vault-restore.yml").exists()

    server.restart()
    unsealed = init_and_unseal([server.addr], init_file=init_file, cipher=cipher,
                               connector=Connector())
    assert [n.action for n in unsealed.nodes] == ["unsealed"]
    facts = verify(server.addr, chosen, connector=Connector())
    assert facts["cluster_id"] == meta["tai-vault-cluster-id"]
    admin = root_client(server, init_file, cipher)
    assert count_secrets(admin) == SECRETS
    value = admin.request("GET", f"tai/data/app/secret-{SECRETS - 1:05d}") or {}
    assert value["data"]["data"]["value"] == f"v{SECRETS - 1}"


def test_a_live_vault_is_not_overwritten_without_confirmation(world: World,
                                                              tmp_path: Path) -> None:
    server, init_file, cipher, store, _ = world
    admin = root_client(server, init_file, cipher)
    fill(admin, 3)
    taken = take_snapshot(VaultHttp(server.addr, token=snapshot_token(admin)), store,
                          region=REGION, workdir=tmp_path)
    local = tmp_path / "s.snap"
    store.download(taken.name, local)
    with pytest.raises(VaultError, match=r"holds live data.*vault_restore_confirm=true"):
        restore(server.addr, local, taken, init_file=init_file,
                restore_init_file=tmp_path / "r.yml", cipher=cipher, connector=Connector(),
                confirm=False)
    admin.request("DELETE", "tai/metadata/app/secret-00002")
    assert count_secrets(admin) == 2
    result = restore(server.addr, local, taken, init_file=init_file,
                     restore_init_file=tmp_path / "r.yml", cipher=cipher, connector=Connector(),
                     confirm=True)
    assert result.endpoint == "sys/storage/raft/snapshot"   # same cluster: no force
    assert not result.restart_needed
    verify(server.addr, taken, connector=Connector())
    assert count_secrets(root_client(server, init_file, cipher)) == 3


def test_corrupt_missing_and_foreign_snapshots_are_refused(world: World, tmp_path: Path) -> None:
    server, init_file, cipher, store, state = world
    admin = root_client(server, init_file, cipher)
    fill(admin, 1)
    with pytest.raises(StoreError, match=r"holds no Vault snapshot of europe-west1"):
        latest(store, REGION)
    taken = take_snapshot(VaultHttp(server.addr, token=snapshot_token(admin)), store,
                          region=REGION, workdir=tmp_path)
    blob = state.objects[taken.name]
    blob.data = blob.data[:100] + bytes([blob.data[100] ^ 0xFF]) + blob.data[101:]
    local = tmp_path / "c.snap"
    store.download(taken.name, local)
    with pytest.raises(StoreError, match=r"is corrupt: its sha256 is .* refusing to restore it"):
        verify_sha(taken, local)
    local.write_bytes(b"not a snapshot at all")
    with pytest.raises(SnapshotError, match=r"not a Vault raft snapshot"):
        check_snapshot_file(local, taken.name)
    with pytest.raises(StoreError, match=r"comes from region europe-west1, not us-central1"):
        check_origin(taken, kind="vault-raft", region="us-central1", allow_other_region=False)
    check_origin(taken, kind="vault-raft", region="us-central1", allow_other_region=True)


@pytest.mark.playbook
def test_the_restore_playbook_refuses_a_live_vault_then_restores_it_when_confirmed(
        world: World, tmp_path: Path) -> None:
    server, init_file, cipher, store, state = world
    admin = root_client(server, init_file, cipher)
    fill(admin, 4)
    take_snapshot(VaultHttp(server.addr, token=snapshot_token(admin)), store, region=REGION,
                  workdir=tmp_path)
    admin.request("DELETE", "tai/metadata/app/secret-00003")
    password = tmp_path / "password"
    password.write_text("test-password\n")
    extra = {
        "ansible_python_interpreter": sys.executable,
        "vault_access": "direct", "vault_api_addr": server.addr, "vault_api_ca_cert": "",
        "vault_init_file": str(init_file), "vault_secrets_password_file": str(password),
        "vault_restore_init_file": str(tmp_path / "restore.yml"),
        "vault_seal_type": "shamir", "vault_key_shares": 3, "vault_key_threshold": 2,
        "vault_backup_bucket": state.bucket, "vault_restore_storage_endpoint": store.endpoint,
        "vault_restore_auth_kind": "none",
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra))
    env = {"TAI_BUILD_ROOT": str(tmp_path / "build"),
           "ANSIBLE_VAULT_PASSWORD_FILE": str(password)}
    args = ("-l", REGION, "-e", f"@{vars_file}", "-e", "tai_apply=true",
            "playbooks/vault-restore.yml")
    refused = run_playbook(*args, env=env)
    assert refused.returncode != 0
    assert "holds live data; restoring vault/europe-west1/" in refused.output
    assert count_secrets(admin) == 3
    done = run_playbook(*args, "-e", "vault_restore_confirm=true", env=env)
    assert done.returncode == 0, done.output[-3000:]
    assert "serves cluster" in done.output
    assert count_secrets(root_client(server, init_file, cipher)) == 4
