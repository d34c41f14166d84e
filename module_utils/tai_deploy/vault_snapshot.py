"""Raft snapshots of Vault: take one with a narrow token, and send one back.

Standard library only: the snapshot CronJob runs this file with a plain Python image. The job
logs in through the Kubernetes auth method (role ``vault-snapshot``, bound to the CronJob's
service account, policy ``read`` on ``sys/storage/raft/snapshot`` only), streams
``GET /v1/sys/storage/raft/snapshot`` to a file while hashing it, and uploads it with the facts a
restore checks: region, time, Vault version, the cluster id and the sha256.

A restore sends the bytes to ``POST /v1/sys/storage/raft/snapshot`` when the snapshot comes
from the same cluster (same ``cluster_id`` in ``sys/health``), else to ``.../snapshot-force``
(another cluster's keys: the Vault that receives it then needs that cluster's shards).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import ssl
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .backup_store import (
    CHUNK,
    BackupStore,
    StoredObject,
    StoreError,
    snapshot_metadata,
    utc_stamp,
)

KIND = "vault-raft"
SNAPSHOT_PATH = "sys/storage/raft/snapshot"


class SnapshotError(RuntimeError):
    """A snapshot or restore step failed; one sentence, never a token."""


@dataclass(frozen=True)
class VaultHttp:
    """Just enough HTTP for snapshots: JSON calls, a streamed GET, a file POST."""

    addr: str
    ca_cert: str | None = None
    token: str | None = None
    timeout: float = 600.0

    def _context(self) -> ssl.SSLContext | None:
        if not self.addr.startswith("https://"):
            return None
        return ssl.create_default_context(cafile=self.ca_cert or None)

    def _open(self, method: str, path: str, body: bytes | None,
              headers: Mapping[str, str] | None = None) -> Any:
        all_headers = {"X-Vault-Request": "true", **(headers or {})}
        if self.token:
            all_headers["X-Vault-Token"] = self.token
        request = urllib.request.Request(f"{self.addr.rstrip('/')}/v1/{path}", data=body,
                                         method=method, headers=all_headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout, context=self._context())
        except urllib.error.HTTPError as exc:
            try:
                errors = json.loads(exc.read() or b"{}").get("errors") or []
            except ValueError:
                errors = []
            reason = "; ".join(str(e) for e in errors) or exc.reason
            raise SnapshotError(f"Vault at {self.addr} refused {method} /v1/{path}: HTTP "
                                f"{exc.code} ({reason})") from None
        except OSError as exc:
            raise SnapshotError(f"cannot reach Vault at {self.addr}: {exc}") from None

    def json(self, method: str, path: str, body: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        with self._open(method, path, data, {"Content-Type": "application/json"}) as resp:
            raw = resp.read()
        parsed = json.loads(raw) if raw else {}
        return parsed if isinstance(parsed, dict) else {}

    def download(self, path: str, dest: Path) -> tuple[str, int]:
        """Stream a GET to dest; (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        with self._open("GET", path, None) as resp, dest.open("wb") as out:
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return digest.hexdigest(), size

    def upload(self, path: str, source: Path) -> None:
        with self._open("POST", path, source.read_bytes(),
                        {"Content-Type": "application/octet-stream"}) as resp:
            resp.read()


def kubernetes_login(http: VaultHttp, *, mount: str, role: str, jwt: str) -> str:
    """A token from the Kubernetes auth method for the pod's service-account token."""
    data = http.json("POST", f"auth/{mount}/login", {"role": role, "jwt": jwt})
    token = (data.get("auth") or {}).get("client_token")
    if not token:
        raise SnapshotError(f"Vault at {http.addr} answered the {mount} login of role {role} "
                            "without a token")
    return str(token)


def cluster_facts(http: VaultHttp) -> dict[str, str]:
    """Version and cluster id from the unauthenticated sys/health (standbys answer too)."""
    anonymous = VaultHttp(http.addr, http.ca_cert, None, http.timeout)
    request = urllib.request.Request(
        f"{http.addr.rstrip('/')}/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200")
    try:
        with urllib.request.urlopen(request, timeout=30,
                                    context=anonymous._context()) as resp:
            data = json.load(resp)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read sys/health of Vault at {http.addr}: {exc}") from None
    return {"vault_version": str(data.get("version") or ""),
            "cluster_id": str(data.get("cluster_id") or ""),
            "initialized": str(bool(data.get("initialized"))).lower(),
            "sealed": str(bool(data.get("sealed"))).lower()}


def check_snapshot_file(path: Path, name: str) -> None:
    """Refuse a file that is not a raft snapshot (a gzip-compressed tar with meta.json)."""
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
            members = {m.name for m in archive}
    except (OSError, EOFError, tarfile.TarError):
        raise SnapshotError(f"snapshot {name} is not a Vault raft snapshot (not a readable "
                            "gzip tar archive); refusing to restore it") from None
    if "meta.json" not in members or "state.bin" not in members:
        raise SnapshotError(f"snapshot {name} lacks meta.json or state.bin; it is not a Vault "
                            "raft snapshot; refusing to restore it")


def object_name(region: str, created: datetime) -> str:
    return f"vault/{region}/{utc_stamp(created)}.snap"


def take_snapshot(http: VaultHttp, store: BackupStore, *, region: str, workdir: Path,
                  now: datetime | None = None) -> StoredObject:
    """Snapshot Vault into workdir, upload it with its facts, remove the local file."""
    created = now or datetime.now(UTC)
    facts = cluster_facts(http)
    local = workdir / "vault.snap"
    try:
        sha256, size = http.download(SNAPSHOT_PATH, local)
        if size == 0:
            raise SnapshotError(f"Vault at {http.addr} returned an empty snapshot")
        check_snapshot_file(local, "just taken")
        meta = snapshot_metadata(KIND, region, created, sha256,
                                 vault_version=facts["vault_version"],
                                 vault_cluster_id=facts["cluster_id"], size=str(size))
        return store.upload(object_name(region, created), local, meta)
    finally:
        local.unlink(missing_ok=True)


def latest(store: BackupStore, region: str) -> StoredObject:
    found = [o for o in store.list(f"vault/{region}/") if o.name.endswith(".snap")]
    if not found:
        raise StoreError(f"gs://{store.bucket} holds no Vault snapshot of {region} (under "
                         f"vault/{region}/); nothing to restore")
    return found[-1]


def restore_endpoint(snapshot_cluster_id: str, live_cluster_id: str) -> str:
    """snapshot for the same cluster, snapshot-force for another cluster's keys."""
    same = bool(snapshot_cluster_id) and snapshot_cluster_id == live_cluster_id
    return SNAPSHOT_PATH if same else f"{SNAPSHOT_PATH}-force"
