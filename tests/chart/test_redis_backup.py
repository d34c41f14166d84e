"""Per-master Redis snapshots to a bucket and a rebuilt cluster, on REAL redis-server processes.

Three masters and three replicas (AOF on, as in the StatefulSet) are formed by the chart's own
cluster-init script; one key lands in every one of the 16384 slots (plus more); every master is
snapshotted to the Cloud Storage double; every node is killed and its folder wiped; the restore
loads each master's RDB with the chart's redis-load-snapshot.sh, restarts the nodes (the kubelet's
part) and re-forms the cluster: every key is back, each master serves its recorded slots, the
replicas replicate and the cluster reports cluster_state:ok.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from helpers.ansible_run import run_playbook
from helpers.gcs_double import GcsDouble, gcs_double
from helpers.redis_nodes import (
    CHART,
    REDIS_CLI,
    SCRIPT_SHELL,
    RedisNode,
    cli,
    cluster_info,
    cluster_nodes,
    crc16,
    one_key_per_slot,
    redis_nodes,
    run_cluster_init,
    wait_for,
)
from tai_deploy.backup_store import (
    BackupStore,
    StoredObject,
    StoreError,
    UrllibTransport,
    verify_download,
)
from tai_deploy.redis_snapshot import (
    ExpectedKeys,
    RedisError,
    Resp,
    SetMember,
    _wait,
    bgsave_and_wait,
    check_rdb,
    check_snapshot,
    fetch_rdb,
    format_slots,
    latest_set,
    live_data,
    members,
    reform,
    take_snapshots,
)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (run `make setup`)")

REGION = "europe-west1"
LOAD = CHART / "scripts" / "redis-load-snapshot.sh"
EXTRA_KEYS = 3000
AOF = ("--appendonly", "yes")


SLOT_KEYS = one_key_per_slot()


def key_for_slot(slot: int) -> str:
    return SLOT_KEYS[slot]


def slot_owners(port: int) -> list[str]:
    owners = [""] * 16384
    for node in cluster_nodes(port):
        if "master" not in node["flags"]:
            continue
        for item in node["slots"].split():
            low, _, high = item.partition("-")
            for slot in range(int(low), int(high or low) + 1):
                owners[slot] = node["addr"].split("@")[0]
    return owners


def write_keys(port: int) -> dict[str, str]:
    """One key in every slot plus EXTRA_KEYS more, each SET on the master of its slot."""
    owners = slot_owners(port)
    keys = {key_for_slot(s): f"value-{s}" for s in range(16384)}
    keys.update({f"extra:{i}": f"x{i}" for i in range(EXTRA_KEYS)})
    by_master: dict[str, list[tuple[str, str]]] = {}
    for key, value in keys.items():
        by_master.setdefault(owners[crc16(key.encode()) % 16384], []).append((key, value))
    for addr, pairs in by_master.items():
        with Resp(addr) as conn:
            for key, value in pairs:
                conn.send("SET", key, value)
            assert all(conn.reply() == "OK" for _ in pairs)
    return keys


def total_keys(nodes: list[RedisNode]) -> int:
    masters = {n["addr"].split("@")[0] for n in cluster_nodes(nodes[0].port)
               if "master" in n["flags"]}
    return sum(int(cli(n.port, "DBSIZE").strip()) for n in nodes if n.address in masters)


def load(node: RedisNode, rdb: Path | None) -> subprocess.CompletedProcess[str]:
    """The chart's script inside the node's 'pod', then the restart the kubelet would do."""
    arg = "--empty"
    if rdb is not None:
        target = node.workdir / "restore.rdb"
        shutil.copyfile(rdb, target)
        arg = str(target)
    env = {**os.environ, "REDIS_CLI": REDIS_CLI, "REDIS_PORT": str(node.port),
           "REDIS_DATA_DIR": str(node.workdir)}
    proc = subprocess.run([*SCRIPT_SHELL, str(LOAD), arg], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    if node.proc is not None:
        node.proc.wait(timeout=10)
    node.start()
    return proc


def load_set(store: BackupStore, manifest: StoredObject, masters: list[RedisNode],
             tmp_path: Path) -> tuple[list[SetMember], dict[str, ExpectedKeys]]:
    """Download the set's manifest and RDBs (each verified), check every RDB and load the
    i-th into the i-th master with the chart's script; the members and their expected keys."""
    local_manifest = tmp_path / "manifest.json"
    store.download(manifest.name, local_manifest)
    verify_download(manifest, local_manifest)
    objects = {o.name: o for o in store.list(manifest.name.rsplit("/", 1)[0] + "/")}
    members_ = members(json.loads(local_manifest.read_text()), objects)
    expected: dict[str, ExpectedKeys] = {}
    for node, member in zip(masters, members_, strict=True):
        rdb = tmp_path / "restore" / member.obj.name.rsplit("/", 1)[-1]
        store.download(member.obj.name, rdb)
        verify_download(member.obj, rdb)
        expected[member.obj.name] = check_snapshot(rdb, member.obj.name).expected
        run = load(node, rdb)
        assert run.returncode == 0, run.stdout + run.stderr
    return members_, expected


