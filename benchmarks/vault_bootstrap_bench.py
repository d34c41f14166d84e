"""Time the vault role's API steps against real OpenBao servers on loopback; prints numbers.

    .venv/bin/python benchmarks/vault_bootstrap_bench.py

Measures, with the role's cores (no Ansible overhead): server start, init + unseal of one node,
the first configuration (initial root token), a rerun (controller identity, nothing written), a
restart followed by unseal, and init + unseal of a three-node raft cluster.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "module_utils"), str(ROOT / "tests")]

from helpers.vault_server import BaoServer, free_port  # noqa: E402
from tai_deploy.vault_api import Configuration  # noqa: E402
from tai_deploy.vault_bootstrap import Connector, configure, init_and_unseal  # noqa: E402
from tai_deploy.vault_secrets import AnsibleVaultCipher  # noqa: E402

CIPHER = AnsibleVaultCipher(b"bench-password")
CONFIG = Configuration.from_mapping({
    "auth_methods": [{"path": "kubernetes", "type": "kubernetes"}],
    "secrets_engines": [{"path": "tai", "type": "kv", "options": {"version": "2"}}],
    "policies": [{"name": "tai-app", "policy": 'path "tai/data/*" {\n'
                                                 '  capabilities = ["read"]\n}\n'}],
})


def timed[T](label: str, step: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = step()
    print(f"{label:<44} {time.perf_counter() - start:7.3f} s")
    return result


def single(work: Path) -> None:
    server = BaoServer(work / "single")
    timed("start server (listening)", server.start)
    init_file = work / "single-init.yml"
    try:
        timed("init + unseal (1 node, 5 shares / 3)", lambda: init_and_unseal(
            [server.addr], init_file=init_file, cipher=CIPHER, connector=Connector()))
        timed("configure, first (initial root token)", lambda: configure(
            server.addr, CONFIG, init_file=init_file, cipher=CIPHER, connector=Connector()))
        timed("configure, rerun (controller identity, no write)", lambda: configure(
            server.addr, CONFIG, init_file=init_file, cipher=CIPHER, connector=Connector()))
        timed("restart server", server.restart)
        timed("unseal after restart", lambda: init_and_unseal(
            [server.addr], init_file=init_file, cipher=CIPHER, connector=Connector()))
    finally:
        server.stop()


def cluster(work: Path) -> None:
    ports = [free_port() for _ in range(3)]
    peers = [f"http://127.0.0.1:{p}" for p in ports]
    servers = [BaoServer(work / f"ha{i}", node_id=f"node{i}", api_port=p, retry_join=peers)
               for i, p in enumerate(ports)]
    try:
        for server in servers:
            server.start()
        timed("init + unseal (3-node raft, joins included)", lambda: init_and_unseal(
            peers, init_file=work / "ha-init.yml", cipher=CIPHER, connector=Connector()))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as tmp:
        single(Path(tmp))
        cluster(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
