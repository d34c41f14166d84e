"""The chart's Redis scripts against real redis-server processes on loopback.

redis-cluster-init.sh is what the post-install/post-upgrade hook Job runs; redis-start.sh is
the entrypoint of every Redis pod. Both run here with `sh` and the real redis-cli/redis-server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.redis_nodes import (
    REDIS_START,
    SCRIPT_SHELL,
    RedisNode,
    RedisNodes,
    ScriptRun,
    cli,
    cluster_info,
    cluster_nodes,
    free_port,
    redis_nodes,
    run_cluster_init,
    wait_for,
)

# `make setup` installs redis-server; in CI its absence is a broken setup, not a reason to skip.
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (run `make setup`)")

SLOTS = "16384"


def topology(port: int) -> list[tuple[str, str, str, str, str]]:
    """What a no-op must leave alone: ids, roles, masters, config epochs and slots."""
    return sorted((n["id"], n["flags"].replace("myself,", ""), n["master"], n["epoch"], n["slots"])
                  for n in cluster_nodes(port))


def assert_healthy(nodes: list[RedisNode], *, known: int) -> None:
    for node in nodes:
        info = wait_for(node.port)
        assert info["cluster_slots_assigned"] == SLOTS
        assert info["cluster_slots_ok"] == SLOTS
        assert int(info["cluster_known_nodes"]) >= known


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[RedisNode], ScriptRun]]:
    """Three empty masters, and the first run of the script over them."""
    with redis_nodes(tmp_path_factory.mktemp("three")) as nodes:
        started = nodes.start(3)
        first = run_cluster_init([n.address for n in started])
        yield started, first


def test_forms_the_cluster_of_three_masters(three: tuple[list[RedisNode], ScriptRun]) -> None:
    nodes, run = three
    assert run.returncode == 0, run.output
    assert "cluster formed" in run.stdout
    assert_healthy(nodes, known=3)
    masters = [n for n in cluster_nodes(nodes[0].port) if "master" in n["flags"]]
    assert len(masters) == 3
    assert all(m["slots"] for m in masters)


def test_a_rerun_changes_nothing(three: tuple[list[RedisNode], ScriptRun]) -> None:
    nodes, first = three
    assert first.returncode == 0, first.output
    before = {n.port: topology(n.port) for n in nodes}
    rerun = run_cluster_init([n.address for n in nodes])
    assert rerun.returncode == 0, rerun.output
    assert "already formed" in rerun.stdout
    assert "nothing to do" in rerun.stdout
    assert "--cluster create" not in rerun.output
    assert {n.port: topology(n.port) for n in nodes} == before


def test_extra_empty_nodes_without_replicas_are_refused(
        three: tuple[list[RedisNode], ScriptRun], tmp_path: Path) -> None:
    nodes, first = three
    assert first.returncode == 0, first.output
    with redis_nodes(tmp_path) as extra_nodes:
        extra = extra_nodes.start(3)
        run = run_cluster_init([n.address for n in [*nodes, *extra]], wait=5)
        assert run.returncode == 4
        assert "are empty but the cluster exists" in run.stderr
        assert all(cluster_info(n.port)["cluster_known_nodes"] == "1" for n in extra)


def test_a_missing_node_is_a_clear_error(tmp_path: Path) -> None:
    with redis_nodes(tmp_path) as nodes:
        up = nodes.start(2)
        missing = f"127.0.0.1:{free_port()}"
        run = run_cluster_init([up[0].address, up[1].address, missing], wait=1)
        assert run.returncode == 3
        assert run.stderr.strip().splitlines() == [
            f"redis-cluster-init: error: Redis node {missing} did not answer PING within 1s; the "
            "cluster was not formed or checked (is the pod running and the port reachable?)"
        ]
        # Nothing was half-formed.
        assert all(cluster_info(n.port)["cluster_known_nodes"] == "1" for n in up)


@pytest.fixture
def six(tmp_path: Path) -> Iterator[RedisNodes]:
    with redis_nodes(tmp_path) as nodes:
        nodes.start(6)
        yield nodes


def test_forms_three_masters_with_a_replica_each(six: RedisNodes) -> None:
    run = run_cluster_init([n.address for n in six.nodes], replicas=1)
    assert run.returncode == 0, run.output
    assert_healthy(six.nodes, known=6)
    view = cluster_nodes(six.nodes[0].port)
    masters = {n["id"] for n in view if "master" in n["flags"]}
    replicas = [n for n in view if "slave" in n["flags"]]
    assert len(masters) == 3
    assert len(replicas) == 3
    assert {r["master"] for r in replicas} == masters

    rerun = run_cluster_init([n.address for n in six.nodes], replicas=1)
    assert rerun.returncode == 0, rerun.output
    assert "nothing to do" in rerun.stdout


def test_a_node_with_a_new_empty_disk_rejoins_as_a_replica(six: RedisNodes) -> None:
    run = run_cluster_init([n.address for n in six.nodes], replicas=1)
    assert run.returncode == 0, run.output
    lost = next(n for n in six.nodes if "slave" in cluster_info_flags(n.port))
    lost.stop()
    shutil.rmtree(lost.workdir)
    # The pod comes back with an empty volume (and, in Kubernetes, a new IP).
    fresh = six.start(1)[0]
    survivors = [n for n in six.nodes if n is not lost]
    rejoin = run_cluster_init([n.address for n in survivors], replicas=1)
    assert rejoin.returncode == 0, rejoin.output
    assert f"node {fresh.address} is empty: joining it to the cluster as a replica" in rejoin.stdout
    assert_healthy(survivors, known=6)
    assert "slave" in cluster_info_flags(fresh.port)


def cluster_info_flags(port: int) -> str:
    return next(n["flags"] for n in cluster_nodes(port) if "myself" in n["flags"])


@pytest.mark.parametrize(("nodes", "replicas", "message"), [
    ([], 0, "no Redis nodes given: pass HOST:PORT arguments or set REDIS_NODES"),
    (["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"], 1,
     "4 nodes cannot form a cluster with 1 replica(s) per master: it needs masters * 2 nodes "
     "with at least 3 masters"),
    (["127.0.0.1:1", "127.0.0.1:2"], 0,
     "2 nodes cannot form a cluster with 0 replica(s) per master: it needs masters * 1 nodes "
     "with at least 3 masters"),
    (["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:3"], 0, "node 127.0.0.1:1 is listed twice"),
    (["redis-0", "127.0.0.1:2", "127.0.0.1:3"], 0, "'redis-0' is not HOST:PORT"),
    (["redis-0:x", "127.0.0.1:2", "127.0.0.1:3"], 0,
     "'redis-0:x' is not HOST:PORT (the port must be a number)"),
])
def test_bad_input_is_one_clear_sentence(nodes: list[str], replicas: int, message: str) -> None:
    run = run_cluster_init(nodes, replicas=replicas, env={"REDIS_NODES": ""})
    assert run.returncode == 2
    assert run.stderr.strip() == f"redis-cluster-init: error: {message}"


def test_nodes_come_from_the_environment_too(tmp_path: Path) -> None:
    run = run_cluster_init([], env={"REDIS_NODES": "a:1 b:2"})
    assert run.returncode == 2
    assert "2 nodes cannot form a cluster" in run.stderr


def test_a_node_without_cluster_mode_is_refused(tmp_path: Path) -> None:
    with redis_nodes(tmp_path) as nodes:
        clustered = nodes.start(2)
        plain = nodes.start(1, extra_args=["--cluster-enabled", "no"])[0]
        run = run_cluster_init([*(n.address for n in clustered), plain.address], wait=2)
        assert run.returncode == 2
        assert f"Redis node {plain.address} does not run in cluster mode" in run.stderr


# ---- redis-start.sh -------------------------------------------------------------------

NODES_CONF = (
    "aaaa 10.0.0.5:6379@16379,redis-0.redis.tai-system.svc.cluster.local myself,master"
    " - 0 0 1 connected 0-5460\n"
    """\
