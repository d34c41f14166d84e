"""Render the GCP side of the plan (gke and dns roles) into a temporary build root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.ansible_run import PlaybookRun, run_playbook

REGIONS = ("us-central1", "europe-west1", "asia-southeast1")


def render(build_root: Path, *playbooks: str, limit: str = "all",
           extra: tuple[str, ...] = ()) -> PlaybookRun:
    """Run the phase playbooks in plan mode with build/ redirected to ``build_root``."""
    run = run_playbook(*playbooks, "-l", limit, "-e", f"tai_build_root={build_root}", *extra)
    if run.returncode != 0:
        raise AssertionError(f"plan failed:\n{run.output[-4000:]}")
    return run


def load(build_root: Path, region: str, role: str, name: str) -> Any:
    return json.loads((build_root / region / role / name).read_text())
