# Copyright: tai-deploy contributors
"""Waiting: check mode schedules the attempts of every target on a bounded thread pool
(waiting targets hold no worker), retried with backoff until stable or the deadline; watch
mode follows one Watch stream per target (watch.py)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from concurrent import futures

from .params import ConfigError, Target, WaitPolicy
from .probe import Observation, _load_material, check_once
from .report import HealthReport, _TargetRun, mask
from .watch import _watch_target


def _run_checks(runs: list[_TargetRun], policy: WaitPolicy, deadline: float,
                max_workers: int) -> None:
    """Schedule attempts on a bounded pool; waiting targets do not hold a worker."""
    start = time.monotonic()
    due: list[tuple[float, int]] = [(start, i) for i in range(len(runs))]
    running: dict[futures.Future[Observation], int] = {}
    with futures.ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(runs))),
                                    thread_name_prefix="grpc-health") as pool:
        # Not a poll: a scheduler of many targets' attempts, each due at its own time.
        while due or running:
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, i = heapq.heappop(due)
                running[pool.submit(check_once, runs[i].target, runs[i].material)] = i
            wait_for = max(due[0][0] - now, 0.0) if due else None
            if not running:
                time.sleep(wait_for or 0.0)
                continue
            finished, _ = futures.wait(running, timeout=wait_for,
                                       return_when=futures.FIRST_COMPLETED)
            for fut in finished:
                i = running.pop(fut)
                nxt = runs[i].next_check(fut.result(), time.monotonic(), policy, deadline)
                if nxt is not None:
                    heapq.heappush(due, (nxt, i))



def run_health_checks(
    targets: Sequence[Target], policy: WaitPolicy | None = None, *, max_workers: int = 64
) -> HealthReport:
    """Check every target concurrently and wait according to ``policy``.

    Raises ConfigError when a target or the policy is invalid (nothing is contacted then).
    Check mode uses a pool of at most ``max_workers`` threads (only attempts hold a worker);
    watch mode holds one stream, and so one thread, per target.
    """
    policy = policy or WaitPolicy()
    problems = policy.problems()
    for index, target in enumerate(targets):
        problems += [f"targets[{index}]: {p}" for p in target.problems()]
    if problems:
        raise ConfigError(problems)
    materials = _load_material(targets)
    start = time.monotonic()
    deadline = start + policy.timeout
    runs = [_TargetRun(t, m) for t, m in zip(targets, materials, strict=True)]
    if runs and policy.mode == "watch":
        with futures.ThreadPoolExecutor(max_workers=len(runs),
                                        thread_name_prefix="grpc-health-watch") as pool:
            list(pool.map(lambda run: _watch_target(run, policy, deadline), runs))
    elif runs:
        _run_checks(runs, policy, deadline, max_workers)
    for run in runs:
        run.result.message = mask(run.result.message, run.target.sensitive_values())
    return HealthReport([run.result for run in runs], (time.monotonic() - start) * 1000)