bbbb 10.0.0.6:6379@16379,localhost master - 0 1700000000000 2 connected 5461-10922
cccc 10.0.0.7:6379@16379 master - 0 1700000000000 3 connected 10923-16383
dddd 10.0.0.8:6379@16379,no-such-host.invalid slave bbbb 0 1700000000000 2 connected
vars currentEpoch 3 lastVoteEpoch 0
""")


def test_start_script_refreshes_addresses_in_nodes_conf(tmp_path: Path) -> None:
    conf = tmp_path / "nodes.conf"
    conf.write_text(NODES_CONF)
    env = {**os.environ, "POD_IP": "10.9.9.9", "REDIS_NODES_CONF": str(conf),
           "REDIS_REMAP_ONLY": "1"}
    proc = subprocess.run([*SCRIPT_SHELL, str(REDIS_START)], env=env, capture_output=True,
                          text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = conf.read_text().splitlines()
    # Its own entry gets POD_IP, the hostname stays.
    assert lines[0].startswith(
        "aaaa 10.9.9.9:6379@16379,redis-0.redis.tai-system.svc.cluster.local myself,master")
    # A peer whose name resolves gets the name's current address.
    assert lines[1].startswith("bbbb 127.0.0.1:6379@16379,localhost master")
    # No hostname, or a name that does not resolve: left as it was.
    assert lines[2:] == NODES_CONF.splitlines()[2:]


def test_cluster_survives_every_pod_restarting_with_other_addresses(tmp_path: Path) -> None:
    """All pods restart and nodes.conf holds stale peer IPs; redis-start.sh repairs them."""
    with redis_nodes(tmp_path) as nodes:
        started = nodes.start(3, wrapper_env={"POD_IP": "127.0.0.1",
                                              "REDIS_ANNOUNCE_HOSTNAME": "localhost"})
        run = run_cluster_init([n.address for n in started])
        assert run.returncode == 0, run.output
        assert all(",localhost" in n["addr"] for n in cluster_nodes(started[0].port))
        for node in started:
            node.stop()
        for node in started:
            # Every address in nodes.conf becomes one that nothing listens on.
            conf = node.workdir / "nodes.conf"
            conf.write_text(conf.read_text().replace("127.0.0.1:", "127.0.0.9:"))
        for node in started:
            node.start()
        # cluster_state alone would say ok (nobody can reach anybody to flag a failure): every
        # node must be linked to every peer at its real address. Without the rewrite the links
        # stay "disconnected" at 127.0.0.9 and the peers end up flagged fail?.
        deadline = time.monotonic() + 20
        while not all_linked(started):
            assert time.monotonic() < deadline, cluster_nodes(started[0].port)
            time.sleep(0.1)
        assert_healthy(started, known=3)
        assert all(n["addr"].startswith("127.0.0.1:") for n in cluster_nodes(started[0].port))


def all_linked(nodes: list[RedisNode]) -> bool:
    for node in nodes:
        for line in cli(node.port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if (parts[7] != "connected" or not parts[1].startswith("127.0.0.1:")
                    or "fail" in parts[2]):
                return False
    return True
