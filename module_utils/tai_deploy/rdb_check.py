"""Check a Redis RDB file without a Redis of its version: header, trailer CRC64, record walk.

Standard library only, pure Python: the restore runs it on the controller, which may carry no
``redis-check-rdb`` or an older one than the Redis that wrote the snapshot (Debian bookworm's
7.0 reads RDB format versions up to 10; the chart's Redis 7.4 writes version 12). The format is
taken from Redis 7.4.1's ``src/rdb.h``, ``src/rdb.c`` (``rdbLoadRioWithLoadingCtx``,
``rdbLoadObject``, ``rdbLoadLenByRef``, ``rdbGenericLoadStringObject``,
``rdbLoadCheckModuleValue``) and ``src/crc64.c`` (the chart runs 7.4.6, a later patch release
of the same minor version).

What ``check_rdb_file`` checks, in this order (one sentence per refusal, naming the file):

1. the header: ``REDIS`` and four ASCII digits, a format version from 1 to ``RDB_VERSION``;
   versions 1 to 4 carry no checksum and are refused as unverifiable;
2. the trailer: the EOF opcode ``0xff`` then the 8-byte little-endian CRC64 of every byte
   before the checksum (Jones polynomial, reflected, initial value 0, as ``crc64.c``); a zero
   checksum means the writer ran with ``rdbchecksum no`` and is refused (the chart keeps
   Redis's default ``rdbchecksum yes``, so a zero is not what its Redis writes);
3. the records: every opcode (AUX, RESIZEDB, EXPIRETIME(_MS), SELECTDB, SLOT_INFO, FUNCTION2,
   MODULE_AUX, IDLE, FREQ) and every value type of versions up to 12 is framed as ``rdb.c``
   reads it, and the records must end with the EOF opcode exactly where the trailer begins. The
   walk counts the keys and the keys with an expire, and keeps each expire time (the restore
   needs them: a master drops the keys whose expire has passed, see redis_snapshot.ExpectedKeys).

What it does not check: the inside of the encoded blobs (ziplists, listpacks, intsets, stream
listpacks are skipped by their length), LZF payloads (not decompressed), module payloads beyond
their opcode framing, duplicate keys, function code. Those are what ``redis-check-rdb`` (a full
load) adds where it reads the format; the CRC64 already refuses any change to those bytes made
after the file was written.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

# src/rdb.h of Redis 7.4: "#define RDB_VERSION 12"; the versions this project reads.
RDB_VERSION = 12
# rdb.c: "Verify the checksum if RDB version is >= 5" (older files end at the EOF opcode).
FIRST_CHECKSUMMED_VERSION = 5

# The Jones polynomial of src/crc64.c (POLY 0xad93d23594c935a9, "ReflectIn = True"), bit-reversed
# for the reflected, least-significant-bit-first table below.
_POLY_REFLECTED = 0x95AC9329AC4BC9B5


def _tables() -> tuple[list[int], ...]:
    """Eight 256-entry tables for slicing-by-8 (the table 0 alone is the byte-wise one)."""
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REFLECTED if crc & 1 else crc >> 1
        first.append(crc)
    tables = [first]
    for _ in range(7):
        prev = tables[-1]
        tables.append([first[value & 0xFF] ^ (value >> 8) for value in prev])
    return tuple(tables)


_T = _tables()
_QWORDS = struct.Struct("<Q")
_CHUNK = 1 << 20       # bytes per slice of a file and per fold (a multiple of 8)


def crc64_table(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Redis's CRC64 by slicing-by-8: eight bytes per step through eight tables, the remainder
    byte by byte. The way crc64.c computes it (crcspeed), and the fast one for short inputs."""
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    view = memoryview(data).cast("B")
    whole = len(view) & ~7
    for (data_word,) in _QWORDS.iter_unpack(view[:whole]):
        word = data_word ^ crc
        crc = (t7[word & 0xFF] ^ t6[(word >> 8) & 0xFF] ^ t5[(word >> 16) & 0xFF]
               ^ t4[(word >> 24) & 0xFF] ^ t3[(word >> 32) & 0xFF] ^ t2[(word >> 40) & 0xFF]
               ^ t1[(word >> 48) & 0xFF] ^ t0[word >> 56])
    for byte in view[whole:]:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