@pytest.fixture
def bucket() -> Iterator[tuple[BackupStore, GcsDouble]]:
    with gcs_double("tai-test-europe-west1-backups") as (endpoint, state):
        yield BackupStore(state.bucket, UrllibTransport(None), endpoint), state


def test_snapshot_kill_wipe_restore_every_key_back(tmp_path: Path,
                                                   bucket: tuple[BackupStore, GcsDouble]
                                                   ) -> None:
    store, state = bucket
    with redis_nodes(tmp_path / "nodes") as pool:
        nodes = pool.start(6, extra_args=AOF)
        formed = run_cluster_init([n.address for n in nodes], replicas=1)
        assert formed.returncode == 0, formed.output
        keys = write_keys(nodes[0].port)
        assert total_keys(nodes) == len(keys)
        before = {n["id"]: n["slots"] for n in cluster_nodes(nodes[0].port)
                  if "master" in n["flags"]}

        manifest_obj = take_snapshots([nodes[0].address], store, region=REGION,
                                      workdir=tmp_path)
        manifest = json.loads(state.objects[manifest_obj.name].data)
        assert sorted((m["node_id"], m["slots"]) for m in manifest["masters"]) == sorted(
            before.items())
        for entry in manifest["masters"]:
            meta = state.objects[entry["object"]].resource["metadata"]
            assert meta["tai-node-id"] == entry["node_id"] and meta["tai-slots"] == entry["slots"]
            assert meta["tai-region"] == REGION and len(meta["tai-sha256"]) == 64

        assert len(live_data([n.address for n in nodes])) == 6   # a restore must be confirmed

        for node in nodes:
            node.stop()
            shutil.rmtree(node.workdir)
        for node in nodes:
            node.start()
        assert live_data([n.address for n in nodes]) == []

        chosen = latest_set(store, REGION)
        assert chosen.name == manifest_obj.name
        masters, replicas = nodes[:3], nodes[3:]
        members_, expected = load_set(store, chosen, masters, tmp_path)
        for node in replicas:
            assert load(node, None).returncode == 0
        result = reform([(n.address, n.address, m) for n, m in zip(masters, members_,
                                                                   strict=True)],
                        [(n.address, n.address) for n in replicas], expected_keys=expected)

        assert sum(result["keys"].values()) == len(keys)
        for node in nodes:
            assert cluster_info(node.port)["cluster_state"] == "ok"
        after = cluster_nodes(nodes[0].port)
        served = sorted(n["slots"] for n in after if "master" in n["flags"])
        assert served == sorted(format_slots(m.slots) for m in members_)
        assert len([n for n in after if "slave" in n["flags"]]) == 3
        assert total_keys(nodes) == len(keys)
        for key in (key_for_slot(0), key_for_slot(16383), "extra:7"):
            assert cli(nodes[0].port, "-c", "GET", key).strip() == keys[key]


