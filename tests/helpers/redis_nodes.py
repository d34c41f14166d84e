"""Real redis-server processes on loopback for the Redis cluster script tests.

Each node is a ``redis-server`` child process in cluster mode with its own temporary folder,
bound to 127.0.0.1 on a free port (the cluster bus uses port + 10000, also checked free).
Nodes are stopped by the fixtures that start them, whatever the test outcome.

With ``tls`` a node listens on TLS only (``--port 0``, ``--tls-port``, TLS on the cluster bus
and for replication), as the chart's StatefulSet does; a ``Client`` says how redis-cli reaches
it (CA, ACL user and password file, the password passed through REDISCLI_AUTH).
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.redis_tls import RedisTls

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tai-chart"
CLUSTER_INIT = CHART / "scripts" / "redis-cluster-init.sh"
REDIS_START = CHART / "scripts" / "redis-start.sh"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
BUS_OFFSET = 10000
# The shell that runs the chart's scripts: `sh` (dash here); TAI_REDIS_TEST_SHELL="busybox sh"
# with busybox applets first on PATH approximates the alpine image.
SCRIPT_SHELL = shlex.split(os.environ.get("TAI_REDIS_TEST_SHELL", "sh"))


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_TAKEN: set[int] = set()


def free_port() -> int:
    """A port whose cluster-bus companion (port + 10000) is free as well."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(500):
        port = rng.randint(20000, 50000)
        if port in _TAKEN or port + BUS_OFFSET in _TAKEN:
            continue
        if _port_free(port) and _port_free(port + BUS_OFFSET):
            _TAKEN.add(port)
            return port
    raise RuntimeError("no free port pair found on 127.0.0.1")


@dataclass(frozen=True)
class Client:
    """How redis-cli reaches a TLS node: its CA, and the ACL user with its password file."""

    ca: Path | None = None
    user: str = ""
    password_file: Path | None = None

    def args(self) -> list[str]:
        out = ["--tls", "--cacert", str(self.ca)] if self.ca else []
        return [*out, "--user", self.user] if self.user else out

    def env(self) -> dict[str, str]:
        if not self.user or self.password_file is None:
            return {}
        return {"REDISCLI_AUTH": self.password_file.read_text()}

    def script_env(self) -> dict[str, str]:
        """The same, for the chart's scripts (redis-lib.sh's redis_client_setup)."""
        out = {"REDIS_TLS_CA_FILE": str(self.ca)} if self.ca else {}
        if self.user:
            out |= {"REDIS_USER": self.user, "REDIS_PASSWORD_FILE": str(self.password_file)}
        return out


PLAIN = Client()


def cli(port: int, *args: str, timeout: float = 10, client: Client = PLAIN,
        host: str = "127.0.0.1") -> str:
    """One redis-cli command against a node; output without carriage returns."""
    proc = subprocess.run([REDIS_CLI, *client.args(), "-h", host, "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **client.env()})
    return proc.stdout.replace("\r", "")


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-XMODEM, the key-slot hash of the Redis Cluster specification."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def one_key_per_slot() -> dict[int, str]:
    """The first key k<n> that hashes to each of the 16384 slots."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < 16384:
        key = f"k{n}"
        found.setdefault(crc16(key.encode()) % 16384, key)
        n += 1
    return found


def key_slot(key: str) -> int:
    """The key's hash slot: CRC16-XMODEM mod 16384 of the key, or of its {hash tag}, as the
    Redis Cluster specification defines it."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return crc16(raw) % 16384


def cluster_info(port: int, client: Client = PLAIN) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in cli(port, "CLUSTER", "INFO", client=client).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value
    return out


def cluster_nodes(port: int, client: Client = PLAIN) -> list[dict[str, str]]:
    """CLUSTER NODES as dicts: id, addr, flags, master, epoch, slots (space-joined)."""
    rows = []
    for line in cli(port, "CLUSTER", "NODES", client=client).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        rows.append({"id": parts[0], "addr": parts[1], "flags": parts[2], "master": parts[3],
                     "epoch": parts[6], "slots": " ".join(parts[8:])})
    return rows


@dataclass
class RedisNode:
    """One redis-server process in cluster mode."""

    port: int
    workdir: Path
    wrapper_env: dict[str, str] | None = None
    extra_args: Sequence[str] = ()
    tls: RedisTls | None = None
    # Who the start-up PING logs in as (a node with ACL users refuses anonymous PING).
    client: Client = PLAIN
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # The address it listens on (another loopback address plays a pod IP: 127.x.y.z).
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def args(self) -> list[str]:
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                      "--tls-ca-cert-file", str(self.tls.ca), "--tls-cluster", "yes",
                      "--tls-replication", "yes", "--tls-auth-clients", "optional"]
        return [
            *listen, "--bind", self.host,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.workdir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
            "--logfile", str(self.workdir / "redis.log"),
            *self.extra_args,
        ]

    def start(self) -> RedisNode:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.wrapper_env is None:
            cmd = [REDIS_SERVER, *self.args()]
            env = None
        else:
            # Started through the chart's redis-start.sh, as in the StatefulSet.
            cmd = [*SCRIPT_SHELL, str(REDIS_START), *self.args()]
            env = {**os.environ, "REDIS_SERVER": REDIS_SERVER,
                   "REDIS_NODES_CONF": str(self.workdir / "nodes.conf"), **self.wrapper_env}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while cli(self.port, "PING", timeout=2, client=self.client,
                  host=self.host).strip() != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on {self.port} did not start:\n{tail}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class RedisNodes:
    """A set of nodes that a fixture starts and always stops."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.nodes: list[RedisNode] = []

    def start(self, count: int, *, wrapper_env: dict[str, str] | None = None,
              extra_args: Sequence[str] = (), tls: RedisTls | None = None,
              client: Client = PLAIN) -> list[RedisNode]:
        new = []
        for _ in range(count):
            port = free_port()
            node = RedisNode(port, self.base / f"node-{port}", wrapper_env, extra_args, tls,
                             client)
            self.nodes.append(node)
            new.append(node.start())
        return new

    def stop_all(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


@contextlib.contextmanager
def redis_nodes(base: Path) -> Iterator[RedisNodes]:
    nodes = RedisNodes(base)
    try:
        yield nodes
    finally:
        nodes.stop_all()


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cluster_init(nodes: Sequence[str], *, replicas: int = 0, wait: int = 30,
                     env: dict[str, str] | None = None, timeout: float = 120) -> ScriptRun:
    """Run the chart's redis-cluster-init.sh with sh, as the hook Job does."""
    full_env = {**os.environ, "REDIS_CLUSTER_REPLICAS": str(replicas),
                "REDIS_WAIT_SECONDS": str(wait), "REDIS_CLI": REDIS_CLI, **(env or {})}
    proc = subprocess.run([*SCRIPT_SHELL, str(CLUSTER_INIT), *nodes], env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return ScriptRun(proc.returncode, proc.stdout, proc.stderr)


def wait_for(predicate_port: int, *, state: str = "ok", timeout: float = 20,
             client: Client = PLAIN) -> dict[str, str]:
    """Poll CLUSTER INFO of a node until cluster_state is `state`."""
    deadline = time.monotonic() + timeout
    info = cluster_info(predicate_port, client)
    while info.get("cluster_state") != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"node {predicate_port} stayed {info.get('cluster_state')}")
        time.sleep(0.1)
        info = cluster_info(predicate_port, client)
    return info