# Folding. Redis's CRC64 (reflected, initial register I, no final XOR) of n message bits is
# R = (I'·x^n + M·x^64) mod P over GF(2), bit-reversed, where P = x^64 + POLY, M is the message
# as a polynomial whose highest coefficient is the first bit sent (bytes are sent least
# significant bit first, hence the bit-reversing translation and a big-endian integer) and I' is
# I bit-reversed. T mod P is found by folding: T = H·x^h + L is congruent to H·(x^h mod P) + L,
# about half as long, and a carry-less product by a 64-bit constant is one shift and one XOR of
# a long integer per set bit. The work is then done by CPython's long-integer code, about ten
# times the speed of a table loop in Python (benchmarks/rdb_check_bench.py).
_P = (1 << 64) | 0xAD93D23594C935A9
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_X_POWERS: dict[int, int] = {}


def _reverse64(value: int) -> int:
    return int(f"{value:064b}"[::-1], 2)


def _clmul(value: int, constant: int) -> int:
    """Carry-less product of a long polynomial by a 64-bit one."""
    out = 0
    shift = 0
    while constant:
        if constant & 1:
            out ^= value << shift
        constant >>= 1
        shift += 1
    return out


def _mod_short(value: int) -> int:
    """value mod P by long division, for the last few hundred bits."""
    while (size := value.bit_length()) > 64:
        value ^= _P << (size - 65)
    return value


