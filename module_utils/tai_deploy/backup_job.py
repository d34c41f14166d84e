"""Entry point of the snapshot CronJobs: ``python3 -m tai_deploy.backup_job vault|redis``.

Runs in a plain Python image (standard library only) with this package mounted from a
ConfigMap. Settings come from the environment the CronJob sets; the output is one JSON line
per snapshot (what was uploaded, where, with which facts) and the exit status is non-zero with
one sentence on stderr when anything fails, so that the Job fails and its alert fires.

vault: TAI_REGION, TAI_BACKUP_BUCKET, VAULT_ADDR, VAULT_CACERT, VAULT_AUTH_PATH, VAULT_ROLE,
       VAULT_JWT_FILE (the projected service-account token), TAI_BACKUP_WORKDIR.
redis: TAI_REGION, TAI_BACKUP_BUCKET, REDIS_NODES (host:port of any nodes, space separated),
       TAI_BACKUP_WORKDIR, REDIS_BGSAVE_TIMEOUT (seconds), and how to reach the nodes:
       REDIS_TLS_CA_FILE (TLS, verified against that CA), REDIS_USER and REDIS_PASSWORD_FILE (the
       ACL user ``snapshot`` and the file the Vault agent renders its password to).
TAI_BACKUP_STORAGE_ENDPOINT points at a loopback double in tests (anonymous there only).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .backup_store import StoreError, in_cluster_store


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise StoreError(f"the environment variable {name} is not set")
    return value


def run_vault(env: Mapping[str, str]) -> list[dict[str, object]]:
    from .vault_snapshot import VaultHttp, kubernetes_login, take_snapshot

    store = in_cluster_store(_need(env, "TAI_BACKUP_BUCKET"))
    http = VaultHttp(_need(env, "VAULT_ADDR"), env.get("VAULT_CACERT") or None)
    jwt = Path(_need(env, "VAULT_JWT_FILE")).read_text().strip()
    token = kubernetes_login(http, mount=env.get("VAULT_AUTH_PATH", "kubernetes"),
                             role=env.get("VAULT_ROLE", "vault-snapshot"), jwt=jwt)
    narrow = VaultHttp(http.addr, http.ca_cert, token)
    try:
        obj = take_snapshot(narrow, store, region=_need(env, "TAI_REGION"),
                            workdir=Path(env.get("TAI_BACKUP_WORKDIR", "/tmp")))
    finally:
        with contextlib.suppress(Exception):
            narrow.json("POST", "auth/token/revoke-self")
    return [{"object": f"gs://{store.bucket}/{obj.name}", **obj.metadata}]


def run_redis(env: Mapping[str, str]) -> list[dict[str, object]]:
    from .redis_snapshot import access_from_env, take_snapshots

    store = in_cluster_store(_need(env, "TAI_BACKUP_BUCKET"))
    seeds = _need(env, "REDIS_NODES").split()
    manifest = take_snapshots(seeds, store, region=_need(env, "TAI_REGION"),
                              workdir=Path(env.get("TAI_BACKUP_WORKDIR", "/tmp")),
                              bgsave_timeout=float(env.get("REDIS_BGSAVE_TIMEOUT", "600")),
                              access=access_from_env(env))
    return [{"object": f"gs://{store.bucket}/{manifest.name}", **manifest.metadata}]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    if args not in (["vault"], ["redis"]):
        print("usage: python3 -m tai_deploy.backup_job vault|redis", file=sys.stderr)
        return 2
    try:
        lines = run_vault(environ) if args == ["vault"] else run_redis(environ)
    except Exception as exc:
        print(f"snapshot failed: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(json.dumps(line, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
