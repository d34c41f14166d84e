"""The project's own RDB check (tai_deploy.rdb_check) and the restore's use of it, on RDB files
written by a REAL redis-server (Debian's 7.0, RDB format version 10).

The CRC64 is checked against the test vectors of Redis's src/crc64.c and against a bit-by-bit
transcription of that file's ``_crc64``; the dumps hold every kind of value Redis 7.0 writes
(plain, integer and LZF strings, quicklists, intsets, listpacks, hash tables, skiplists, a
stream with a consumer group and a pending entry, expires, a function library, two databases),
and each is also read by Debian's redis-check-rdb, whose key count the walk must match.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers.gcs_double import gcs_double
from helpers.redis_nodes import REDIS_CLI, RedisNode, cli, redis_nodes
from tai_deploy.backup_store import BackupStore, UrllibTransport, snapshot_metadata
from tai_deploy.rdb_check import (
    RdbError,
    check_rdb_bytes,
    check_rdb_file,
    crc64,
    crc64_table,
)
from tai_deploy.redis_snapshot import (
    KIND,
    OWN_CHECK,
    CheckerTooOld,
    RedisError,
    SetMember,
    check_rdb,
    check_snapshot,
    download_and_check,
    fetch_rdb,
)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="redis-server is not installed (run `make setup`)")

STANDALONE = ("--cluster-enabled", "no")
LIBRARY = ("#!lua name=tailib\n"
           "redis.register_function('tai_one', function(keys, args) return 1 end)")


def _fill(node: RedisNode) -> int:
    """Every kind of value Redis 7.0 writes; returns the number of keys."""
    port = node.port
    commands: list[tuple[str, ...]] = [
        ("SET", "plain", "hello"), ("SET", "int8", "100"), ("SET", "int32", "-70000"),
        ("SET", "lzf", "abc" * 500), ("SET", "with-ttl", "v", "EX", "100000"),
        ("SET", "with-pttl", "w", "PX", "99999999"),
        ("RPUSH", "list-small", "a", "b", "1", "2"),
        ("RPUSH", "list-big", *[f"element-{i}" * 20 for i in range(3000)]),
        ("RPUSH", "list-plain-node", "x" * 10000),
        ("SADD", "set-intset", "1", "2", "3"), ("SADD", "set-listpack", "a", "b"),
        ("SADD", "set-hashtable", *[f"member-{i}" for i in range(300)]),
        ("ZADD", "zset-listpack", "1", "a", "2.5", "b"),
        ("ZADD", "zset-skiplist", *[x for i in range(300) for x in (str(i * 1.5), f"m{i}")]),
        ("HSET", "hash-listpack", "f", "v", "g", "w"),
        ("HSET", "hash-hashtable", *[x for i in range(300) for x in (f"f{i}", f"v{i}" * 10)]),
        ("XADD", "stream", "1-1", "a", "1"), ("XADD", "stream", "1-2", "b", "2"),
        ("XGROUP", "CREATE", "stream", "group", "0"),
        ("XREADGROUP", "GROUP", "group", "consumer", "COUNT", "1", "STREAMS", "stream", ">"),
        ("FUNCTION", "LOAD", LIBRARY),
    ]
    for command in commands:
        out = cli(port, *command)
        assert "ERR" not in out, (command[:2], out)
    assert cli(port, "-n", "3", "SET", "in-db-3", "x").strip() == "OK"
    return int(cli(port, "DBSIZE").strip()) + int(cli(port, "-n", "3", "DBSIZE").strip())


def _save(node: RedisNode, dest: Path) -> Path:
    assert cli(node.port, "SAVE").strip() == "OK"
    shutil.copyfile(node.workdir / "dump.rdb", dest)
    return dest


class Dumps:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = 0
        self.saved = root / "saved.rdb"          # SAVE, the file on the server's disk
        self.synced = root / "synced.rdb"        # SYNC, what the snapshot job pulls
        self.unchecksummed = root / "unchecksummed.rdb"
        self.version = ""


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dumps]:
    root = tmp_path_factory.mktemp("rdb")
    out = Dumps(root)
    with redis_nodes(root / "nodes") as pool:
        (node,) = pool.start(1, extra_args=STANDALONE)
        out.keys = _fill(node)
        out.version = next(line.split(":", 1)[1].strip() for line in cli(
            node.port, "INFO", "server").splitlines() if line.startswith("redis_version:"))
        _save(node, out.saved)
        fetch_rdb(node.address, out.synced)
        # rdbchecksum is immutable at run time (config.c): a server started without it.
        (bare,) = pool.start(1, extra_args=(*STANDALONE, "--rdbchecksum", "no"))
        _fill(bare)
        _save(bare, out.unchecksummed)
    yield out


def _crc64_bitwise(data: bytes) -> int:
    """``_crc64(0, data, len)`` of Redis 7.4.1's src/crc64.c, transcribed bit by bit (pycrc's
    bit-by-bit-fast: POLY 0xad93d23594c935a9, input bits least significant first, the register
    reflected at the end), as an implementation independent of the tables under test."""
    poly = 0xAD93D23594C935A9
    crc = 0
    for byte in data:
        i = 1
        while i & 0xFF:
            bit = bool(crc & 0x8000000000000000) ^ bool(byte & i)
            crc = (crc << 1) & 0xFFFFFFFFFFFFFFFF
            if bit:
                crc ^= poly
            i <<= 1
    return int(f"{crc:064b}"[::-1], 2)


def _with_crc(body: bytes) -> bytes:
    """body (header, records, EOF opcode) and its CRC64 trailer, little-endian."""
    return body + crc64(body).to_bytes(8, "little")


def test_crc64_matches_the_test_vectors_of_redis() -> None:
    # src/crc64.c of Redis 7.4.1, crc64Test(): "[64speed]: e9c6d914c4b8d9ca == ..." for
    # crc64(0, "123456789", 9), and c7794709e69683b3 for the Lorem ipsum text over
    # sizeof(li) bytes, which counts the string's terminating NUL.
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    lorem = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
             b"incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis "
             b"nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. "
             b"Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
             b"fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in "
             b"culpa qui officia deserunt mollit anim id est laborum.\0")
    assert crc64(lorem) == 0xC7794709E69683B3
    assert crc64_table(lorem) == 0xC7794709E69683B3
    assert _crc64_bitwise(b"123456789") == 0xE9C6D914C4B8D9CA
    rng = random.Random(12)
    # Both ways (tables below 1024 bytes, folding from there), whole and continued.
    for size in (0, 1, 7, 8, 9, 15, 16, 17, 1000, 1023, 1024, 1025, 4099):
        data = rng.randbytes(size)
        assert crc64(data) == crc64_table(data) == _crc64_bitwise(data), size
        for cut in {0, size // 3, size}:
            assert crc64(data[cut:], crc64(data[:cut])) == crc64(data), (size, cut)
            assert crc64_table(data[cut:], crc64(data[:cut])) == crc64(data), (size, cut)
    # Several 1 MiB folds, against the tables.
    data = rng.randbytes(3 * 2**20 + 5)
    assert crc64(data) == crc64_table(data)
    assert crc64(data[7:], crc64(data[:7])) == crc64(data)


def test_real_dumps_are_accepted_with_the_keys_redis_check_rdb_counts(dumps: Dumps) -> None:
    for path in (dumps.saved, dumps.synced):
        report = check_rdb_file(path, path.name)
        assert report.version == 10              # Redis 7.0 writes RDB format version 10
        assert report.keys == dumps.keys == check_rdb(path, path.name)
        assert report.expires == 2
        assert report.databases == (0, 3)
        assert report.aux["redis-ver"] == dumps.version
        data = path.read_bytes()
        assert report.checksum == int.from_bytes(data[-8:], "little") == crc64(data[:-8])
        assert report.checksum == _crc64_bitwise(data[:-8]) == crc64_table(data[:-8])
        assert check_rdb_bytes(data, path.name) == report


def _refusal(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "bad.rdb"
    path.write_bytes(data)
    with pytest.raises(RdbError) as refused:
        check_rdb_file(path, "snapshot x.rdb")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("snapshot x.rdb ")
    return message


def test_a_flipped_byte_is_refused_by_the_crc(dumps: Dumps, tmp_path: Path) -> None:
    data = bytearray(dumps.saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    message = _refusal(bytes(data), tmp_path)
    stored = int.from_bytes(data[-8:], "little")
    assert message == (f"snapshot x.rdb is corrupt: the CRC64 of its {len(data) - 8} bytes is "
                       f"{crc64(bytes(data[:-8])):016x}, but its trailer records {stored:016x}")


def test_a_truncated_file_is_refused(dumps: Dumps, tmp_path: Path) -> None:
    data = dumps.saved.read_bytes()
    for cut in (len(data) - 1, len(data) - 8, len(data) // 2, 12):
        message = _refusal(data[:cut], tmp_path)
        assert message.startswith("snapshot x.rdb is truncated"), (cut, message)
    message = _refusal(data + b"\n", tmp_path)
    assert "is truncated or has bytes after its end" in message
    assert _refusal(b"", tmp_path) == "snapshot x.rdb is empty: it holds no RDB header"


def test_a_wrong_magic_is_refused(dumps: Dumps, tmp_path: Path) -> None:
    data = dumps.saved.read_bytes()
    assert data[:9] == b"REDIS0010"
    assert _refusal(b"RADIS" + data[5:], tmp_path) == (
        "snapshot x.rdb is not an RDB file: it starts with b'RADIS0010', not REDIS and a "
        "four-digit format version")
    assert _refusal(b"REDIS00x0" + data[9:], tmp_path).startswith(
        "snapshot x.rdb is not an RDB file")


def test_an_unknown_version_is_refused_naming_it(dumps: Dumps, tmp_path: Path) -> None:
    data = dumps.saved.read_bytes()
    newer = _with_crc(b"REDIS0013" + data[9:-8])
    assert _refusal(newer, tmp_path) == (
        "snapshot x.rdb is an RDB of format version 13, which this project does not know (it "
        "reads versions 1 to 12, written by Redis up to 7.4)")
    assert "format version 0," in _refusal(_with_crc(b"REDIS0000" + data[9:-8]), tmp_path)
    assert "which carries no checksum" in _refusal(b"REDIS0004" + data[9:], tmp_path)


def test_a_snapshot_saved_without_checksum_is_refused(dumps: Dumps, tmp_path: Path) -> None:
    data = dumps.unchecksummed.read_bytes()
    assert data[-8:] == bytes(8)                 # what rdbchecksum no writes (rdb.c rdbSaveRio)
    assert _refusal(data, tmp_path) == (
        "snapshot x.rdb was saved with RDB checksums disabled (rdbchecksum no), so its contents "
        "cannot be verified")
    # Debian's redis-check-rdb accepts it ("checksum disabled: no check performed").
    assert check_rdb(dumps.unchecksummed, "x") == dumps.keys
    with pytest.raises(RedisError, match=r"checksums disabled .*; refusing to restore it$"):
        check_snapshot(dumps.unchecksummed, "x")


def test_garbage_that_keeps_the_crc_is_refused_by_the_walk(dumps: Dumps, tmp_path: Path) -> None:
    """Files a writer bug could produce: the CRC64 is recomputed over the changed bytes, so
    only the record walk can refuse them."""
    data = dumps.saved.read_bytes()
    # The first record of the dump is AUX (0xfa) redis-ver, at byte 9 (redis-check-rdb's
    # "[offset 9]"): an unknown type in its place.
    assert data[9] == 0xFA
    message = _refusal(_with_crc(data[:9] + b"\x08" + data[10:-8]), tmp_path)
    assert message == ("snapshot x.rdb is corrupt although its CRC64 matches: an unknown record "
                       "type 8 at byte 9")
    # Records cut inside the LZF-compressed value of key "lzf", then EOF and a right CRC.
    middle = data.index(b"\x03lzf\xc3") + 8
    message = _refusal(_with_crc(data[:middle] + b"\xff"), tmp_path)
    assert message == ("snapshot x.rdb is corrupt although its CRC64 matches: a record that runs "
                       f"past the EOF opcode at byte {middle}")
    # A length encoding rdb.c does not know (0x82: the 10 prefix is only 0x80 and 0x81).
    at = data.index(b"\x05plain")
    message = _refusal(_with_crc(data[:at] + b"\x82" + data[at + 1:-8]), tmp_path)
    assert message == ("snapshot x.rdb is corrupt although its CRC64 matches: an unknown length "
                       f"encoding 0x82 at byte {at}")


def test_format_12_is_accepted_where_the_old_checker_refused(dumps: Dumps,
                                                             tmp_path: Path) -> None:
    """An RDB whose header says format version 12 (the chart's Redis 7.4) with a right CRC64.

    No Redis 7.4 runs here, so this file is BUILT: a real dump of Debian's redis-server (format
    10) with its four version digits rewritten to 0012 and its CRC64 trailer recomputed by
    rdb_check.crc64 (checked above against Redis's own test vectors and a bit-by-bit
    transcription). That is enough for what is checked here: the header and the trailer are the
    same in both versions, and the version-10 records are records version 12 reads too.
    """
    newer = tmp_path / "format-12.rdb"
    newer.write_bytes(_with_crc(b"REDIS0012" + dumps.saved.read_bytes()[9:-8]))
    report = check_rdb_file(newer, "format-12.rdb")
    assert (report.version, report.keys) == (12, dumps.keys)
    # The old path: Debian bookworm's redis-check-rdb (7.0) does not read version 12.
    with pytest.raises(CheckerTooOld, match=r"format version 12, newer than redis-check-rdb"):
        check_rdb(newer, "format-12.rdb")
    checked = check_snapshot(newer, "format-12.rdb")
    assert (checked.version, checked.keys, checked.checked_by) == (12, dumps.keys, (OWN_CHECK,))
    # A version-10 file is read by both, and they agree.
    both = check_snapshot(dumps.saved, "saved.rdb")
    assert both.checked_by == (OWN_CHECK, "redis-check-rdb") and both.keys == dumps.keys
    with pytest.raises(RedisError, match=r"^cannot run /nonexistent/redis-check-rdb: "):
        check_snapshot(dumps.saved, "saved.rdb", "/nonexistent/redis-check-rdb")


def test_without_redis_check_rdb_the_own_check_decides(dumps: Dumps, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller that carries no redis-check-rdb (the execution environment): the default
    checker is skipped, and said to be."""
    monkeypatch.setenv("PATH", str(tmp_path))
    checked = check_snapshot(dumps.saved, "saved.rdb")
    assert (checked.version, checked.keys, checked.checked_by) == (10, dumps.keys, (OWN_CHECK,))
    with pytest.raises(RedisError, match=r"is corrupt: the CRC64 of its "):
        flipped = bytearray(dumps.saved.read_bytes())
        flipped[100] ^= 0xFF
        (tmp_path / "bad.rdb").write_bytes(bytes(flipped))
        check_snapshot(tmp_path / "bad.rdb", "bad.rdb")


