"""A run's plan becomes visible all at once, or not at all.

site.yml writes every role's artifacts into a staging folder (a copy of the region's current
plan) and its last play swaps it into place. Kept apart from the bundle code so that the
validation module, which prepares the folder, does not import the manifest validators.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


class StagingError(ValueError):
    """A filesystem problem, phrased for the person running the play."""

# The project-wide plan (build/_project/), staged and promoted like a region's.
PROJECT_PLAN = "_project"
_RENAME_EXCHANGE = 2  # renameat2(2) flag (Linux 3.15+): swap two paths in one step


def staging_dir(root: str | Path, region: str) -> Path:
    """Next to the build root, not inside it: a run that fails leaves build/ exactly as it
    was, and the same filesystem lets the finished plan be renamed into place."""
    root_path = Path(root)
    return root_path.parent / f".{root_path.name}.staging" / region


def _plan_of(region: str) -> str:
    return "the project-wide plan" if region == PROJECT_PLAN else f"the plan of region {region}"


def _fs_error(action: str, path: Path, exc: OSError) -> StagingError:
    reason = exc.strerror or exc.__class__.__name__
    return StagingError(f"Cannot {action} {path}: {reason}; the folder comes from tai_build_root "
                       "(the TAI_BUILD_ROOT environment variable, else the repository's build/).")


def begin_staging(root: str | Path, region: str) -> Path:
    """A fresh staging folder holding a copy of the region's current plan.

    The roles write into it (so a file they do not change stays unchanged and a second run
    reports no change); ``promote_staging`` swaps it with the plan once every role succeeded.
    A refused or failed run leaves build/<region> as it was; its staging folder is replaced
    by the next run.
    """
    import shutil
    final = Path(root) / region
    staging = staging_dir(root, region)
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.parent.mkdir(parents=True, exist_ok=True)
        if final.is_dir():
            shutil.copytree(final, staging, symlinks=True)
        else:
            staging.mkdir()
    except OSError as exc:
        raise _fs_error(f"prepare {_plan_of(region)} in", staging.parent,
                        exc) from exc
    return staging


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically where the kernel can; False when it cannot."""
    import ctypes
    import os
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)


def promote_staging(root: str | Path, region: str) -> Path:
    """Move the region's staging folder into place as build/<region>."""
    import shutil
    final = Path(root) / region
    staging = staging_dir(root, region)
    try:
        if final.is_dir() and _exchange(staging, final):
            shutil.rmtree(staging)
        else:
            old = staging.with_name(f"{region}.old")
            if old.exists():
                shutil.rmtree(old)
            if final.exists():
                final.rename(old)
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(final)
            if old.exists():
                shutil.rmtree(old)
        if staging.parent.is_dir() and not any(staging.parent.iterdir()):
            # Regions are promoted in parallel: another one may remove it, or stage beside it.
            with contextlib.suppress(OSError):
                staging.parent.rmdir()
    except OSError as exc:
        raise _fs_error(f"move {_plan_of(region)} into", final, exc) from exc
    return final
