#!/usr/bin/env python3
"""Snapshot and restore times of Vault (raft) and Redis (per-master RDB) on this machine.

Real servers on loopback (OpenBao, redis-server: 3 masters + 3 replicas, AOF on) and the
Cloud Storage double of the tests, so the figures include the upload and the download through
the same code the CronJobs and the restore playbooks run. Vault: N secrets in a KV v2 mount,
snapshot (GET + sha256 + upload), then the data directory is destroyed and the restore
(download + checks + throw-away init + forced restore + restart + unseal) is timed. Redis: N keys
(16-byte values) across all slots, the set (BGSAVE + SYNC + upload per master), then every node
is killed and wiped and the restore (download + sha256 + the RDB check of the restore, the
project's own and redis-check-rdb + load + restart + re-form until cluster_state:ok) is timed.
The RDB check alone: rdb_check_bench.py.

    python benchmarks/backup_bench.py [--vault-secrets 10000] [--redis-keys 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "module_utils"), str(REPO / "tests")]

from helpers.gcs_double import gcs_double  # noqa: E402
from helpers.redis_nodes import crc16, redis_nodes, run_cluster_init  # noqa: E402
from helpers.vault_server import BaoServer  # noqa: E402
from tai_deploy.backup_store import BackupStore, UrllibTransport, verify_download  # noqa: E402
from tai_deploy.redis_snapshot import (  # noqa: E402
    Resp,
    check_snapshot,
    latest_set,
    members,
    reform,
    take_snapshots,
)
from tai_deploy.vault_api import VaultClient  # noqa: E402
from tai_deploy.vault_bootstrap import Connector, init_and_unseal  # noqa: E402
from tai_deploy.vault_restore import restore, verify  # noqa: E402
from tai_deploy.vault_secrets import AnsibleVaultCipher, load_material  # noqa: E402
from tai_deploy.vault_snapshot import (  # noqa: E402
    VaultHttp,
    check_snapshot_file,
    latest,
    take_snapshot,
)

REGION = "europe-west1"


def timed(label: str, results: dict[str, float], func: object) -> object:
    start = time.perf_counter()
    value = func()  # type: ignore[operator]
    results[label] = time.perf_counter() - start
    return value


def bench_vault(count: int, root: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    server = BaoServer(root / "bao", lifetime=3600)
    server.start()
    cipher = AnsibleVaultCipher(b"bench")
    init_file = root / "vault-init.yml"
    try:
        init_and_unseal([server.addr], init_file=init_file, cipher=cipher,
                        connector=Connector(), shares=3, threshold=2)
        material = load_material(init_file, cipher)
        assert material is not None and material.root_token
        admin = VaultClient(server.addr, token=material.root_token)
        admin.request("POST", "sys/mounts/tai", {"type": "kv", "options": {"version": "2"}})

        def fill() -> None:
            for i in range(count):
                admin.request("POST", f"tai/data/app/s{i:06d}", {"data": {"v": f"value-{i}"}})

        timed("vault: write secrets", out, fill)
        with gcs_double("bench-backups") as (endpoint, _):
            store = BackupStore("bench-backups", UrllibTransport(None), endpoint)
            obj = timed("vault: snapshot + upload", out, lambda: take_snapshot(
                VaultHttp(server.addr, token=material.root_token), store, region=REGION,
                workdir=root))
            out["vault: snapshot MiB"] = obj.size / 2**20  # type: ignore[attr-defined]
            server.stop()
            shutil.rmtree(server.workdir / f"raft-{server.node_id}")
            server.start()

            def do_restore() -> None:
                chosen = latest(store, REGION)
                local = root / "restore.snap"
                store.download(chosen.name, local)
                verify_download(chosen, local)
                check_snapshot_file(local, chosen.name)
                restore(server.addr, local, chosen, init_file=init_file,
                        restore_init_file=root / "restore.yml", cipher=cipher,
                        connector=Connector(), confirm=False)
                server.restart()
                init_and_unseal([server.addr], init_file=init_file, cipher=cipher,
                                connector=Connector())
                verify(server.addr, chosen, connector=Connector())

            timed("vault: restore (download..unseal, verified)", out, do_restore)
        listed = admin.request("LIST", "tai/metadata/app") or {}
        assert len(listed["data"]["keys"]) == count
    finally:
        server.stop()
    return out


def bench_redis(count: int, root: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    from chart.test_redis_backup import load, slot_owners  # the tests' own helpers

    with redis_nodes(root / "nodes") as pool, gcs_double("bench-backups") as (endpoint, _):
        nodes = pool.start(6, extra_args=("--appendonly", "yes"))
        assert run_cluster_init([n.address for n in nodes], replicas=1).returncode == 0
        owners = slot_owners(nodes[0].port)

        def fill() -> None:
            batches: dict[str, list[str]] = {}
            for i in range(count):
                key = f"key:{i}"
                batches.setdefault(owners[crc16(key.encode()) % 16384], []).append(key)
            for addr, keys in batches.items():
                with Resp(addr, timeout=300) as conn:
                    for start in range(0, len(keys), 10000):
                        chunk = keys[start:start + 10000]
                        for key in chunk:
                            conn.send("SET", key, "0123456789abcdef")
                        for _ in chunk:
                            conn.reply()

        timed("redis: write keys", out, fill)
        store = BackupStore("bench-backups", UrllibTransport(None), endpoint)
        timed("redis: snapshot set + upload", out, lambda: take_snapshots(
            [nodes[0].address], store, region=REGION, workdir=root))
        for node in nodes:
            node.stop()
            shutil.rmtree(node.workdir)
        for node in nodes:
            node.start()

        def do_restore() -> None:
            chosen = latest_set(store, REGION)
            local = root / "manifest.json"
            store.download(chosen.name, local)
            verify_download(chosen, local)
            objects = {o.name: o for o in store.list(chosen.name.rsplit("/", 1)[0] + "/")}
            set_members = members(json.loads(local.read_text()), objects)
            expected = {}
            for node, member in zip(nodes[:3], set_members, strict=True):
                rdb = root / "dl" / member.obj.name.rsplit("/", 1)[-1]
                store.download(member.obj.name, rdb)
                verify_download(member.obj, rdb)
                expected[member.obj.name] = check_snapshot(rdb, member.obj.name).expected
                load(node, rdb)
            for node in nodes[3:]:
                load(node, None)
            result = reform([(n.address, n.address, m) for n, m in zip(nodes[:3], set_members,
                                                                       strict=True)],
                            [(n.address, n.address) for n in nodes[3:]],
                            expected_keys=expected, timeout=600)
            assert sum(result["keys"].values()) == count

        timed("redis: restore (download..cluster_state:ok, verified)", out, do_restore)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vault-secrets", type=int, default=10000)
    parser.add_argument("--redis-keys", type=int, default=1_000_000)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results.update(bench_vault(args.vault_secrets, Path(tmp) / "vault"))
        results.update(bench_redis(args.redis_keys, Path(tmp) / "redis"))
    print(f"Backups on this machine: {args.vault_secrets} Vault secrets, "
          f"{args.redis_keys} Redis keys")
    for label, value in results.items():
        unit = "" if "MiB" in label else " s"
        print(f"  {label:<58} {value:8.2f}{unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
