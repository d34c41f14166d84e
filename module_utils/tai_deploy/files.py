"""Atomic file writes shared by the module cores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def make_dirs(folder: Path, mode: int) -> None:
    """Create folder and every missing parent with exactly ``mode``, whatever the umask
    (``Path.mkdir(parents=True)`` gives the parents the default mode, and the umask masks all)."""
    missing: list[Path] = []
    here = folder
    while not here.is_dir():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            if not path.is_dir():
                raise
        path.chmod(mode)


def atomic_write(target: Path, data: bytes | str, *, mode: int = 0o644, durable: bool = False,
                 dir_mode: int = 0o755) -> None:
    """Replace target with data: readers see the old file or the new one, never a mix.

    The temporary file gets ``mode`` before any byte is written, so a secret is never
    readable by others even for a moment. ``durable`` also fsyncs the file and its folder,
    for files whose loss cannot be repaired (Vault's shards).
    """
    make_dirs(target.parent, dir_mode)
    blob = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        tmp_path.replace(target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