def _x_power(exponent: int) -> int:
    """x^exponent mod P (square and multiply; the few exponents a chunk size needs are kept)."""
    known = _X_POWERS.get(exponent)
    if known is not None:
        return known
    if exponent < 64:
        value = 1 << exponent
    elif exponent % 2:
        value = _mod_short(_x_power(exponent - 1) << 1)
    else:
        half = _x_power(exponent // 2)
        value = _mod_short(_clmul(half, half))
    _X_POWERS[exponent] = value
    return value


def _crc64_fold(data: bytes, crc: int) -> int:
    bits = 8 * len(data)
    value = (_reverse64(crc) << bits) ^ (int.from_bytes(data.translate(_BIT_REVERSED), "big") << 64)
    while (size := value.bit_length()) > 256:
        half = (size // 2) & ~63
        value = (value & ((1 << half) - 1)) ^ _clmul(value >> half, _x_power(half))
    return _reverse64(_mod_short(value))


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Redis's CRC64 (``crc64(crc, s, l)`` of src/crc64.c) of data, continuing from crc.

    Test vector of src/crc64.c (``crc64Test``): ``crc64(0, "123456789", 9)`` is
    ``0xe9c6d914c4b8d9ca``. Short inputs go through the tables, longer ones are folded 1 MiB
    at a time (both give the same value; the tests compare them with a bit-by-bit one).
    """
    view = memoryview(data).cast("B")
    if len(view) < 1024:
        return crc64_table(view, crc)
    for start in range(0, len(view), _CHUNK):
        crc = _crc64_fold(bytes(view[start:start + _CHUNK]), crc)
    return crc


class RdbError(ValueError):
    """An RDB file is refused; one sentence naming it."""


@dataclass(frozen=True)
class RdbReport:
    """What the check found in an accepted file."""

    version: int
    size: int
    checksum: int
    keys: int
    expires: int
    # The databases that hold keys.
    databases: tuple[int, ...]
    # AUX fields stored as plain strings (redis-ver, redis-bits, ctime, used-mem, ...).
    aux: dict[str, str] = field(default_factory=dict)
    # The expire time of every key that has one, in milliseconds since the epoch, file order
    # (8 bytes each: a million keys with an expire take 8 MB).
    expire_times: array[int] = field(default_factory=lambda: array("q"))

    def expiring_after(self, ms: int) -> int:
        """The keys whose expire time is later than ms (milliseconds since the epoch)."""
        return sum(1 for when in self.expire_times if when > ms)


class _Bad(Exception):
    def __init__(self, what: str, offset: int) -> None:
        super().__init__(what)
        self.what = what
        self.offset = offset


# Value types of src/rdb.h whose value is one string (an encoded blob: zipmap, ziplist,
# intset, listpack): 9 HASH_ZIPMAP, 10 LIST_ZIPLIST, 11 SET_INTSET, 12 ZSET_ZIPLIST,
# 13 HASH_ZIPLIST, 16 HASH_LISTPACK, 17 ZSET_LISTPACK, 20 SET_LISTPACK,
# 23 HASH_LISTPACK_EX_PRE_GA.
_BLOB_TYPES = frozenset({9, 10, 11, 12, 13, 16, 17, 20, 23})
_LIST, _SET, _ZSET, _HASH, _ZSET_2, _MODULE_PRE_GA, _MODULE_2 = 1, 2, 3, 4, 5, 6, 7
_QUICKLIST, _QUICKLIST_2 = 14, 18
_STREAM, _STREAM_2, _STREAM_3 = 15, 19, 21
_HASH_METADATA_PRE_GA, _HASH_METADATA, _HASH_LISTPACK_EX = 22, 24, 25
# rdbIsObjectType of src/rdb.h: "((t) >= 0 && (t) <= 7) || ((t) >= 9 && (t) <= 25)".
_VALUE_TYPES = frozenset(range(8)) | frozenset(range(9, 26))
# Opcodes of src/rdb.h.
_SLOT_INFO, _FUNCTION2, _FUNCTION_PRE_GA, _MODULE_AUX = 244, 245, 246, 247
_IDLE, _FREQ, _AUX, _RESIZEDB = 248, 249, 250, 251
_EXPIRETIME_MS, _EXPIRETIME, _SELECTDB, _EOF = 252, 253, 254, 255


def _length(buf: memoryview, pos: int) -> tuple[int, int, bool]:
    """rdbLoadLenByRef: (value, next position, is a special encoding)."""
    first = buf[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, pos + 1, False
    if kind == 1:
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2, False
    if kind == 3:
        return first & 0x3F, pos + 1, True
    if first == 0x80:
        return int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5, False
    if first == 0x81:
        return int.from_bytes(buf[pos + 1:pos + 9], "big"), pos + 9, False
    raise _Bad(f"an unknown length encoding {first:#04x}", pos)


def _plain_length(buf: memoryview, pos: int) -> tuple[int, int]:
    value, nxt, encoded = _length(buf, pos)
    if encoded:
        raise _Bad(f"a string encoding {value} where a length belongs", pos)
    return value, nxt


def _string(buf: memoryview, pos: int) -> int:
    """rdbGenericLoadStringObject, skipped: the position after the string."""
    value, nxt, encoded = _length(buf, pos)
    if not encoded:
        return nxt + value
    if value == 0:                      # RDB_ENC_INT8
        return nxt + 1
    if value == 1:                      # RDB_ENC_INT16
        return nxt + 2
    if value == 2:                      # RDB_ENC_INT32
        return nxt + 4
    if value == 3:                      # RDB_ENC_LZF: compressed length, plain length, bytes
        clen, nxt = _plain_length(buf, nxt)
        plain, nxt = _plain_length(buf, nxt)
        if clen == 0 or plain == 0:
            raise _Bad("an empty LZF string", pos)
        return nxt + clen
    raise _Bad(f"an unknown string encoding {value}", pos)


def _string_value(buf: memoryview, pos: int) -> tuple[str | None, int]:
    """A string's text where it is stored plain or as an integer (AUX fields), else None."""
    value, nxt, encoded = _length(buf, pos)
    if not encoded:
        return bytes(buf[nxt:nxt + value]).decode(errors="replace"), nxt + value
    if value in (0, 1, 2):
        size = (1, 2, 4)[value]
        return str(int.from_bytes(buf[nxt:nxt + size], "little", signed=True)), nxt + size
    return None, _string(buf, pos)


def _module_value(buf: memoryview, pos: int) -> int:
    """rdbLoadCheckModuleValue: opcodes until RDB_MODULE_OPCODE_EOF (0)."""
    while True:
        start = pos
        opcode, pos = _plain_length(buf, pos)
        if opcode == 0:
            return pos
        if opcode in (1, 2):            # SINT, UINT
            _, pos = _plain_length(buf, pos)
        elif opcode == 3:               # FLOAT
            pos += 4
        elif opcode == 4:               # DOUBLE
            pos += 8
        elif opcode == 5:               # STRING
            pos = _string(buf, pos)
        else:
            raise _Bad(f"an unknown module value opcode {opcode}", start)


def _stream(kind: int, buf: memoryview, pos: int) -> int:
    """RDB_TYPE_STREAM_LISTPACKS(_2, _3) as rdbLoadObject reads them."""
    count, pos = _plain_length(buf, pos)
    for _ in range(count):
        pos = _string(buf, pos)         # master ID (16 bytes)
        pos = _string(buf, pos)         # listpack
    # length, last_id ms and seq; from _2 on also first_id, max_deleted_entry_id, entries_added
    for _ in range(3 if kind == _STREAM else 8):
        _, pos = _plain_length(buf, pos)
    groups, pos = _plain_length(buf, pos)
    for _ in range(groups):
        pos = _string(buf, pos)         # group name
        for _ in range(2 if kind == _STREAM else 3):   # last ID ms, seq (, entries_read)
            _, pos = _plain_length(buf, pos)
        pel, pos = _plain_length(buf, pos)
        for _ in range(pel):
            pos += 16 + 8               # raw stream ID, delivery time (ms)
            _, pos = _plain_length(buf, pos)            # delivery count
        consumers, pos = _plain_length(buf, pos)
        for _ in range(consumers):
            pos = _string(buf, pos)     # consumer name
            pos += 8 if kind != _STREAM_3 else 16       # seen time (, active time)
            owned, pos = _plain_length(buf, pos)
            pos += 16 * owned           # raw stream IDs of its PEL
    return pos


def _value(kind: int, buf: memoryview, pos: int) -> int:
    """rdbLoadObject, skipped: the position after a value of the given type."""
    if kind == 0 or kind in _BLOB_TYPES:
        return _string(buf, pos)
    if kind in (_LIST, _SET, _QUICKLIST):
        count, pos = _plain_length(buf, pos)
        for _ in range(count):
            pos = _string(buf, pos)
        return pos
    if kind == _HASH:
        count, pos = _plain_length(buf, pos)
        for _ in range(2 * count):
            pos = _string(buf, pos)
        return pos
    if kind == _ZSET_2:
        count, pos = _plain_length(buf, pos)
        for _ in range(count):
            pos = _string(buf, pos) + 8                 # member, binary double score
        return pos
    if kind == _ZSET:
        count, pos = _plain_length(buf, pos)
        for _ in range(count):
            pos = _string(buf, pos)
            size = buf[pos]                             # rdbLoadDoubleValue: 253..255 alone
            pos += 1 if size >= 253 else 1 + size
        return pos
    if kind == _QUICKLIST_2:
        count, pos = _plain_length(buf, pos)
        for _ in range(count):
            container, nxt = _plain_length(buf, pos)
            if container not in (1, 2):                 # QUICKLIST_NODE_CONTAINER_PLAIN/PACKED
                raise _Bad(f"a quicklist node container {container}", pos)
            pos = _string(buf, nxt)
        return pos
    if kind in (_STREAM, _STREAM_2, _STREAM_3):
        return _stream(kind, buf, pos)
    if kind == _MODULE_2:
        _, pos = _plain_length(buf, pos)                # module id
        return _module_value(buf, pos)
    if kind in (_HASH_METADATA, _HASH_METADATA_PRE_GA):
        if kind == _HASH_METADATA:
            pos += 8                                    # minExpire (ms)
        count, pos = _plain_length(buf, pos)
        for _ in range(count):
            _, pos = _plain_length(buf, pos)            # field TTL
            pos = _string(buf, _string(buf, pos))       # field, value
        return pos
    if kind == _HASH_LISTPACK_EX:
        return _string(buf, pos + 8)                    # minExpire (ms), listpack
    if kind == _MODULE_PRE_GA:
        raise _Bad("a value in the pre-release module format (Redis 4.0 candidates)", pos)
    raise _Bad(f"an unknown record type {kind}", pos)


@dataclass
class _Walk:
    keys: int = 0
    expires: int = 0
    databases: set[int] = field(default_factory=set)
    aux: dict[str, str] = field(default_factory=dict)
    expire_times: array[int] = field(default_factory=lambda: array("q"))


def _walk(buf: memoryview, end: int) -> _Walk:  # noqa: PLR0915
    """Read the records from byte 9 up to the EOF opcode, which must sit at ``end``."""
    out = _Walk()
    pos = 9
    expire = False
    expire_at = 0
    db = 0
    while True:
        if pos > end:
            raise _Bad("a record that runs past the EOF opcode", end)
        start = pos
        kind = buf[pos]
        pos += 1
        if kind == 0:       # a string key and value, the common case, read inline
            size = buf[pos]
            pos = pos + 1 + size if size < 0x40 else _string(buf, pos)
            size = buf[pos]
            pos = pos + 1 + size if size < 0x40 else _string(buf, pos)
        elif kind < _SLOT_INFO:
            if kind not in _VALUE_TYPES:
                raise _Bad(f"an unknown record type {kind}", start)
            pos = _value(kind, buf, _string(buf, pos))
        elif kind == _EOF:
            if start != end:
                raise _Bad(f"the EOF opcode {end - start} bytes before the trailer", start)
            return out
        else:
            if kind == _EXPIRETIME_MS:     # rdbLoadMillisecondTime: int64, little-endian
                expire_at = int.from_bytes(buf[pos:pos + 8], "little", signed=True)
                pos += 8
                expire = True
            elif kind == _EXPIRETIME:      # rdbLoadTime: int32 seconds (before RDB 3)
                expire_at = 1000 * int.from_bytes(buf[pos:pos + 4], "little", signed=True)
                pos += 4
                expire = True
            elif kind == _SELECTDB:
                db, pos = _plain_length(buf, pos)
            elif kind == _RESIZEDB:
                _, pos = _plain_length(buf, pos)
                _, pos = _plain_length(buf, pos)
            elif kind == _AUX:
                name, pos = _string_value(buf, pos)
                text, pos = _string_value(buf, pos)
                if name is not None and text is not None and len(out.aux) < 64:
                    out.aux[name] = text
            elif kind == _FREQ:
                pos += 1
            elif kind == _IDLE:
                _, pos = _plain_length(buf, pos)
            elif kind == _SLOT_INFO:
                for _ in range(3):                      # slot id, slot size, expires size
                    _, pos = _plain_length(buf, pos)
            elif kind == _FUNCTION2:
                pos = _string(buf, pos)
            elif kind == _MODULE_AUX:
                _, pos = _plain_length(buf, pos)        # module id
                when_opcode, pos = _plain_length(buf, pos)
                if when_opcode != 2:                    # RDB_MODULE_OPCODE_UINT
                    raise _Bad(f"a module AUX record with when-opcode {when_opcode}", start)
                _, pos = _plain_length(buf, pos)
                pos = _module_value(buf, pos)
            elif kind == _FUNCTION_PRE_GA:
                raise _Bad("a function in the pre-release format (Redis 7.0 candidates)", start)
            else:
                raise _Bad(f"an unknown opcode {kind}", start)
            continue
        out.keys += 1
        out.databases.add(db)
        if expire:
            out.expires += 1
            out.expire_times.append(expire_at)
            expire = False


class _Refused(Exception):
    """A refusal inside ``_check``, turned into its message before the mapping is closed."""


def _header(head: bytes, name: str) -> int:
    magic, digits = head[:5], head[5:9]
    if magic != b"REDIS" or len(digits) != 4 or not digits.isdigit():
        raise _Refused(f"{name} is not an RDB file: it starts with {head[:9]!r}, not REDIS and "
                       "a four-digit format version")
    version = int(digits)
    if not 1 <= version <= RDB_VERSION:
        raise _Refused(f"{name} is an RDB of format version {version}, which this project does "
                       f"not know (it reads versions 1 to {RDB_VERSION}, written by Redis up to "
                       "7.4)")
    if version < FIRST_CHECKSUMMED_VERSION:
        raise _Refused(f"{name} is an RDB of format version {version}, which carries no "
                       "checksum (Redis before 2.6), so its contents cannot be verified")
    return version


def _check(data: bytes | bytearray | memoryview | mmap.mmap, name: str) -> RdbReport | str:
    """The report, or the sentence that refuses the file. No exception leaves this function
    holding a view of ``data``, so a mapping of the file can be closed right after it."""
    view = memoryview(data).cast("B")
    size = len(view)
    try:
        version = _header(bytes(view[:9]), name)
        if size < 9 + 1 + 8:
            raise _Refused(f"{name} is truncated: {size} bytes cannot hold an RDB header, the "
                           "EOF opcode and the checksum")
        eof = size - 9
        if view[eof] != _EOF:
            raise _Refused(f"{name} is truncated or has bytes after its end: byte {eof} is "
                           f"{view[eof]:#04x}, not the EOF opcode 0xff before the 8-byte "
                           "checksum")
        stored = int.from_bytes(view[size - 8:], "little")
        if stored == 0:
            raise _Refused(f"{name} was saved with RDB checksums disabled (rdbchecksum no), so "
                           "its contents cannot be verified")
        computed = 0
        for start in range(0, size - 8, _CHUNK):
            computed = crc64(view[start:min(start + _CHUNK, size - 8)], computed)
        if computed != stored:
            raise _Refused(f"{name} is corrupt: the CRC64 of its {size - 8} bytes is "
                           f"{computed:016x}, but its trailer records {stored:016x}")
        try:
            walked = _walk(view[:eof + 1], eof)
        except _Bad as bad:
            raise _Refused(f"{name} is corrupt although its CRC64 matches: {bad.what} at byte "
                           f"{bad.offset}") from None
        except IndexError:
            raise _Refused(f"{name} is corrupt although its CRC64 matches: a record that runs "
                           "past the EOF opcode") from None
    except _Refused as refused:
        return str(refused)
    return RdbReport(version=version, size=size, checksum=stored, keys=walked.keys,
                     expires=walked.expires, databases=tuple(sorted(walked.databases)),
                     aux=walked.aux, expire_times=walked.expire_times)


def check_rdb_bytes(data: bytes | bytearray | memoryview, name: str) -> RdbReport:
    """Check an RDB held in memory; refuse it in one sentence (RdbError)."""
    outcome = _check(data, name)
    if isinstance(outcome, str):
        raise RdbError(outcome)
    return outcome


def check_rdb_file(path: Path, name: str = "") -> RdbReport:
    """Check the RDB file at path (mapped, not read into memory); RdbError in one sentence."""
    label = name or str(path)
    try:
        with path.open("rb") as handle:
            if path.stat().st_size == 0:
                raise RdbError(f"{label} is empty: it holds no RDB header")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                outcome = _check(mapped, label)
    except OSError as exc:
        raise RdbError(f"cannot read {label}: {exc.strerror}") from None
    if isinstance(outcome, str):
        raise RdbError(outcome)
    return outcome