def test_a_corrupt_or_incomplete_snapshot_is_refused(tmp_path: Path,
                                                     bucket: tuple[BackupStore, GcsDouble]
                                                     ) -> None:
    store, state = bucket
    with redis_nodes(tmp_path / "nodes") as pool:
        nodes = pool.start(3)
        assert run_cluster_init([n.address for n in nodes]).returncode == 0
        write_keys(nodes[0].port)
        manifest_obj = take_snapshots([nodes[0].address], store, region=REGION,
                                      workdir=tmp_path)
    manifest = json.loads(state.objects[manifest_obj.name].data)
    first = manifest["masters"][0]
    rdb = tmp_path / "a.rdb"
    store.download(first["object"], rdb)
    assert check_rdb(rdb, first["object"]) > 0
    blob = state.objects[first["object"]]
    blob.data = blob.data[: len(blob.data) // 2]
    store.download(first["object"], rdb)
    obj = store.get(first["object"])
    assert obj is not None
    with pytest.raises(StoreError, match=r"is corrupt: its sha256 is"):
        verify_download(obj, rdb)
    with pytest.raises(RedisError, match=r"is corrupt: redis-check-rdb refuses it"):
        check_rdb(rdb, first["object"])
    objects = {o.name: o for o in store.list(manifest_obj.name.rsplit("/", 1)[0] + "/")}
    del objects[first["object"]]
    with pytest.raises(StoreError, match=r"missing from the bucket"):
        members(manifest, objects)
    with pytest.raises(StoreError, match=r"holds no Redis complete snapshot set of us-central1"):
        latest_set(store, "us-central1")


def test_an_rdb_newer_than_the_checker_is_not_called_corrupt(tmp_path: Path) -> None:
    # The chart's Redis 7.4 writes RDB format version 12 (rdb.h of Redis 7.4: RDB_VERSION 12);
    # Debian bookworm's redis-check-rdb (7.0) reads up to version 10. The smallest RDB of a
    # version: the magic REDIS, four version digits, the EOF opcode 0xFF and a zero checksum
    # (checksum disabled), as rdb.c writes and reads it. Version 99: newer than any checker.
    newer = tmp_path / "newer.rdb"
    newer.write_bytes(b"REDIS0099\xff" + bytes(8))
    with pytest.raises(RedisError) as refused:
        check_rdb(newer, "redis/europe-west1/set/master-0.rdb")
    assert str(refused.value) == (
        "snapshot redis/europe-west1/set/master-0.rdb is an RDB of format version 99, newer "
        "than redis-check-rdb on this controller reads; install the redis-check-rdb of the "
        "Redis that wrote it (the chart's redis.image.tag) and restore again")
    older = tmp_path / "v10.rdb"
    older.write_bytes(b"REDIS0010\xff" + bytes(8))
    assert check_rdb(older, "redis/europe-west1/set/master-1.rdb") == 0


def test_reform_refuses_a_node_loaded_with_another_masters_rdb(tmp_path: Path) -> None:
    with redis_nodes(tmp_path / "n") as pool:
        (node,) = pool.start(1)
        cli(node.port, "CLUSTER", "ADDSLOTS", "5")
        cli(node.port, "SET", key_for_slot(5), "x")       # its key lives in slot 5
        other = SetMember(obj=StoredObject("redis/r/s/x.rdb", 1, "1", {}), node_id="x",
                          slots=((6000, 16383),))
        with pytest.raises(RedisError, match=r"holds keys of slots outside 6000-16383"):
            reform([(node.address, node.address, other)], [])


def test_reform_gives_up_with_one_sentence_when_the_cluster_never_reaches_ok(
        tmp_path: Path) -> None:
    with redis_nodes(tmp_path / "n") as pool:
        (node,) = pool.start(1)
        part = SetMember(obj=StoredObject("redis/r/s/x.rdb", 1, "1", {}), node_id="x",
                         slots=((0, 99),))  # 100 of 16384 slots: never cluster_state:ok
        with pytest.raises(RedisError, match=r"^the restored cluster did not reach "
                           r"cluster_state:ok within 0\.3 s$"):
            reform([(node.address, node.address, part)], [], timeout=0.3)


def test_a_node_still_loading_is_waited_for_and_other_errors_stop_at_once() -> None:
    answers: list[bool | RedisError] = [RedisError("LOADING Redis is loading the dataset"),
                                        False, True]

    def check() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, RedisError):
            raise answer
        return answer

    _wait(check, 5, "never")
    assert answers == []

    def refused() -> bool:
        raise RedisError("NOAUTH Authentication required")

    with pytest.raises(RedisError, match="NOAUTH"):
        _wait(refused, 5, "never")