def _save_len(value: int) -> bytes:
    """rdbSaveLen of Redis 7.4.1's src/rdb.c: 6-bit, 14-bit, 0x80 + 32-bit or 0x81 + 64-bit
    big-endian."""
    if value < 1 << 6:
        return bytes([value])
    if value < 1 << 14:
        return bytes([0x40 | value >> 8, value & 0xFF])
    if value <= 0xFFFFFFFF:
        return b"\x80" + value.to_bytes(4, "big")
    return b"\x81" + value.to_bytes(8, "big")


def _raw(text: bytes) -> bytes:
    """rdbSaveRawString of a string it stores as is: its length, then its bytes."""
    return _save_len(len(text)) + text


def test_the_records_only_redis_7_4_writes_are_walked(dumps: Dumps, tmp_path: Path) -> None:
    """Records of format 12 that Redis 7.0 never writes: SLOT_INFO (cluster mode), hashes with
    field expiry (HASH_METADATA, HASH_LISTPACK_EX), and the module records (MODULE_AUX,
    MODULE_2) that no module here writes. No Redis 7.4 runs here, so they are BUILT by the
    save functions of Redis 7.4.1's src/rdb.c transcribed above (rdbSaveDb: SLOT_INFO slot,
    keys, expires; rdbSaveObject: HASH_METADATA minExpire, count, then [ttl][field][value];
    HASH_LISTPACK_EX minExpire, then the listpack; rdbSaveSingleModuleAux: module id,
    RDB_MODULE_OPCODE_UINT, when, values, RDB_MODULE_OPCODE_EOF) and spliced before the EOF
    opcode of a real dump, whose version digits say 0012 and whose CRC64 is recomputed."""
    real = dumps.saved.read_bytes()
    minexpire = (1_900_000_000_000).to_bytes(8, "little")
    module_values = (_save_len(2) + _save_len(7) + _save_len(3) + b"\x00\x00\x80\x3f"
                     + _save_len(4) + bytes(8) + _save_len(5) + _raw(b"v") + _save_len(0))
    extra = b"".join([
        b"\xf4" + _save_len(5) + _save_len(1) + _save_len(1),          # SLOT_INFO
        b"\x18" + _raw(b"hfe") + minexpire + _save_len(2)              # HASH_METADATA
        + _save_len(0) + _raw(b"f1") + _raw(b"v1") + _save_len(11) + _raw(b"f2") + _raw(b"v2"),
        b"\x19" + _raw(b"hfe-lp") + minexpire + _raw(b"listpack-bytes"),   # HASH_LISTPACK_EX
        b"\xf7" + _save_len(0x1234) + _save_len(2) + _save_len(2) + module_values,   # MODULE_AUX
        b"\x07" + _raw(b"module-key") + _save_len(0x1234) + module_values,  # MODULE_2
    ])
    body = b"REDIS0012" + real[9:-9] + extra + b"\xff"
    report = check_rdb_bytes(_with_crc(body), "format-12.rdb")
    assert (report.version, report.keys) == (12, dumps.keys + 3)
    # The same records, each with one field wrong, are refused by the walk.
    wrong_when = extra.replace(b"\xf7" + _save_len(0x1234) + _save_len(2),
                               b"\xf7" + _save_len(0x1234) + _save_len(3))
    with pytest.raises(RdbError, match=r"a module AUX record with when-opcode 3 at byte "):
        check_rdb_bytes(_with_crc(b"REDIS0012" + real[9:-9] + wrong_when + b"\xff"), "x")
    unknown_opcode = extra.replace(_save_len(5) + _raw(b"v") + _save_len(0),
                                   _save_len(6) + _raw(b"v") + _save_len(0), 1)
    with pytest.raises(RdbError, match=r"an unknown module value opcode 6 at byte "):
        check_rdb_bytes(_with_crc(b"REDIS0012" + real[9:-9] + unknown_opcode + b"\xff"), "x")


