"""playbooks/redis-restore.yml end to end: REAL redis-server nodes, the Kubernetes API double.

Six chart nodes (TLS only, the chart's ACL users, AOF, started by the chart's redis-start.sh)
each listen on their own loopback address at 6379, the address that plays the pod IP of
redis-<i> (127.x.y.10-15); the chart's cluster-init script forms them; one key per slot is
written by the three service users; the snapshot CronJob's entry point (backup_job) writes a
set to the Cloud Storage double; every node is killed, its folder wiped, and started empty.

The playbook then reaches them the way it reaches a cluster: pods redis-0..5 and Secret
redis-tls in the Kubernetes API double; ``kubectl port-forward`` played by the fake kubectl
(one upstream per pod); ``kubernetes.core.k8s_exec`` and ``k8s_cp`` through the double's exec
subresource, whose handler runs each command with the local shell in a folder that maps the
pod's mounts (/data: the node's folder, /scripts: the chart's scripts, /vault/secrets: the
password files, /tls: the certificates) and, as the kubelet does, restarts the node when the
load script stopped it. In a pod 127.0.0.1 is the pod's own loopback; here the pod's node
listens on its pod IP, so the pod's redis-cli is a wrapper that dials that address instead.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.ansible_run import run_playbook
from helpers.gcs_double import gcs_double
from helpers.k8s_double import KubeApiDouble
from helpers.k8s_double.pod_exec import ExecCall, pod_running_status
from helpers.pod_shell import PodShell
from helpers.redis_chart import Lab, chart_redis, make_lab, start_nodes
from helpers.redis_nodes import (
    BUS_OFFSET,
    CHART,
    REDIS_CLI,
    RedisNode,
    key_slot,
    one_key_per_slot,
    redis_nodes,
    run_cluster_init,
)
from kubernetes import client as k8s
from tai_deploy.redis_snapshot import Resp, masters_of, parse_info

pytestmark = [pytest.mark.playbook, pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (run `make setup`)")]

REGION = "europe-west1"
NS = "tai-system"
BUCKET = "tai-test-europe-west1-backups"
PORT = 6379
HELPERS = Path(__file__).parents[1] / "helpers"
SERVICES = ("governor", "coordinator", "scheduler")


def pod_ips(count: int) -> list[str]:
    """count loopback addresses 127.a.b.10.. whose 6379 and cluster bus port are free."""
    rng = random.Random()
    for _ in range(50):
        base = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
        ips = [f"{base}.{10 + i}" for i in range(count)]
        if all(_free(ip, PORT) and _free(ip, PORT + BUS_OFFSET) for ip in ips):
            return ips
    raise RuntimeError("no free loopback addresses for the pod IPs")


def _free(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def slot_keys() -> dict[str, str]:
    """One key in every slot, owned in turn by the three services (a hash tag picks the slot,
    the service's prefix keeps it inside that user's ACL key pattern)."""
    out = {}
    for slot, tag in one_key_per_slot().items():
        service = SERVICES[slot % 3]
        out[f"{service}:{{{tag}}}"] = f"value-{slot}"
    return out


def _by_owner(lab: Lab, seed: str, keys: dict[str, str]) -> dict[tuple[str, str], list[str]]:
    owners = [""] * 16384
    for master in masters_of([seed], lab.access("cluster-admin")):
        for low, high in master.slots:
            owners[low:high + 1] = [master.addr] * (high - low + 1)
    groups: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        groups.setdefault((owners[key_slot(key)], key.split(":", 1)[0]), []).append(key)
    return groups


def write_keys(lab: Lab, seed: str, keys: dict[str, str]) -> None:
    for (addr, user), names in _by_owner(lab, seed, keys).items():
        with Resp(addr, access=lab.access(user)) as conn:
            for key in names:
                conn.send("SET", key, keys[key])
            assert all(conn.reply() == "OK" for _ in names)


def read_keys(lab: Lab, seed: str, keys: dict[str, str]) -> dict[str, str | None]:
    got: dict[str, str | None] = {}
    for (addr, user), names in _by_owner(lab, seed, keys).items():
        with Resp(addr, access=lab.access(user)) as conn:
            for key in names:
                conn.send("GET", key)
            for key in names:
                got[key] = conn.reply()
    return got


def cluster_state(lab: Lab, node: RedisNode) -> str:
    with Resp(node.address, access=lab.access("cluster-admin")) as conn:
        return parse_info(str(conn.call("CLUSTER", "INFO")))["cluster_state"]


def total_keys(lab: Lab, nodes: list[RedisNode]) -> int:
    masters = {m.addr for m in masters_of([nodes[0].address], lab.access("cluster-admin"))}
    total = 0
    for node in nodes:
        if node.address in masters:
            with Resp(node.address, access=lab.access("cluster-admin")) as conn:
                total += int(conn.call("DBSIZE"))
    return total


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "redis"}},
            "spec": {"containers": [{"name": "redis", "image": "redis:7.4"},
                                    {"name": "exporter", "image": "redis-exporter:v1"}]}}


def pod_cli(path: Path, ip: str) -> Path:
    """redis-cli as the pod's scripts see it: 127.0.0.1 (the pod's loopback) is the pod IP."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!/bin/sh