PREPARE = """\
---
- name: Check a Redis snapshot set with the module
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Download and check the newest set
      redis_snapshot_restore:
        action: prepare
        region: europe-west1
        bucket: "{{ bucket }}"
        confirm: "{{ confirm }}"
        nodes: "{{ nodes }}"
        workdir: "{{ workdir }}"
        storage_endpoint: "{{ endpoint }}"
        auth_kind: none
      register: checked

    - name: Show the masters
      ansible.builtin.debug:
        msg: "MASTERS {{ checked.masters | map(attribute='keys') | sum }} {{ checked.live
          | length }}"
"""


@pytest.mark.playbook
def test_the_module_refuses_live_nodes_without_confirmation(tmp_path: Path,
                                                            bucket: tuple[BackupStore, GcsDouble]
                                                            ) -> None:
    store, state = bucket
    playbook = tmp_path / "prepare.yml"
    playbook.write_text(PREPARE)
    with redis_nodes(tmp_path / "nodes") as pool:
        nodes = pool.start(3)
        assert run_cluster_init([n.address for n in nodes]).returncode == 0
        keys = write_keys(nodes[0].port)
        take_snapshots([nodes[0].address], store, region=REGION, workdir=tmp_path)
        extra = {"ansible_python_interpreter": sys.executable, "bucket": state.bucket,
                 "nodes": [n.address for n in nodes], "workdir": str(tmp_path / "dl"),
                 "endpoint": store.endpoint, "confirm": False}
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(extra))
        refused = run_playbook("-i", "localhost,", "-c", "local", "-e", f"@{vars_file}",
                               str(playbook))
        assert refused.returncode != 0
        assert "3 Redis nodes hold data" in refused.output
        assert "-e redis_restore_confirm=true" in refused.output
        done = run_playbook("-i", "localhost,", "-c", "local", "-e", f"@{vars_file}",
                            "-e", "confirm=true", str(playbook))
        assert done.returncode == 0, done.output[-2000:]
        assert f"MASTERS {len(keys)} 3" in done.output


@pytest.mark.playbook
def test_a_set_of_another_region_is_restored_only_when_told(
        tmp_path: Path, bucket: tuple[BackupStore, GcsDouble]) -> None:
    store, state = bucket
    playbook = tmp_path / "prepare.yml"
    playbook.write_text(PREPARE.replace(
        "        auth_kind: none\n",
        "        auth_kind: none\n        source_region: us-central1\n"
        "        allow_other_region: \"{{ allow }}\"\n"))
    with redis_nodes(tmp_path / "nodes") as pool:
        nodes = pool.start(3)
        assert run_cluster_init([n.address for n in nodes]).returncode == 0
        keys = write_keys(nodes[0].port)
        taken = take_snapshots([nodes[0].address], store, region="us-central1",
                               workdir=tmp_path)
        extra = {"ansible_python_interpreter": sys.executable, "bucket": state.bucket,
                 "nodes": [n.address for n in nodes], "workdir": str(tmp_path / "dl"),
                 "endpoint": store.endpoint, "confirm": True, "allow": False}
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(extra))
        args = ("-i", "localhost,", "-c", "local", "-e", f"@{vars_file}", str(playbook))
        refused = run_playbook(*args)
        assert refused.returncode != 0
        assert (f"snapshot {taken.name} comes from region us-central1, not europe-west1; "
                "refusing to restore it unless") in " ".join(refused.output.split())
        done = run_playbook(*args, "-e", "allow=true")
        assert done.returncode == 0, done.output[-2000:]
        assert f"MASTERS {len(keys)} 3" in done.output


