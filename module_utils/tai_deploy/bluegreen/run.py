# Copyright: tai-deploy contributors
"""Entry point of the blue_green_swap module: one operation over every target."""

from __future__ import annotations

from collections.abc import Sequence

from ..k8s_api import ApiError, KubeError
from .inputs import SwapError, Target
from .swap import BlueGreen
from .view import Outcome

OPERATIONS = ("prepared", "promoted", "rolled_back", "finalized", "status")


def run(bg: BlueGreen, state: str, targets: Sequence[Target], *, wait: bool = True,
        wait_scale_down: bool = False, include_finalized: bool = True) -> list[Outcome]:
    """Run one operation over ``targets``; raises SwapError on any failure.

    ``bg.outcomes`` keeps what was done so far, also when it raises.
    """
    problems = [p for t in targets
                for p in t.problems(need_image=state in ("prepared", "promoted"))]
    names = [t.service for t in targets]
    if not targets:
        problems.append("no service given")
    if len(set(names)) != len(names):
        problems.append(f"a service is listed twice: {', '.join(names)}")
    if state not in OPERATIONS:
        problems.append(f"state must be one of {', '.join(OPERATIONS)}, got {state!r}")
    if problems:
        raise SwapError("; ".join(problems))
    try:
        if state == "prepared":
            return bg.prepare(targets, wait=wait)
        if state == "promoted":
            outcomes = bg.promote(targets)
            return bg.finalize(targets, wait=True) if wait_scale_down else outcomes
        if state == "rolled_back":
            outcomes = bg.rollback(targets, include_finalized=include_finalized)
            return bg.finalize(targets, wait=True) if wait_scale_down else outcomes
        if state == "finalized":
            return bg.finalize(targets, wait=True)
        return bg.status(targets)
    except ApiError as exc:
        raise SwapError(f"the API server refused a request ({exc}); nothing after it was "
                        "done, run again to resume") from exc
    except KubeError as exc:
        raise SwapError(f"{exc}; nothing after it was done, run again to resume") from exc
