"""Per-master RDB snapshots of the TAI Redis cluster, and re-forming a cluster from a set of them.

Standard library only: the snapshot CronJob runs this file with a plain Python image, and it
speaks RESP itself (no redis-cli there).

Taking a set (``take_snapshots``), for each master of ``CLUSTER NODES``:

1. ``BGSAVE SCHEDULE`` (sent again once an RDB child that was running ends), then wait until
   ``INFO persistence`` shows no save in progress and a newer ``LASTSAVE`` (or more
   ``rdb_saves``) with ``rdb_last_bgsave_status:ok``: the master can fork and write, and its own
   disk holds a fresh ``dump.rdb``.
2. The RDB is pulled over the network with ``SYNC`` (what ``redis-cli --rdb`` does): the job pod
   cannot mount the master's volume, and the master streams a point-in-time RDB to the caller.
3. ``CLUSTER NODES`` is read again: a master whose slots moved meanwhile makes the set refused.
4. The RDB goes to ``redis/<region>/<stamp>/<node id>.rdb`` with its node id, slot ranges,
   address, Redis version and sha256 beside it; a ``manifest.json`` written last lists the whole
   set, so a set without one (a job that died half-way) is never chosen.

Every connection speaks TLS and logs in as an ACL user when ``Access`` says so (the chart's nodes
listen on TLS only, and their default user is disabled): the snapshot job as user ``snapshot``,
the restore as ``cluster-admin``. The server certificate is verified against the Redis CA; its
name is not, because nodes are reached by the pod IPs that ``CLUSTER NODES`` announces, which
no certificate can list (redis-cli, replication and the cluster bus verify the same way).

Before a restore touches a node, every RDB of the set is downloaded and checked
(``download_and_check``): its sha256 against the recorded one, then ``check_snapshot``: the
project's own check (``rdb_check``: header, CRC64 trailer, record walk), and redis-check-rdb as
well where it reads the RDB's format version.

Re-forming (``reform``) takes nodes that were loaded with those RDBs (the chart's
``redis-load-snapshot.sh`` puts one in place and restarts the node) and empty ones for the
replicas: every master gets exactly its recorded slot ranges, the nodes meet, the replicas
replicate, and the cluster must report ``cluster_state:ok``; each master must then hold the keys
its RDB leaves after loading (``ExpectedKeys``: a range, since keys whose expiry passed are gone).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import socket
import ssl
import subprocess
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .backup_store import (
    BackupStore,
    StoredObject,
    StoreError,
    snapshot_metadata,
    utc_stamp,
    verify_download,
)
from .poll import poll
from .rdb_check import RdbError, check_rdb_file

KIND = "redis-rdb"
SET_KIND = "redis-set"
SLOTS = 16384


class RedisError(RuntimeError):
    """A Redis step failed; one sentence."""


@dataclass(frozen=True)
class Access:
    """How to reach the nodes: TLS with the CA of the Redis certificates (``ca_file``; empty is
    plain TCP, for tests of the protocol alone), an optional client certificate, and the ACL
    user and password to log in with (empty user: no AUTH)."""

    ca_file: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    cert_file: str = ""
    key_file: str = ""

    @functools.cached_property
    def _context(self) -> ssl.SSLContext | None:
        if not self.ca_file:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise RedisError(f"cannot load the Redis TLS files ({self.ca_file}"
                             f"{', ' + self.cert_file if self.cert_file else ''}): {exc}") from None
        ctx.check_hostname = False      # pod IPs: the chain is verified, see the module doc
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def context(self) -> ssl.SSLContext | None:
        """The TLS context (built once per Access), or None for plain TCP."""
        return self._context


PLAIN = Access()


def access_from_env(env: Mapping[str, str]) -> Access:
    """REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE/KEY_FILE, REDIS_USER and REDIS_PASSWORD_FILE, as
    the chart's shell scripts read them."""
    password = ""
    user = env.get("REDIS_USER", "").strip()
    if user:
        path = env.get("REDIS_PASSWORD_FILE", "").strip()
        try:
            password = Path(path).read_text().strip() if path else ""
        except OSError as exc:
            raise RedisError(f"cannot read the password of Redis user {user} from {path}: "
                             f"{exc.strerror}") from None
        if not password:
            raise RedisError(f"the password file of Redis user {user} (REDIS_PASSWORD_FILE="
                             f"{path!r}) is absent or empty")
    return Access(ca_file=env.get("REDIS_TLS_CA_FILE", "").strip(), user=user,
                  password=password, cert_file=env.get("REDIS_TLS_CERT_FILE", "").strip(),
                  key_file=env.get("REDIS_TLS_KEY_FILE", "").strip())


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.split("@", 1)[0].split(",", 1)[0].rpartition(":")
    if not host or not port.isdigit():
        raise RedisError(f"{addr!r} is not host:port")
    return host, int(port)