def test_a_node_still_loading_its_dataset_is_waited_for_not_fatal() -> None:
    """A replica's first full sync of a large master answers LOADING (seen with 1M keys)."""
    from tai_deploy.redis_snapshot import _ready

    def loading() -> bool:
        raise RedisError("Redis at 127.0.0.1:1 answered: LOADING Redis is loading the dataset")

    def broken() -> bool:
        raise RedisError("Redis at 127.0.0.1:1 answered: ERR unknown command")

    assert _ready(loading) is False
    with pytest.raises(RedisError, match="unknown command"):
        _ready(broken)


# Short enough for a fast test, long enough for three masters' snapshots (under 1 s here).
FLEETING_MS = 2000


def write_commands(port: int, commands: list[tuple[str | int, ...]]) -> None:
    """Each command (SET key ...) on the master of its key's slot, pipelined per master."""
    owners = slot_owners(port)
    by_master: dict[str, list[tuple[str | int, ...]]] = {}
    for command in commands:
        by_master.setdefault(owners[crc16(str(command[1]).encode()) % 16384], []).append(command)
    for addr, mine in by_master.items():
        with Resp(addr) as conn:
            for command in mine:
                conn.send(*command)
            assert all(conn.reply() == "OK" for _ in mine)


def snapshot_then_expire(nodes: list[RedisNode], store: BackupStore, tmp_path: Path,
                         lasting: Mapping[str, str], fleeting: Sequence[str]) -> StoredObject:
    """Write ``lasting`` keys and ``fleeting`` ones that expire after FLEETING_MS, snapshot the
    set before they expire, kill and wipe every node, and return once they have expired."""
    written = time.monotonic()
    write_commands(nodes[0].port, [("SET", k, v) for k, v in lasting.items()]
                   + [("SET", k, "gone", "PX", FLEETING_MS) for k in fleeting])
    manifest_obj = take_snapshots([nodes[0].address], store, region=REGION, workdir=tmp_path)
    assert time.monotonic() - written < FLEETING_MS / 1000, "the snapshot came too late"
    for node in nodes:
        node.stop()
        shutil.rmtree(node.workdir)
        node.start()
    time.sleep(max(0.0, written + FLEETING_MS / 1000 + 0.2 - time.monotonic()))
    return manifest_obj