def test_the_restore_downloads_and_refuses_a_corrupt_snapshot(dumps: Dumps,
                                                              tmp_path: Path) -> None:
    """download_and_check, which the restore playbook's "Download and check the snapshot set"
    step runs (module redis_snapshot_restore, action prepare), through the Cloud Storage double.
    The corrupt RDB's sha256 is the one recorded (the bytes were bad before the upload, as from
    a failing disk), so only the RDB check can refuse it."""
    sound = dumps.saved.read_bytes()
    flipped = bytearray(sound)
    flipped[len(flipped) // 3] ^= 0x40
    files = {"sound": sound, "format-12": _with_crc(b"REDIS0012" + sound[9:-8]),
             "corrupt": bytes(flipped)}
    created = datetime(2026, 12, 1, 3, 23, tzinfo=UTC)
    with gcs_double("tai-test-europe-west1-backups") as (endpoint, state):
        store = BackupStore(state.bucket, UrllibTransport(None), endpoint)
        members = {}
        for label, data in files.items():
            local = tmp_path / f"{label}.rdb"
            local.write_bytes(data)
            meta = snapshot_metadata(KIND, "europe-west1", created,
                                     hashlib.sha256(data).hexdigest(), node_id=label,
                                     slots="0-16383")
            obj = store.upload(f"redis/europe-west1/20261201T032300Z/{label}.rdb", local, meta)
            members[label] = SetMember(obj, label, ((0, 16383),))
        listed = download_and_check(store, [members["sound"], members["format-12"]],
                                    tmp_path / "dl")
        assert [(m["node_id"], m["keys"], m["rdb_version"], m["checked_by"]) for m in listed] == [
            ("sound", dumps.keys, 10, [OWN_CHECK, "redis-check-rdb"]),
            ("format-12", dumps.keys, 12, [OWN_CHECK])]
        assert Path(listed[0]["file"]).read_bytes() == sound
        with pytest.raises(RedisError) as refused:
            download_and_check(store, [members["sound"], members["corrupt"]], tmp_path / "dl")
    message = str(refused.value)
    assert message.startswith("snapshot redis/europe-west1/20261201T032300Z/corrupt.rdb is "
                              "corrupt: the CRC64 of its ")
    assert message.endswith("; refusing to restore it") and "\n" not in message


def test_the_walk_counts_what_dbsize_counts_in_a_dump_of_many_keys(tmp_path: Path) -> None:
    """Many small keys of two types (the 1M-key timing is benchmarks/rdb_check_bench.py's)."""
    with redis_nodes(tmp_path) as pool:
        (node,) = pool.start(1, extra_args=STANDALONE)
        script = "".join(f"SET k{i} {i}\r\nHSET h{i} f {i}\r\n" for i in range(20000))
        proc = subprocess.run([REDIS_CLI, "-p", str(node.port), "--pipe"], input=script,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert cli(node.port, "SAVE").strip() == "OK"
        report = check_rdb_file(node.workdir / "dump.rdb")
        assert report.keys == int(cli(node.port, "DBSIZE").strip()) == 40000


def test_the_walk_keeps_the_expire_time_redis_reports_for_each_key(tmp_path: Path) -> None:
    with redis_nodes(tmp_path / "nodes") as pool:
        (node,) = pool.start(1, extra_args=STANDALONE)
        for command in (("SET", "ex", "v", "EX", "100000"), ("SET", "px", "v", "PX", "2500"),
                        ("SET", "at", "v", "PXAT", "4102444800123"), ("SET", "none", "v"),
                        ("RPUSH", "list", "a"), ("PEXPIRE", "list", "600000")):
            assert "ERR" not in cli(node.port, *command)
        # PEXPIRETIME (Redis 7.0): the absolute expire time in ms, which the RDB records.
        told = sorted(int(cli(node.port, "PEXPIRETIME", key).strip())
                      for key in ("ex", "px", "at", "list"))
        report = check_rdb_file(_save(node, tmp_path / "dump.rdb"))
    assert (report.keys, report.expires) == (5, 4)
    assert sorted(report.expire_times) == told and told[-1] == 4102444800123
    assert report.expiring_after(told[1]) == 2 and report.expiring_after(0) == 4


def test_an_expire_time_in_seconds_is_read_as_redis_reads_it() -> None:
    # RDB_OPCODE_EXPIRETIME (253, written before RDB 3): rdb.c reads rdbLoadTime, an int32 of
    # seconds, and multiplies it by 1000. Then a string key "k" with value "v".
    body = b"REDIS0009" + b"\xfd" + (2_000_000_000).to_bytes(4, "little") + b"\x00\x01k\x01v\xff"
    report = check_rdb_bytes(_with_crc(body), "seconds.rdb")
    assert (report.keys, report.expires, list(report.expire_times)) == (1, 1, [2_000_000_000_000])