n=$#
for a do
    [ "$a" = 127.0.0.1 ] && a={ip}
    set -- "$@" "$a"
done
shift "$n"
exec "{REDIS_CLI}" "$@"
""")
    path.chmod(0o755)
    return path


def kubelet_restart(node: RedisNode) -> Any:
    """After a command in the pod: the load script stops redis-server (the container's main
    process); the kubelet starts the container again, from the files it left."""

    def after(call: ExecCall, code: int) -> None:
        assert node.proc is not None
        if code == 0 and "/scripts/redis-load-snapshot.sh" in call.command:
            node.proc.wait(timeout=10)
        if node.proc.poll() is not None:
            node.start()

    return after


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return make_lab(chart_redis(REGION), tmp_path / "lab")


@pytest.fixture
def cluster(lab: Lab, tmp_path: Path) -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tls=True) as double:
        double.seed(*(pod(f"redis-{i}") for i in range(6)), {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "redis-tls", "namespace": NS},
            "data": {name: base64.b64encode(path.read_bytes()).decode() for name, path in (
                ("ca.crt", lab.tls.ca), ("tls.crt", lab.tls.cert), ("tls.key", lab.tls.key))}})
        yield double


def test_the_restore_playbook_rebuilds_the_cluster_through_the_kubernetes_api(
        lab: Lab, cluster: KubeApiDouble, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tai_deploy import backup_job

    ips = pod_ips(6)
    keys = slot_keys()
    with redis_nodes(tmp_path / "nodes") as pool, gcs_double(BUCKET) as (endpoint, state):
        nodes = start_nodes(pool, lab, 6, hosts=ips, port=PORT, appendonly="yes")
        formed = run_cluster_init([n.address for n in nodes], replicas=1,
                                  env=lab.client("cluster-admin").script_env())
        assert formed.returncode == 0, formed.output
        write_keys(lab, nodes[0].address, keys)
        assert total_keys(lab, nodes) == len(keys) == 16384

        # the snapshot CronJob's entry point, as the snapshot user
        monkeypatch.setenv("TAI_BACKUP_STORAGE_ENDPOINT", endpoint)
        (tmp_path / "snapshot").mkdir()
        assert backup_job.main(["redis"], {
            "TAI_REGION": REGION, "TAI_BACKUP_BUCKET": BUCKET,
            "TAI_BACKUP_WORKDIR": str(tmp_path / "snapshot"), "REDIS_NODES": nodes[0].address,
            **lab.client("snapshot").script_env()}) == 0
        assert len([o for o in state.objects if o.endswith(".rdb")]) == 3

        for node in nodes:  # every disk lost
            node.stop()
            shutil.rmtree(node.workdir)
        for node in nodes:
            node.start()

        ca = tmp_path / "api-ca.crt"
        ca.write_bytes(cluster.ca_pem)
        config = k8s.Configuration()
        config.host, config.ssl_ca_cert = cluster.url, str(ca)
        with k8s.ApiClient(config) as api_client:
            core = k8s.CoreV1Api(api_client)
            for i, (node, ip) in enumerate(zip(nodes, ips, strict=True)):
                name = f"redis-{i}"
                core.patch_namespaced_pod_status(name, NS, pod_running_status(
                    cluster.get("Pod", NS, name), ip))
                cluster.exec.register(NS, name, PodShell(
                    tmp_path / "pods" / name,
                    {"/data": node.workdir, "/scripts": CHART / "scripts",
                     "/vault/secrets": lab.passwords.folder, "/tls": lab.tls.folder},
                    # REDIS_DATA_DIR: the load script's default /data, spelt out so that the
                    # mapping applies to it (a default inside the script is not an argument)
                    env={**lab.chart.env, "REDIS_PORT": str(PORT), "REDIS_DATA_DIR": "/data",
                         "REDIS_CLI": str(pod_cli(tmp_path / "bin" / f"redis-cli-{i}", ip))},
                    after=kubelet_restart(node)))

        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "double",
            "clusters": [{"name": "double", "cluster": {"server": cluster.url,
                                                        "certificate-authority": str(ca)}}],
            "users": [{"name": "sre", "user": {}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "sre"}}]}))
        kubectl = tmp_path / "kubectl"
        kubectl.write_text(f'#!/bin/sh\nexec "{sys.executable}" '
                           f'"{HELPERS / "vault_fake_kubectl.py"}" "$@"\n')
        kubectl.chmod(0o755)
        extra = {"ansible_python_interpreter": sys.executable, "tai_kube_context": "double",
                 "tai_kubectl_binary": str(kubectl), "redis_restore_bucket": BUCKET,
                 "redis_restore_storage_endpoint": endpoint, "redis_restore_auth_kind": "none",
                 "redis_restore_timeout": 120}
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(extra))
        env = {"TAI_BUILD_ROOT": str(tmp_path / "build"), "KUBECONFIG": str(kubeconfig),
               "FAKE_KUBECTL_UPSTREAMS": json.dumps(
                   {f"pod/redis-{i}": f"{ip}:{PORT}" for i, ip in enumerate(ips)})}
        args = ("-l", REGION, "-e", f"@{vars_file}", "-e", "tai_apply=true",
                "playbooks/redis-restore.yml")

        done = run_playbook(*args, env=env, timeout=1200)
        assert done.returncode == 0, (done.output[-4000:], [
            (c.pod, c.command, c.exit_code, c.error) for c in cluster.exec.calls])
        assert f"{REGION}: Redis re-formed from redis/{REGION}/" in done.output
        assert "16384 keys on 3 masters, 3 replicas" in " ".join(done.output.split())
        for node in nodes:
            assert cluster_state(lab, node) == "ok"
        assert total_keys(lab, nodes) == len(keys)
        assert read_keys(lab, nodes[0].address, keys) == keys
        commands = [" ".join(c.command) for c in cluster.exec.calls]
        assert sum("redis-load-snapshot.sh /data/restore.rdb" in c for c in commands) == 3
        assert sum("redis-load-snapshot.sh --empty" in c for c in commands) == 3
        assert all(c.exit_code == 0 for c in cluster.exec.calls
                   if "redis-load-snapshot.sh" in c.command[-2])
        for secret in lab.passwords.users.values():
            assert secret not in done.output  # the admin password read in redis-0 is no_log

        refused = run_playbook(*args, env=env, timeout=1200)
        assert refused.returncode != 0
        said = " ".join(refused.output.split())
        assert "6 Redis nodes hold data" in said and "-e redis_restore_confirm=true" in said
        assert not any("redis-load-snapshot.sh" in " ".join(c.command)
                       for c in cluster.exec.calls[len(commands):])
        assert read_keys(lab, nodes[0].address, keys) == keys
