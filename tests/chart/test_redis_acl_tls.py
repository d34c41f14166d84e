"""Redis with the chart's ACL users and TLS on every port, on REAL redis-server processes.

The nodes run with the StatefulSet's own arguments (TLS only: `--port 0`, TLS on the cluster bus
and for replication, protected mode) and start through the chart's redis-start.sh, which builds
the ACL file from the chart's rendered ConfigMap redis-acl and one password file per user (as
the Vault agent renders them). Certificates are made by the test (helpers.redis_tls). Then:
the chart's cluster-forming script forms the cluster as cluster-admin, the replicas replicate
as the replication user, every service user is confined to its own keys and commands, the
anonymous (default) user and plaintext are refused, the cluster bus refuses a peer without a
certificate, and a snapshot (user snapshot) is restored (restore, cluster-admin) over TLS.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.gcs_double import gcs_double
from helpers.redis_chart import ChartRedis, Lab, chart_redis, make_lab, start_nodes
from helpers.redis_nodes import (
    BUS_OFFSET,
    CHART,
    REDIS_CLI,
    SCRIPT_SHELL,
    RedisNode,
    cli,
    cluster_info,
    cluster_nodes,
    key_slot,
    redis_nodes,
    run_cluster_init,
    wait_for,
)
from tai_deploy.backup_store import BackupStore, UrllibTransport, verify_download
from tai_deploy.redis_snapshot import (
    Access,
    RedisError,
    Resp,
    check_snapshot,
    latest_set,
    members,
    reform,
)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (run `make setup`)")

SCRIPTS = CHART / "scripts"
SERVICES = ("governor", "coordinator", "scheduler")


@pytest.fixture(scope="module")
def chart() -> ChartRedis:
    return chart_redis("europe-west1")


@pytest.fixture(scope="module")
def lab(chart: ChartRedis, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(chart, tmp_path_factory.mktemp("redis-acl-tls"))


@pytest.fixture(scope="module")
def six(lab: Lab, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[list[RedisNode], subprocess.CompletedProcess[str] | Any]]:
    """Six chart nodes with ACL + TLS, and the first cluster-forming run over them."""
    with redis_nodes(tmp_path_factory.mktemp("six")) as pool:
        nodes = start_nodes(pool, lab, 6)
        run = run_cluster_init([n.address for n in nodes], replicas=1,
                               env=lab.client("cluster-admin").script_env())
        yield nodes, run


def test_the_chart_runs_redis_on_tls_only_with_protected_mode(chart: ChartRedis) -> None:
    pairs = dict(zip(chart.args[::2], chart.args[1::2], strict=True))
    assert pairs["--port"] == "0" and pairs["--tls-port"] == "6379"
    assert pairs["--tls-cluster"] == "yes" and pairs["--tls-replication"] == "yes"
    assert pairs["--protected-mode"] == "yes"
    assert chart.acl_rules.splitlines()[2] == (
        "user default off resetpass resetkeys resetchannels -@all")


def test_acl_tls_cluster_forms_and_replicates(lab: Lab, six: tuple[list[RedisNode], Any]) -> None:
    nodes, run = six
    assert run.returncode == 0, run.stdout + run.stderr
    admin = lab.client("cluster-admin")
    for node in nodes:
        info = wait_for(node.port, client=admin)
        assert info["cluster_slots_ok"] == "16384"
    view = cluster_nodes(nodes[0].port, admin)
    assert len([n for n in view if "master" in n["flags"]]) == 3
    replicas = [n for n in view if "slave" in n["flags"]]
    assert len(replicas) == 3
    # The replicas logged in to their masters as the replication user, over TLS.
    for node in nodes:
        if "slave" in next(n["flags"] for n in cluster_nodes(node.port, admin)
                           if "myself" in n["flags"]):
            deadline = time.monotonic() + 15
            while "master_link_status:up" not in (
                    repl := cli(node.port, "INFO", "replication", client=admin)):
                assert time.monotonic() < deadline, repl
                time.sleep(0.1)
    # The runbooks' redis-admin.sh: redis-cli as cluster-admin over TLS inside the pod.
    runbook = subprocess.run(
        [*SCRIPT_SHELL, str(SCRIPTS / "redis-admin.sh"), "cluster", "info"],
        env={**os.environ, "REDIS_TLS_CA_FILE": str(lab.tls.ca), "REDIS_CLI": REDIS_CLI,
             "REDIS_PASSWORD_DIR": str(lab.passwords.folder), "REDIS_PORT": str(nodes[0].port)},
        capture_output=True, text=True, check=False, timeout=30)
    assert "cluster_state:ok" in runbook.stdout, runbook.stdout + runbook.stderr
    rerun = run_cluster_init([n.address for n in nodes], replicas=1, env=admin.script_env())
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "nothing to do" in rerun.stdout


def _masters(nodes: list[RedisNode], lab: Lab) -> list[RedisNode]:
    """The node that serves each slot, from one CLUSTER NODES."""
    owners: list[RedisNode | None] = [None] * 16384
    by_port = {n.port: n for n in nodes}
    for row in cluster_nodes(nodes[0].port, lab.client("cluster-admin")):
        if "master" not in row["flags"]:
            continue
        node = by_port[int(row["addr"].split("@")[0].rsplit(":", 1)[1])]
        for item in row["slots"].split():
            low, _, high = item.partition("-")
            for slot in range(int(low), int(high or low) + 1):
                owners[slot] = node
    assert None not in owners
    return owners  # type: ignore[return-value]


def _master_of(nodes: list[RedisNode], lab: Lab, key: str) -> RedisNode:
    # The cluster's own hash agrees with the test's.
    assert cli(nodes[0].port, "CLUSTER", "KEYSLOT", key, client=lab.client("cluster-admin")
               ).strip() == str(key_slot(key))
    return _masters(nodes, lab)[key_slot(key)]


def test_each_user_is_confined_to_its_keys_and_commands(lab: Lab,
                                                        six: tuple[list[RedisNode], Any]) -> None:
    nodes, run = six
    assert run.returncode == 0, run.stdout + run.stderr
    wait_for(nodes[0].port, client=lab.client("cluster-admin"))
    gov_node = _master_of(nodes, lab, "governor:job:1")
    with Resp(gov_node.address, access=lab.access("governor")) as gov:
        assert gov.call("SET", "governor:job:1", "queued") == "OK"
        assert gov.call("GET", "governor:job:1") == "queued"
        for command, what in ((("GET", "scheduler:job:1"), "access one of the keys"),
                              (("FLUSHALL",), "no permissions to run the 'flushall' command"),
                              (("CONFIG", "GET", "masterauth"), "'config|get' command"),
                              (("KEYS", "*"), "'keys' command"),
                              (("ACL", "LIST"), "'acl|list' command")):
            with pytest.raises(RedisError, match="NOPERM") as refused:
                gov.call(*command)
            assert what in str(refused.value)
    sched_node = _master_of(nodes, lab, "scheduler:job:1")
    with Resp(sched_node.address, access=lab.access("scheduler")) as sched, pytest.raises(
            RedisError, match=r"NOPERM .*access one of the keys"):
        sched.call("SET", "governor:job:1", "stolen")
    for user, command in (("probe", ("INFO",)), ("snapshot", ("SET", "x", "1")),
                          ("exporter", ("CONFIG", "GET", "*")),
                          ("cluster-admin", ("FLUSHALL",)), ("replication", ("GET", "x"))):
        with Resp(nodes[0].address, access=lab.access(user)) as conn, pytest.raises(
                RedisError, match="NOPERM"):
            conn.call(*command)


def test_kedas_user_reads_a_queue_length_of_scheduler_and_nothing_else(
        lab: Lab, six: tuple[list[RedisNode], Any]) -> None:
    """The Redis user of KEDA's redis-cluster trigger (the autoscaling role's
    TriggerAuthentication keda-redis): LLEN of scheduler's keys and the cluster's topology."""
    nodes, run = six
    assert run.returncode == 0, run.stdout + run.stderr
    wait_for(nodes[0].port, client=lab.client("cluster-admin"))
    queue = _master_of(nodes, lab, "scheduler:queue")
    with Resp(queue.address, access=lab.access("scheduler")) as sched:
        sched.call("DEL", "scheduler:queue")
        assert sched.call("RPUSH", "scheduler:queue", "a", "b", "c") == 3
    with Resp(queue.address, access=lab.access("keda")) as keda:
        assert keda.call("LLEN", "scheduler:queue") == 3
        assert isinstance(keda.call("CLUSTER", "SLOTS"), list)
        for command, what in ((("LRANGE", "scheduler:queue", "0", "-1"), "'lrange' command"),
                              (("RPUSH", "scheduler:queue", "x"), "'rpush' command"),
                              (("GET", "scheduler:job:1"), "'get' command"),
                              (("CONFIG", "GET", "masterauth"), "'config|get' command")):
            with pytest.raises(RedisError, match="NOPERM") as refused:
                keda.call(*command)
            assert what in str(refused.value)
    other = _master_of(nodes, lab, "governor:queue")
    with Resp(other.address, access=lab.access("keda")) as keda, pytest.raises(
            RedisError, match=r"NOPERM .*access one of the keys"):
        keda.call("LLEN", "governor:queue")


def test_anonymous_wrong_password_and_plaintext_are_refused(lab: Lab,
                                                            six: tuple[list[RedisNode], Any]
                                                            ) -> None:
    nodes, _ = six
    node = nodes[0]
    with Resp(node.address, access=Access(ca_file=str(lab.tls.ca))) as anonymous, pytest.raises(
            RedisError, match="NOAUTH"):
        anonymous.call("PING")
    wrong = Access(ca_file=str(lab.tls.ca), user="governor", password="not-the-password")
    with pytest.raises(RedisError, match="refused the login of user governor"):
        Resp(node.address, access=wrong)
    with pytest.raises(RedisError, match=r"closed the connection|failed"), Resp(
            node.address) as plain:
        plain.call("PING")
    # The chart's probe: PONG as the probe user, a failure without its password.
    probe_env = {**os.environ, **lab.client("probe").script_env(), "REDIS_CLI": REDIS_CLI}
    ping = [*SCRIPT_SHELL, str(SCRIPTS / "redis-ping.sh"), str(node.port)]
    assert subprocess.run(ping, env=probe_env, capture_output=True, check=False,
                          timeout=30).returncode == 0
    anon_env = {**os.environ, "REDIS_TLS_CA_FILE": str(lab.tls.ca), "REDIS_CLI": REDIS_CLI}
    refused = subprocess.run(ping, env=anon_env, capture_output=True, text=True, check=False,
                             timeout=30)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "redis-ping: NOAUTH Authentication required."


def test_the_cluster_bus_refuses_a_peer_without_a_certificate(lab: Lab,
                                                              six: tuple[list[RedisNode], Any]
                                                              ) -> None:
    nodes, _ = six
    bus = ("127.0.0.1", nodes[0].port + BUS_OFFSET)

    def context(with_cert: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(lab.tls.ca))
        ctx.check_hostname = False
        # TLS 1.2: the server's verdict on the client certificate is part of the handshake.
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if with_cert:
            ctx.load_cert_chain(str(lab.tls.cert), str(lab.tls.key))
        return ctx

    with socket.create_connection(bus, timeout=5) as raw, context(True).wrap_socket(raw) as tls:
        assert tls.version() == "TLSv1.2"
    with (socket.create_connection(bus, timeout=5) as raw,
          pytest.raises((ssl.SSLError, ConnectionResetError))):
        context(False).wrap_socket(raw)


def test_start_refuses_a_missing_password_in_one_sentence(lab: Lab, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    shutil.copytree(lab.passwords.folder, secrets)
    (secrets / "redis-user-scheduler").unlink()
    env = {**os.environ, "REDIS_REPLICATION_USER": "replication",
           "REDIS_ACL_RULES": str(lab.rules),
           "REDIS_PASSWORD_DIR": str(secrets), "REDIS_AUTH_DIR": str(tmp_path / "auth"),
           "REDIS_SERVER": "false", "REDIS_NODES_CONF": str(tmp_path / "nodes.conf")}
    run = subprocess.run([*SCRIPT_SHELL, str(SCRIPTS / "redis-start.sh")], env=env,
                         capture_output=True, text=True, check=False, timeout=30)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"redis-start: error: the password of Redis user scheduler is missing ({secrets}/"
        "redis-user-scheduler is absent or empty; is the Vault agent's secret "
        "tai/redis/scheduler readable by this pod?)")
    # What the script wrote for the users before it stopped holds hashes, never a password.
    written = "".join(p.read_text() for p in (tmp_path / "auth").iterdir())
    assert lab.passwords.users["governor"] not in written
    assert "user governor on #" in written


def _load(node: RedisNode, lab: Lab, rdb: Path | None) -> subprocess.CompletedProcess[str]:
    """The chart's redis-load-snapshot.sh as the restore user, then the kubelet's restart."""
    arg = "--empty"
    if rdb is not None:
        arg = str(node.workdir / "restore.rdb")
        shutil.copyfile(rdb, arg)
    env = {**os.environ, **lab.client("restore").script_env(), "REDIS_CLI": REDIS_CLI,
           "REDIS_PORT": str(node.port), "REDIS_DATA_DIR": str(node.workdir)}
    proc = subprocess.run([*SCRIPT_SHELL, str(SCRIPTS / "redis-load-snapshot.sh"), arg], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    if node.proc is not None:
        node.proc.wait(timeout=10)
    node.start()
    return proc


def test_snapshot_and_restore_over_tls_with_the_chart_users(lab: Lab, tmp_path: Path,
                                                            six: tuple[list[RedisNode], Any],
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Last in this file: it re-forms the module's cluster (healthy again when it is done)."""
    from tai_deploy import backup_job

    nodes, formed = six
    assert formed.returncode == 0, formed.stdout + formed.stderr
    admin = lab.client("cluster-admin")
    with gcs_double("tai-test-backups") as (endpoint, state):
        wait_for(nodes[0].port, client=admin)
        with Resp(nodes[0].address, access=lab.access("cluster-admin")) as conn:
            for row in str(conn.call("CLUSTER", "NODES")).splitlines():
                if "master" in row.split()[2]:
                    port = int(row.split()[1].split("@")[0].rsplit(":", 1)[1])
                    with Resp(f"127.0.0.1:{port}", access=lab.access("restore")) as flush:
                        flush.call("FLUSHALL")
        keys = {f"governor:k{i}": f"v{i}" for i in range(300)}
        owners = _masters(nodes, lab)
        for owner in {owners[key_slot(k)].port: owners[key_slot(k)] for k in keys}.values():
            with Resp(owner.address, access=lab.access("governor")) as conn:
                for key, value in keys.items():
                    if owners[key_slot(key)] is owner:
                        assert conn.call("SET", key, value) == "OK"

        # The CronJob's entry point, with the chart's environment for the snapshot user.
        monkeypatch.setenv("TAI_BACKUP_STORAGE_ENDPOINT", endpoint)
        env = {"TAI_REGION": "europe-west1", "TAI_BACKUP_BUCKET": state.bucket,
               "TAI_BACKUP_WORKDIR": str(tmp_path), "REDIS_NODES": nodes[0].address,
               **lab.client("snapshot").script_env()}
        assert backup_job.main(["redis"], env) == 0
        store = BackupStore(state.bucket, UrllibTransport(None), endpoint)
        chosen = latest_set(store, "europe-west1")
        local = tmp_path / "manifest.json"
        store.download(chosen.name, local)
        objects = {o.name: o for o in store.list(chosen.name.rsplit("/", 1)[0] + "/")}
        set_members = members(json.loads(local.read_text()), objects)

        roles = {int(r["addr"].split("@")[0].rsplit(":", 1)[1]): r["flags"]
                 for r in cluster_nodes(nodes[0].port, admin)}
        masters = [n for n in nodes if "master" in roles[n.port]]
        replicas = [n for n in nodes if "slave" in roles[n.port]]
        expected = {}
        for node, member in zip(masters, set_members, strict=True):
            rdb = tmp_path / member.obj.name.rsplit("/", 1)[-1]
            store.download(member.obj.name, rdb)
            verify_download(member.obj, rdb)
            expected[member.obj.name] = check_snapshot(rdb, member.obj.name).expected
            loaded = _load(node, lab, rdb)
            assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        for node in replicas:
            emptied = _load(node, lab, None)
            assert emptied.returncode == 0, emptied.stdout + emptied.stderr
        result = reform([(n.address, n.address, m) for n, m in zip(masters, set_members,
                                                                   strict=True)],
                        [(n.address, n.address) for n in replicas], expected_keys=expected,
                        access=lab.access("cluster-admin"))
        assert sum(result["keys"].values()) == len(keys)
        for node in nodes:
            assert cluster_info(node.port, admin)["cluster_state"] == "ok"
        got = cli(nodes[0].port, "-c", "GET", "governor:k7", client=lab.client("governor"))
        assert got.strip() == "v7"