class Resp:
    """One RESP2 connection."""

    def __init__(self, addr: str, timeout: float = 30.0, access: Access = PLAIN) -> None:
        self.addr = addr
        host, port = split_addr(addr)
        ctx = access.context()
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise RedisError(f"cannot reach Redis at {addr}: {exc}") from None
        try:
            self.sock = ctx.wrap_socket(raw) if ctx else raw
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise RedisError(f"TLS with Redis at {addr} failed: {exc}") from None
        self.file = self.sock.makefile("rb")
        if access.user:
            try:
                self.call("AUTH", access.user, access.password)
            except RedisError:
                self.close()
                raise RedisError(f"Redis at {addr} refused the login of user {access.user} "
                                 "(wrong password, or the user is not in its ACL)") from None

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, *args: str | int) -> None:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            raw = str(arg).encode()
            parts.append(f"${len(raw)}\r\n".encode() + raw + b"\r\n")
        try:
            self.sock.sendall(b"".join(parts))
        except OSError as exc:
            raise RedisError(f"the connection to Redis at {self.addr} failed: {exc}") from None

    def line(self) -> bytes:
        try:
            raw = self.file.readline()
        except OSError as exc:
            raise RedisError(f"the connection to Redis at {self.addr} failed: {exc}") from None
        if not raw:
            raise RedisError(f"Redis at {self.addr} closed the connection")
        return raw.rstrip(b"\r\n")

    def reply(self) -> Any:
        head = self.line()
        kind, rest = head[:1], head[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(f"Redis at {self.addr} answered: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise RedisError(f"Redis at {self.addr} sent an unknown reply {head[:20]!r}")

    def call(self, *args: str | int) -> Any:
        self.send(*args)
        return self.reply()


def parse_info(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    addr: str
    flags: tuple[str, ...]
    master_id: str
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags or "noaddr" in self.flags


def parse_slots(fields: Iterable[str]) -> tuple[tuple[int, int], ...]:
    ranges = []
    for item in fields:
        if item.startswith("["):      # a slot being migrated or imported
            continue
        low, _, high = item.partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(sorted(ranges))


def format_slots(ranges: Iterable[tuple[int, int]]) -> str:
    return " ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def slots_from_text(text: str) -> tuple[tuple[int, int], ...]:
    return parse_slots(text.split())


def cluster_nodes(conn: Resp) -> list[ClusterNode]:
    rows = []
    for line in str(conn.call("CLUSTER", "NODES")).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        rows.append(ClusterNode(parts[0], parts[1].split("@", 1)[0], tuple(parts[2].split(",")),
                                parts[3], parse_slots(parts[8:])))
    return rows


def masters_of(seeds: Sequence[str], access: Access = PLAIN) -> list[ClusterNode]:
    """The masters that serve slots, from the first seed that answers; refuses a bad cluster."""
    problems = []
    for seed in seeds:
        try:
            with Resp(seed, access=access) as conn:
                info = parse_info(str(conn.call("CLUSTER", "INFO")))
                nodes = cluster_nodes(conn)
        except RedisError as exc:
            problems.append(str(exc))
            continue
        if info.get("cluster_state") != "ok":
            raise RedisError(f"the Redis cluster is {info.get('cluster_state')} (seen from "
                             f"{seed}); a snapshot of a broken cluster would not restore it")
        masters = [n for n in nodes if n.is_master and n.slots and not n.is_failed]
        covered = sum(b - a + 1 for n in masters for a, b in n.slots)
        if covered != SLOTS:
            raise RedisError(f"the masters seen from {seed} serve {covered} of {SLOTS} slots")
        return sorted(masters, key=lambda n: n.slots)
    raise RedisError("no Redis node answered: " + "; ".join(problems))


def _bgsave(conn: Resp) -> bool:
    """BGSAVE SCHEDULE: True when the save started, or was scheduled after a running AOF
    rewrite (plain BGSAVE is refused then); False when another RDB child runs (rdb.c,
    bgsaveCommand: "Background save already in progress")."""
    try:
        conn.call("BGSAVE", "SCHEDULE")
    except RedisError as exc:
        if "in progress" not in str(exc):
            raise
        return False
    return True


def bgsave_and_wait(conn: Resp, timeout: float) -> None:
    """BGSAVE and wait for it through LASTSAVE / INFO persistence.

    The RDB child that was running when BGSAVE came may be a replica's diskless full sync (or
    another client's SYNC with EOF capability), which writes to a socket: when it ends, neither
    LASTSAVE nor rdb_saves has moved. So once no RDB child runs, BGSAVE is sent again.
    """
    before = int(conn.call("LASTSAVE"))
    saves_before = int(parse_info(str(conn.call("INFO", "persistence"))).get("rdb_saves", -1))
    started = _bgsave(conn)

    def persistence() -> tuple[dict[str, str], bool]:
        """INFO persistence, and whether our save has finished (sent again if it never ran)."""
        nonlocal started
        info = parse_info(str(conn.call("INFO", "persistence")))
        done = info.get("rdb_bgsave_in_progress") == "0"
        newer = (int(conn.call("LASTSAVE")) > before
                 or int(info.get("rdb_saves", -1)) > saves_before >= 0)
        if done and not newer and not started:
            started = _bgsave(conn)
        return info, done and newer

    def late(_: tuple[dict[str, str], bool]) -> tuple[dict[str, str], bool]:
        raise RedisError(f"BGSAVE on {conn.addr} did not finish within {timeout:g} s")

    info, _ = poll(persistence, lambda answer: answer[1], timeout=timeout, interval=0.1,
                   on_timeout=late)
    if info.get("rdb_last_bgsave_status") != "ok":
        raise RedisError(f"BGSAVE failed on {conn.addr} (rdb_last_bgsave_status "
                         f"{info.get('rdb_last_bgsave_status')}); see its log")


def fetch_rdb(addr: str, dest: Path, timeout: float = 600.0, access: Access = PLAIN
              ) -> tuple[str, int]:
    """Pull a point-in-time RDB with SYNC; (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    with Resp(addr, timeout=timeout, access=access) as conn, dest.open("wb") as out:
        conn.send("SYNC")
        head = conn.line()
        while head == b"":                     # keep-alive newlines while the master forks
            head = conn.line()
        if not head.startswith(b"$"):
            raise RedisError(f"Redis at {addr} answered SYNC with {head[:60]!r}")
        marker = head[1:]
        # Reading the transfer to its end (mark or length), not a wait: nothing is polled.
        if marker.startswith(b"EOF:"):        # diskless transfer, ends with the 40-byte mark
            mark = marker[4:]
            tail = b""
            while True:
                chunk = conn.file.read1(1 << 20)
                if not chunk:
                    raise RedisError(f"Redis at {addr} ended the RDB transfer early")
                tail += chunk
                if tail.endswith(mark):
                    body = tail[:-len(mark)]
                    out.write(body)
                    digest.update(body)
                    size += len(body)
                    break
                keep = tail[:-len(mark)]
                out.write(keep)
                digest.update(keep)
                size += len(keep)
                tail = tail[-len(mark):]
        else:
            remaining = int(marker)
            while remaining:
                chunk = conn.file.read(min(remaining, 1 << 20))
                if not chunk:
                    raise RedisError(f"Redis at {addr} ended the RDB transfer early")
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                remaining -= len(chunk)
    return digest.hexdigest(), size


def set_prefix(region: str, stamp: str) -> str:
    return f"redis/{region}/{stamp}/"


def take_snapshots(seeds: Sequence[str], store: BackupStore, *, region: str, workdir: Path,
                   bgsave_timeout: float = 600.0, now: datetime | None = None,
                   access: Access = PLAIN) -> StoredObject:
    """Snapshot every master; returns the set's manifest object."""
    created = now or datetime.now(UTC)
    stamp = utc_stamp(created)
    masters = masters_of(seeds, access)
    entries = []
    for master in masters:
        with Resp(master.addr, access=access) as conn:
            version = parse_info(str(conn.call("INFO", "server"))).get("redis_version", "")
            bgsave_and_wait(conn, bgsave_timeout)
        local = workdir / f"{master.node_id}.rdb"
        try:
            sha256, size = fetch_rdb(master.addr, local, access=access)
            with Resp(master.addr, access=access) as conn:
                now_nodes = {n.node_id: n for n in cluster_nodes(conn)}
            current = now_nodes.get(master.node_id)
            if current is None or not current.is_master or current.slots != master.slots:
                raise RedisError(f"master {master.node_id} ({master.addr}) changed its role or "
                                 "slots during the snapshot; the set is incomplete, run it again")
            name = f"{set_prefix(region, stamp)}{master.node_id}.rdb"
            meta = snapshot_metadata(KIND, region, created, sha256, node_id=master.node_id,
                                     slots=format_slots(master.slots), address=master.addr,
                                     redis_version=version, size=str(size))
            store.upload(name, local, meta)
        finally:
            local.unlink(missing_ok=True)
        entries.append({"object": name, "node_id": master.node_id, "address": master.addr,
                        "slots": format_slots(master.slots), "sha256": sha256, "size": size,
                        "redis_version": version})
    manifest = workdir / "manifest.json"
    manifest.write_text(json.dumps({"kind": SET_KIND, "region": region,
                                    "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "masters": entries}, indent=2, sort_keys=True) + "\n")
    try:
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        meta = snapshot_metadata(SET_KIND, region, created, digest, masters=str(len(entries)))
        return store.upload(f"{set_prefix(region, stamp)}manifest.json", manifest, meta,
                            content_type="application/json")
    finally:
        manifest.unlink(missing_ok=True)


# --- restore side (controller) ------------------------------------------------------------

@dataclass(frozen=True)
class SetMember:
    obj: StoredObject
    node_id: str
    slots: tuple[tuple[int, int], ...]


def latest_set(store: BackupStore, region: str, stamp: str = "") -> StoredObject:
    """The newest complete set (one with a manifest), or the one named by its stamp."""
    prefix = set_prefix(region, stamp) if stamp else f"redis/{region}/"
    manifests = [o for o in store.list(prefix) if o.name.endswith("/manifest.json")]
    if not manifests:
        what = f"set {stamp}" if stamp else "complete snapshot set"
        raise StoreError(f"gs://{store.bucket} holds no Redis {what} of {region} (under "
                         f"{prefix}, with a manifest.json); nothing to restore")
    return manifests[-1]


def members(manifest: Mapping[str, Any], objects: Mapping[str, StoredObject]) -> list[SetMember]:
    """The set's RDBs, checked against each other: every slot exactly once."""
    out = []
    seen = [0] * SLOTS
    for entry in manifest.get("masters") or []:
        obj = objects.get(str(entry.get("object")))
        if obj is None:
            raise StoreError(f"snapshot {entry.get('object')} listed by the set's manifest is "
                             "missing from the bucket; refusing to restore an incomplete set")
        slots = slots_from_text(obj.metadata.get("tai-slots", ""))
        if obj.metadata.get("tai-sha256") != entry.get("sha256") or format_slots(
                slots) != entry.get("slots"):
            raise StoreError(f"snapshot {obj.name} does not match the set's manifest (sha256 or "
                             "slots); refusing to restore it")
        for low, high in slots:
            for slot in range(low, high + 1):
                seen[slot] += 1
        out.append(SetMember(obj, obj.metadata.get("tai-node-id", ""), slots))
    if any(count != 1 for count in seen):
        missing = seen.count(0)
        raise StoreError(f"the snapshot set does not cover every slot exactly once ({missing} "
                         "slots without a snapshot); refusing to restore it")
    return sorted(out, key=lambda m: m.slots)


_KEYS_READ = re.compile(r"(\d+) keys read")
# rdb.c (redis-check-rdb): "Can't handle RDB format version %d".
_NEWER_FORMAT = re.compile(r"Can't handle RDB format version (\d+)")
DEFAULT_CHECKER = "redis-check-rdb"


class CheckerTooOld(RedisError):
    """redis-check-rdb does not read the RDB's format version (the file is not called corrupt)."""


def check_rdb(path: Path, name: str, check_binary: str = DEFAULT_CHECKER) -> int:
    """redis-check-rdb must accept the file; returns the keys it read."""
    try:
        proc = subprocess.run([check_binary, str(path)], capture_output=True, text=True,
                              timeout=3600, check=False)
    except OSError as exc:
        raise RedisError(f"cannot run {check_binary}: {exc.strerror}") from None
    text = proc.stdout + proc.stderr
    newer = _NEWER_FORMAT.search(text)
    if newer:
        # A sound snapshot of a newer Redis (the chart's 7.4 writes version 12; Debian
        # bookworm's 7.0 checker reads up to 10): the checker is too old, not the file bad.
        raise CheckerTooOld(f"snapshot {name} is an RDB of format version {newer.group(1)}, "
                            f"newer than {check_binary} on this controller reads; install the "
                            f"redis-check-rdb of the Redis that wrote it (the chart's "
                            f"redis.image.tag) and restore again")
    if proc.returncode != 0 or "RDB looks OK" not in text:
        reason = next((ln.split("]", 1)[-1].strip() for ln in text.splitlines()
                       if "Error" in ln or "Wrong" in ln or "Unexpected" in ln), "refused")
        raise RedisError(f"snapshot {name} is corrupt: redis-check-rdb refuses it ({reason}); "
                         "refusing to restore it")
    match = _KEYS_READ.search(text)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class SnapshotCheck:
    """An accepted RDB: its format version, its keys, and which checks accepted it."""

    version: int
    keys: int
    expires: int
    checked_by: tuple[str, ...]
    expire_times: array[int] = field(default_factory=lambda: array("q"), repr=False)

    @property
    def expected(self) -> ExpectedKeys:
        """What the master loaded from this RDB must hold."""
        return ExpectedKeys(self.keys, self.expires, self.expire_times)


@dataclass(frozen=True)
class ExpectedKeys:
    """The keys a master loaded from an RDB must hold: a range, not the RDB's count.

    A master drops the keys whose expiry has passed: while it loads a dump.rdb (Redis 7.4's
    rdb.c, rdbLoadRioWithLoadingCtx: ``iAmMaster() && !(rdbflags&RDBFLAGS_AOF_PREAMBLE) &&
    expiretime != -1 && expiretime < now``, ``now`` read when the load starts), or by its expire
    cycle soon after it loaded the RDB as an AOF base (the chart's appendonly yes; that flag
    makes rdb.c load every key). So the master holds at most the RDB's keys, and at least its
    keys without an expiry plus those whose expiry is still ahead of the master's clock when the
    keys are counted (later than the load, so each of them was kept by it). Without the expire
    times (``expire_times`` None), at least the keys without an expiry.
    """

    keys: int
    expires: int = 0
    expire_times: Sequence[int] | None = field(default=None, repr=False)

    def refusal(self, name: str, held: int, now_ms: int | None) -> str | None:
        """None when ``held`` keys, counted when the master's clock read ``now_ms`` (or just
        before; None: not known), fit the range; else the sentence that says which bound failed
        and why."""
        lasting = self.keys - self.expires
        what = f"the master loaded from {name} holds {held} keys"
        if held > self.keys:
            return (f"{what}, more than the {self.keys} its snapshot holds: it was written to "
                    "since it loaded the RDB, or it loaded another one")
        if now_ms is None or self.expire_times is None or len(
                self.expire_times) != self.expires:
            if held < lasting:
                return (f"{what}, fewer than the {lasting} keys without an expiry in its "
                        "snapshot (only keys whose expiry passed may be gone): it did not load "
                        "the whole RDB")
            return None
        ahead = sum(1 for when in self.expire_times if when > now_ms)
        if held < lasting + ahead:
            clock = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
            return (f"{what}, fewer than the {lasting + ahead} its snapshot must leave after "
                    f"loading ({lasting} keys without an expiry and {ahead} whose expiry is "
                    f"still ahead of the master's clock, {clock}): it did not load the whole "
                    "RDB")
        return None


def expected_from_file(path: Path, name: str) -> ExpectedKeys:
    """The range of keys for the master loaded from the RDB at path (the project's walk)."""
    try:
        report = check_rdb_file(path, f"snapshot {name}")
    except RdbError as exc:
        raise RedisError(f"{exc}; cannot tell the keys the master loaded from it must "
                         "hold") from None
    return ExpectedKeys(report.keys, report.expires, report.expire_times)


# The project's own check, as checked_by names it.
OWN_CHECK = "rdb_check (header, CRC64, records)"


def check_snapshot(path: Path, name: str, check_binary: str = DEFAULT_CHECKER) -> SnapshotCheck:
    """The restore's check of one RDB, before anything is touched.

    The project's check (rdb_check) always runs and must accept the file. redis-check-rdb, a
    full load, runs as well where it reads the file's format version, and must accept it with
    the same key count; where it is older than the file's format (Debian bookworm's 7.0 and the
    chart's 7.4 RDBs), or it is the default checker and not installed, the project's check
    alone decides, and ``checked_by`` says so.
    """
    try:
        report = check_rdb_file(path, f"snapshot {name}")
    except RdbError as exc:
        raise RedisError(f"{exc}; refusing to restore it") from None
    checked = [OWN_CHECK]
    if check_binary == DEFAULT_CHECKER and shutil.which(check_binary) is None:
        return SnapshotCheck(report.version, report.keys, report.expires, tuple(checked),
                             report.expire_times)
    try:
        keys = check_rdb(path, name, check_binary)
    except CheckerTooOld:
        return SnapshotCheck(report.version, report.keys, report.expires, tuple(checked),
                             report.expire_times)
    if keys != report.keys:
        raise RedisError(f"snapshot {name}: {check_binary} reads {keys} keys but the record walk "
                         f"counts {report.keys}; refusing to restore a snapshot the two checks "
                         "disagree on")
    checked.append(check_binary)
    return SnapshotCheck(report.version, report.keys, report.expires, tuple(checked),
                             report.expire_times)


def download_and_check(store: BackupStore, set_members: Sequence[SetMember], workdir: Path,
                       check_binary: str = DEFAULT_CHECKER) -> list[dict[str, Any]]:
    """Download every RDB of the set into workdir and check it (sha256 against the recorded
    one, then ``check_snapshot``); the masters in slot order, each with its local file and key
    count. Refuses, in one sentence, the first RDB that fails."""
    listed = []
    for member in set_members:
        local = workdir / member.obj.name.rsplit("/", 1)[-1]
        store.download(member.obj.name, local)
        verify_download(member.obj, local)
        checked = check_snapshot(local, member.obj.name, check_binary)
        listed.append({"object": member.obj.name, "node_id": member.node_id,
                       "slots": format_slots(member.slots), "file": str(local),
                       "keys": checked.keys, "expires": checked.expires,
                       "rdb_version": checked.version,
                       "checked_by": list(checked.checked_by)})
    return listed


def live_data(addrs: Sequence[str], access: Access = PLAIN) -> list[str]:
    """Nodes that hold keys or belong to a formed cluster (what a restore would overwrite)."""
    found = []
    for addr in addrs:
        with Resp(addr, access=access) as conn:
            keys = int(conn.call("DBSIZE"))
            known = int(parse_info(str(conn.call("CLUSTER", "INFO"))).get(
                "cluster_known_nodes", "1"))
        if keys or known > 1:
            found.append(f"{addr} ({keys} keys, {known} known nodes)")
    return found


def _ready(check: Any) -> bool:
    """check(), where a node still loading its dataset (a replica's first full sync of a large
    master) counts as not yet."""
    try:
        return bool(check())
    except RedisError as exc:
        if "LOADING" in str(exc):
            return False
        raise


def _wait(check: Any, timeout: float, what: str) -> None:
    def late(_: bool) -> bool:
        raise RedisError(f"{what} within {timeout:g} s")

    poll(lambda: _ready(check), timeout=timeout, interval=0.1, on_timeout=late)


def _check_keys(masters: Sequence[tuple[str, str, SetMember]],
                expected_keys: Mapping[str, ExpectedKeys], access: Access) -> dict[str, int]:
    """Each master's keys (DBSIZE), refused in one sentence outside its expected range."""
    counts = {}
    clocks: dict[str, int | None] = {}
    for addr, _, member in masters:
        with Resp(addr, access=access) as conn:
            counts[member.obj.name] = int(conn.call("DBSIZE"))
            # The master's clock after the count (a key whose expiry is later was there), from
            # INFO server: server.c's call() reads the clock as each command starts (Redis 7.0
            # on; the chart's cluster-admin user may not run TIME).
            usec = parse_info(str(conn.call("INFO", "server"))).get("server_time_usec", "")
            clocks[member.obj.name] = int(usec) // 1000 if usec.isdigit() else None
    for name, expected in expected_keys.items():
        if name not in counts:
            raise RedisError(f"no master was loaded from {name}, which the restore expects")
        refused = expected.refusal(name, counts[name], clocks[name])
        if refused:
            raise RedisError(refused)
    return counts


def reform(masters: Sequence[tuple[str, str, SetMember]], replicas: Sequence[tuple[str, str]],
           *, expected_keys: Mapping[str, ExpectedKeys] | None = None, timeout: float = 60.0,
           access: Access = PLAIN) -> dict[str, Any]:
    """Give each loaded master its slots, meet every node, attach replicas, wait for ok.

    ``masters``: (address the controller connects to, address the cluster announces, member);
    ``replicas``: (connect address, announce address), spread over the masters in turn.
    ``expected_keys``: per RDB object, the range of keys its master must hold at the end.
    """
    ids: dict[str, str] = {}
    for epoch, (addr, _, member) in enumerate(masters, start=1):
        with Resp(addr, access=access) as conn:
            nodes = cluster_nodes(conn)
            me = next(n for n in nodes if "myself" in n.flags)
            if len(nodes) > 1:
                raise RedisError(f"Redis at {addr} already knows {len(nodes) - 1} other nodes; "
                                 "load the snapshot into it first (it resets the node)")
            owned = {s for a, b in me.slots for s in range(a, b + 1)}
            wanted = {s for a, b in member.slots for s in range(a, b + 1)}
            if owned - wanted:
                raise RedisError(f"Redis at {addr} holds keys of slots outside "
                                 f"{format_slots(member.slots)}; it was loaded with another RDB")
            conn.call("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for low, high in member.slots:
                todo = [s for s in range(low, high + 1) if s not in owned]
                if todo:
                    conn.call("CLUSTER", "ADDSLOTS", *todo)
            ids[addr] = me.node_id
    for addr, _ in replicas:
        with Resp(addr, access=access) as conn:
            if int(conn.call("DBSIZE")) or len(cluster_nodes(conn)) > 1:
                raise RedisError(f"Redis at {addr} is not empty; reset it before it becomes a "
                                 "replica")
            ids[addr] = next(n.node_id for n in cluster_nodes(conn) if "myself" in n.flags)
    first = masters[0][0]
    everyone = [(a, ann) for a, ann, _ in masters] + list(replicas)
    with Resp(first, access=access) as conn:
        for _, announce in everyone[1:]:
            host, port = split_addr(announce)
            conn.call("CLUSTER", "MEET", host, port)

    def all_known() -> bool:
        for addr, _ in everyone:
            with Resp(addr, access=access) as conn:
                if len([n for n in cluster_nodes(conn) if "handshake" not in n.flags]) < len(
                        everyone):
                    return False
        return True

    _wait(all_known, timeout, "the restored nodes did not all learn each other")
    for index, (addr, _) in enumerate(replicas):
        master_addr = masters[index % len(masters)][0]
        with Resp(addr, access=access) as conn:
            conn.call("CLUSTER", "REPLICATE", ids[master_addr])

    def healthy() -> bool:
        for addr, _ in everyone:
            with Resp(addr, access=access) as conn:
                info = parse_info(str(conn.call("CLUSTER", "INFO")))
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
        for addr, _ in replicas:
            with Resp(addr, access=access) as conn:
                repl = parse_info(str(conn.call("INFO", "replication")))
                if repl.get("master_link_status") != "up":
                    return False
        return True

    _wait(healthy, timeout, "the restored cluster did not reach cluster_state:ok")
    counts = _check_keys(masters, expected_keys or {}, access)
    return {"masters": {a: ids[a] for a, _, _ in masters}, "keys": counts,
            "replicas": {a: ids[masters[i % len(masters)][0]]
                         for i, (a, _) in enumerate(replicas)}}