@pytest.mark.parametrize("extra_args", [AOF, ()], ids=["aof-base", "dump-rdb"])
def test_keys_whose_ttl_passed_after_the_snapshot_do_not_fail_the_restore(
        tmp_path: Path, bucket: tuple[BackupStore, GcsDouble], extra_args: tuple[str, ...]
        ) -> None:
    """A master drops the keys whose expiry has passed: while it loads a dump.rdb (rdb.c,
    rdbLoadRioWithLoadingCtx), or by its expire cycle right after it loaded an AOF base (which
    rdb.c loads whole, RDBFLAGS_AOF_PREAMBLE). The restore expects a range, not the RDB's count."""
    store, _ = bucket
    with redis_nodes(tmp_path / "nodes") as pool:
        nodes = pool.start(3, extra_args=extra_args)
        assert run_cluster_init([n.address for n in nodes]).returncode == 0
        lasting = {f"keep:{i}": f"v{i}" for i in range(300)}
        fleeting = [f"ttl:{i}" for i in range(150)]
        manifest_obj = snapshot_then_expire(nodes, store, tmp_path, lasting, fleeting)

        members_, expected = load_set(store, manifest_obj, nodes, tmp_path)
        # Every master's RDB holds keys of both kinds, the fleeting ones with their expiry.
        assert all(0 < e.expires < e.keys for e in expected.values())
        assert sum(e.keys for e in expected.values()) == len(lasting) + len(fleeting)
        assert sum(e.expires for e in expected.values()) == len(fleeting)

        result = reform([(n.address, n.address, m) for n, m in zip(nodes, members_,
                                                                   strict=True)],
                        [], expected_keys=expected)

        assert len(lasting) <= sum(result["keys"].values()) <= len(lasting) + len(fleeting)
        assert cluster_info(nodes[0].port)["cluster_state"] == "ok"
        for key, value in lasting.items():
            assert cli(nodes[0].port, "-c", "GET", key).strip() == value
        for key in fleeting:
            assert cli(nodes[0].port, "-c", "EXISTS", key).strip() == "0"


