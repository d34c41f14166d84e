#!/usr/bin/env python3
"""Speed of the project's RDB check (tai_deploy.rdb_check) on a real dump of N keys.

A standalone redis-server (Debian's) gets N string keys (``key:<i>``, 16-byte values, as
backup_bench.py writes them) through ``redis-cli --pipe`` and SAVEs; then the CRC64 alone, the
whole check (header, CRC64, record walk) and, for comparison, Debian's redis-check-rdb (a full
load, in C) are timed on that file, best of ``--repeat`` runs; the CRC64 both ways: folded
(``crc64``, what the check uses) and by slicing-by-8 tables (``crc64_table``, one run).

    python benchmarks/rdb_check_bench.py [--keys 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "module_utils"), str(REPO / "tests")]

from helpers.redis_nodes import REDIS_CLI, cli, redis_nodes  # noqa: E402
from tai_deploy.rdb_check import check_rdb_file, crc64, crc64_table  # noqa: E402
from tai_deploy.redis_snapshot import check_rdb  # noqa: E402


def best(repeat: int, func: Callable[[], object]) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - start)
    return min(times), value


def resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_nodes(Path(tmp)) as pool:
        (node,) = pool.start(1, extra_args=("--cluster-enabled", "no"))
        script = b"".join(resp("SET", f"key:{i}", "0123456789abcdef") for i in range(args.keys))
        subprocess.run([REDIS_CLI, "-p", str(node.port), "--pipe"], input=script, check=True,
                       capture_output=True, timeout=600)
        assert cli(node.port, "SAVE", timeout=600).strip() == "OK"
        rdb = node.workdir / "dump.rdb"
        data = rdb.read_bytes()
        mib = len(data) / 2**20
        crc_s, folded = best(args.repeat, lambda: crc64(memoryview(data)[:-8]))
        table_s, tabled = best(1, lambda: crc64_table(memoryview(data)[:-8]))
        assert folded == tabled == int.from_bytes(data[-8:], "little")
        check_s, report = best(args.repeat, lambda: check_rdb_file(rdb))
        tool_s, tool_keys = best(args.repeat, lambda: check_rdb(rdb, "bench"))
    keys = report.keys  # type: ignore[attr-defined]
    assert keys == tool_keys == args.keys, (keys, tool_keys)
    print(f"RDB check on this machine: {args.keys} keys, {mib:.1f} MiB (best of {args.repeat})")
    print(f"  {'CRC64 folded (crc64)':<44} {crc_s:7.2f} s {mib / crc_s:7.1f} MiB/s")
    print(f"  {'CRC64 by slicing-by-8 tables (crc64_table)':<44} {table_s:7.2f} s "
          f"{mib / table_s:7.1f} MiB/s")
    print(f"  {'rdb_check: header + CRC64 + record walk':<44} {check_s:7.2f} s "
          f"{mib / check_s:7.1f} MiB/s")
    print(f"  {'redis-check-rdb (Debian 7.0, full load in C)':<44} {tool_s:7.2f} s "
          f"{mib / tool_s:7.1f} MiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
