"""Redis nodes started the way the TAI chart's pods start them, on REAL redis-server processes.

The rendered chart gives the redis container's arguments, environment and ACL rules
(``chart_redis``); a ``Lab`` holds the test's certificates (helpers.redis_tls) and one password
file per ACL user (as the Vault agent renders them); ``start_nodes`` starts nodes through the
chart's redis-start.sh with the StatefulSet's own arguments, this node's port, folder and files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tai_deploy.redis_snapshot import Access

from helpers.chart_render import by_kind, render
from helpers.redis_nodes import Client, RedisNode, RedisNodes, free_port
from helpers.redis_tls import RedisPasswords, RedisTls, make_tls


@dataclass(frozen=True)
class ChartRedis:
    """What the rendered chart gives a Redis pod: its arguments, environment and ACL rules."""

    args: list[str]
    env: dict[str, str]
    acl_rules: str


def chart_redis(region: str = "europe-west1") -> ChartRedis:
    objs = render(region).objects
    sts = by_kind(objs, "StatefulSet")["redis"]
    (redis,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "redis"]
    env = {e["name"]: e["value"] for e in redis["env"] if "value" in e}
    return ChartRedis(redis["args"], env, by_kind(objs, "ConfigMap")["redis-acl"]["data"][
        "users.acl"])


@dataclass
class Lab:
    tls: RedisTls
    passwords: RedisPasswords
    rules: Path
    chart: ChartRedis

    def client(self, user: str) -> Client:
        return Client(self.tls.ca, user, self.passwords.file(user))

    def access(self, user: str) -> Access:
        return Access(ca_file=str(self.tls.ca), user=user, password=self.passwords.users[user])


def make_lab(chart: ChartRedis, base: Path) -> Lab:
    """Certificates and one password per ACL user of the chart (but default), under base."""
    users = [line.split()[1] for line in chart.acl_rules.splitlines()
             if line.startswith("user ") and line.split()[1] != "default"]
    base.mkdir(parents=True, exist_ok=True)
    rules = base / "users.acl"
    rules.write_text(chart.acl_rules)
    return Lab(make_tls(base / "tls"), RedisPasswords.make(base / "secrets", users), rules, chart)


def _chart_args(chart: ChartRedis, node: ChartNode, tls: RedisTls) -> list[str]:
    """The StatefulSet's redis-server arguments, with this node's port, folder and files."""
    swap = {"--tls-port": str(node.port), "--tls-cert-file": str(tls.cert),
            "--tls-key-file": str(tls.key), "--tls-ca-cert-file": str(tls.ca),
            "--dir": str(node.workdir), "--cluster-config-file": str(node.workdir / "nodes.conf"),
            "--cluster-node-timeout": "2000", "--appendonly": node.appendonly}
    args = list(chart.args)
    for i, arg in enumerate(args[:-1]):
        if arg in swap:
            args[i + 1] = swap[arg]
    # A replica's first sync starts at once here (Redis waits 5 s for more replicas by default).
    return [*args, "--bind", node.host, "--save", "", "--repl-diskless-sync-delay", "0",
            "--logfile", str(node.workdir / "redis.log")]


class ChartNode(RedisNode):
    """A node started the way the chart's pod starts it."""

    chart: ChartRedis
    appendonly: str = "no"

    def args(self) -> list[str]:
        assert self.tls is not None
        return _chart_args(self.chart, self, self.tls)


def start_nodes(pool: RedisNodes, lab: Lab, count: int, *, hosts: list[str] | None = None,
                port: int | None = None, appendonly: str = "no") -> list[RedisNode]:
    """count chart nodes: redis-start.sh with the chart's ACL environment, TLS from the lab;
    with ``hosts``, node i listens on hosts[i] (a pod IP) at ``port`` (the chart's 6379)."""
    env = {k: v for k, v in lab.chart.env.items() if k in (
        "REDIS_REPLICATION_USER",)}
    env |= {"REDIS_ACL_RULES": str(lab.rules), "REDIS_PASSWORD_DIR": str(lab.passwords.folder)}
    started = []
    for i in range(count):
        node_port = port if port is not None else free_port()
        name = f"node-{hosts[i]}" if hosts else f"node-{node_port}"
        node_env = {**env, "REDIS_AUTH_DIR": str(pool.base / f"auth-{name}")}
        if hosts:  # the downward API's POD_IP: redis-start.sh announces it
            node_env["POD_IP"] = hosts[i]
        node = ChartNode(node_port, pool.base / name, node_env, (), lab.tls, lab.client("probe"))
        node.chart = lab.chart
        node.appendonly = appendonly
        if hosts:
            node.host = hosts[i]
        pool.nodes.append(node)
        started.append(node.start())
    return started