def test_a_master_with_fewer_keys_than_its_rdb_must_leave_is_refused(tmp_path: Path) -> None:
    """Keys whose expiry is still ahead count in the lower bound: losing one is refused."""
    with redis_nodes(tmp_path / "n") as pool:
        (node,) = pool.start(1)
        cli(node.port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        wait_for(node.port)
        with Resp(node.address) as conn:
            for i in range(40):
                assert conn.call("SET", f"keep:{i}", "v") == "OK"
            for i in range(30):
                assert conn.call("SET", f"later:{i}", "v", "PX", 600_000) == "OK"
            for i in range(20):
                assert conn.call("SET", f"soon:{i}", "v", "PX", 1000) == "OK"
        written = time.monotonic()
        rdb = tmp_path / "master.rdb"
        fetch_rdb(node.address, rdb)
        expected = check_snapshot(rdb, "redis/r/s/master.rdb").expected
        assert (expected.keys, expected.expires) == (90, 50)
        # The master then loads an RDB that lacks one key the load would have kept.
        cli(node.port, "DEL", "later:7")
        short = tmp_path / "short.rdb"
        fetch_rdb(node.address, short)
        time.sleep(max(0.0, written + 1.1 - time.monotonic()))
        assert load(node, short).returncode == 0
        member = SetMember(obj=StoredObject("redis/r/s/master.rdb", 1, "1", {}), node_id="x",
                           slots=((0, 16383),))
        with pytest.raises(RedisError) as refused:
            reform([(node.address, node.address, member)], [],
                   expected_keys={member.obj.name: expected})
    message = str(refused.value)
    assert message.startswith(
        "the master loaded from redis/r/s/master.rdb holds 69 keys, fewer than the 70 its "
        "snapshot must leave after loading (40 keys without an expiry and 30 whose expiry is "
        "still ahead of the master's clock, 20")
    assert message.endswith("Z): it did not load the whole RDB")


def test_the_expected_keys_name_the_bound_that_failed() -> None:
    now = 1_800_000_000_000
    times = [now - 5000] * 3 + [now + 60_000] * 2          # 3 passed, 2 still ahead
    known = ExpectedKeys(keys=10, expires=5, expire_times=times)
    assert known.refusal("a.rdb", 7, now) is None            # 5 lasting + 2 ahead
    assert known.refusal("a.rdb", 10, now) is None           # passed, not yet expired
    assert known.refusal("a.rdb", 11, now) == (
        "the master loaded from a.rdb holds 11 keys, more than the 10 its snapshot holds: it "
        "was written to since it loaded the RDB, or it loaded another one")
    assert known.refusal("a.rdb", 6, now) == (
        "the master loaded from a.rdb holds 6 keys, fewer than the 7 its snapshot must leave "
        "after loading (5 keys without an expiry and 2 whose expiry is still ahead of the "
        "master's clock, 2027-01-15T08:00:00.000Z): it did not load the whole RDB")
    unknown = ExpectedKeys(keys=10, expires=5)
    assert unknown.refusal("a.rdb", 5, now) is None
    assert unknown.refusal("a.rdb", 4, now) == (
        "the master loaded from a.rdb holds 4 keys, fewer than the 5 keys without an expiry in "
        "its snapshot (only keys whose expiry passed may be gone): it did not load the whole "
        "RDB")


def _persistence(port: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in cli(port, "INFO", "persistence").splitlines()
                if ":" in line)


def _slow_saves(node: RedisNode, keys: int = 2000) -> None:
    """keys keys, and every save child then sleeps 1 ms per key (rdb-key-save-delay, in
    microseconds, a hidden setting of Redis 7.0's config.c read by rdbSaveKeyValuePair)."""
    cli(node.port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    wait_for(node.port)
    with Resp(node.address) as conn:
        for i in range(keys):
            conn.send("SET", f"{{a}}k{i}", "v")
        assert all(conn.reply() == "OK" for _ in range(keys))
    assert cli(node.port, "CONFIG", "SET", "rdb-key-save-delay", "1000").strip() == "OK"


def _wait_child(port: int, field: str) -> None:
    deadline = time.monotonic() + 10
    while _persistence(port).get(field) != "1":
        assert time.monotonic() < deadline, f"{field} never became 1"
        time.sleep(0.02)
    # The running child keeps the delay it was forked with; the save under test is quick.
    assert cli(port, "CONFIG", "SET", "rdb-key-save-delay", "0").strip() == "OK"


def test_bgsave_during_a_diskless_full_sync_waits_for_it_then_saves(tmp_path: Path) -> None:
    """A replica's full sync with repl-diskless-sync (Redis 7's default) runs an RDB child that
    writes to the replica's socket, not dump.rdb: BGSAVE meanwhile answers "Background save
    already in progress", and when that child ends neither LASTSAVE nor rdb_saves has moved
    (rdb.c: only rdbSaveBackground counts rdb_saves; backgroundSaveDoneHandlerSocket sets no
    lastsave). The wait starts its own BGSAVE once that child ends."""
    with redis_nodes(tmp_path / "n") as pool:
        (node,) = pool.start(1, extra_args=("--repl-diskless-sync", "yes",
                                            "--repl-diskless-sync-delay", "0"))
        _slow_saves(node)
        # What a replica sends (replication.c, syncWithMaster): it can read an EOF-marked stream.
        replica = Resp(node.address)
        try:
            assert replica.call("REPLCONF", "capa", "eof") == "OK"
            replica.send("PSYNC", "?", "-1")
            assert str(replica.reply()).startswith("FULLRESYNC")
            _wait_child(node.port, "rdb_bgsave_in_progress")
            saves = int(_persistence(node.port)["rdb_saves"])
            with Resp(node.address) as conn:
                bgsave_and_wait(conn, timeout=15)
            after = _persistence(node.port)
        finally:
            replica.close()
    assert int(after["rdb_saves"]) == saves + 1         # a BGSAVE of ours ran
    assert after["rdb_last_bgsave_status"] == "ok" and after["rdb_bgsave_in_progress"] == "0"


def test_bgsave_during_an_aof_rewrite_is_scheduled_not_refused(tmp_path: Path) -> None:
    """BGSAVE during an AOF rewrite (the StatefulSet's appendonly yes rewrites under write load)
    answers "Another child process is active (AOF?)"; BGSAVE SCHEDULE runs it after the rewrite
    (rdb.c, bgsaveCommand)."""
    with redis_nodes(tmp_path / "n") as pool:
        (node,) = pool.start(1, extra_args=AOF)
        _slow_saves(node)
        cli(node.port, "BGREWRITEAOF")
        _wait_child(node.port, "aof_rewrite_in_progress")
        saves = int(_persistence(node.port)["rdb_saves"])
        with Resp(node.address) as conn:
            bgsave_and_wait(conn, timeout=15)
        after = _persistence(node.port)
    assert int(after["rdb_saves"]) == saves + 1
    assert after["rdb_last_bgsave_status"] == "ok" and after["aof_rewrite_in_progress"] == "0"


RESTORE = """\
---
- name: Restore a Redis snapshot set with the module, in its two steps
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Download and check the newest set
      when: step == 'prepare'
      redis_snapshot_restore:
        action: prepare
        region: europe-west1
        bucket: "{{ bucket }}"
        nodes: "{{ nodes }}"
        workdir: "{{ workdir }}"
        storage_endpoint: "{{ endpoint }}"
        auth_kind: none
      register: checked

    - name: Keep what the check returned
      when: step == 'prepare'
      ansible.builtin.copy:
        content: "{{ checked.masters | to_json }}"
        dest: "{{ prepared_file }}"
        mode: "0600"

    - name: Re-form the cluster
      when: step == 'reform'
      redis_snapshot_restore:
        action: reform
        region: europe-west1
        bucket: "{{ bucket }}"
        masters: "{{ masters }}"
        prepared: "{{ lookup('ansible.builtin.file', prepared_file) | from_json }}"
        workdir: "{{ workdir }}"
        storage_endpoint: "{{ endpoint }}"
        auth_kind: none
        timeout: 60
      register: reformed

    - name: Show the keys
      when: step == 'reform'
      ansible.builtin.debug:
        msg: "KEYS {{ reformed.cluster['keys'].values() | sum }}"
"""


@pytest.mark.playbook
def test_the_module_restores_a_set_whose_ttls_passed(tmp_path: Path,
                                                     bucket: tuple[BackupStore, GcsDouble]
                                                     ) -> None:
    """prepare returns the keys with an expiry; reform reads their expire times again from
    the checked RDB files and accepts the masters that dropped the expired keys."""
    store, state = bucket
    playbook = tmp_path / "restore.yml"
    playbook.write_text(RESTORE)
    with redis_nodes(tmp_path / "nodes") as pool:
        nodes = pool.start(3)
        assert run_cluster_init([n.address for n in nodes]).returncode == 0
        snapshot_then_expire(nodes, store, tmp_path, {f"keep:{i}": "v" for i in range(200)},
                             [f"ttl:{i}" for i in range(100)])
        prepared_file = tmp_path / "prepared.json"
        extra = {"ansible_python_interpreter": sys.executable, "bucket": state.bucket,
                 "nodes": [n.address for n in nodes], "workdir": str(tmp_path / "dl"),
                 "endpoint": store.endpoint, "prepared_file": str(prepared_file)}
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(extra))
        args = ("-i", "localhost,", "-c", "local", "-e", f"@{vars_file}", str(playbook))
        done = run_playbook(*args, "-e", "step=prepare")
        assert done.returncode == 0, done.output[-2000:]
        prepared = json.loads(prepared_file.read_text())
        assert sum(m["keys"] for m in prepared) == 300
        assert sum(m["expires"] for m in prepared) == 100
        for node, master in zip(nodes, prepared, strict=True):
            assert load(node, Path(master["file"])).returncode == 0
        masters = [{"node": n.address, "announce": n.address, "object": m["object"]}
                   for n, m in zip(nodes, prepared, strict=True)]
        (tmp_path / "masters.json").write_text(json.dumps({"masters": masters}))
        done = run_playbook(*args[:-1], "-e", f"@{tmp_path / 'masters.json'}",
                            "-e", "step=reform", str(playbook))
        assert done.returncode == 0, done.output[-2000:]
        assert "KEYS 200" in done.output
