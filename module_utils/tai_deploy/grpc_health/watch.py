# Copyright: tai-deploy contributors
"""Watch mode: follow the server's stream of status changes (grpc.health.v1.Health/Watch);
stable means SERVING with no change for (consecutive_successes - 1) * interval seconds."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .params import CONNECT_FAILED, DEADLINE_EXCEEDED, RPC_FAILED, WaitPolicy
from .probe import _connect, _failed, _rpc_error_observation, _rpc_metadata, _status_observation
from .report import _TargetRun


@dataclass
class _WatchStream:
    """One open Watch stream: a reader thread turns responses into queue events."""

    started: float
    opened: float
    connect_ms: float
    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    serving_since: float | None = None
    got_first: bool = False

    def read(self, call: Any) -> None:
        try:
            for response in call:
                self.events.put(("status", response.status))
            self.events.put(("end", None))
        except grpc.RpcError as exc:
            self.events.put(("error", exc))

    def wait_until(self, policy: WaitPolicy, deadline: float, rpc_timeout: float) -> float:
        if self.serving_since is not None:
            return min(self.serving_since + policy.stability_window, deadline)
        return deadline if self.got_first else self.opened + rpc_timeout


def _watch_quiet(run: _TargetRun, policy: WaitPolicy, stream: _WatchStream) -> bool:
    """Nothing arrived before the stream's wait time; True when the outcome is final."""
    if stream.serving_since is not None:
        held = time.monotonic() - stream.serving_since
        if held >= policy.stability_window - 1e-3:
            run.succeed(f" (unchanged for {policy.stability_window:g}s)"
                        if policy.stability_window else "")
        else:
            run.unstable(policy, f"unchanged for only {held:.2f}s of the required "
                         f"{policy.stability_window:g}s")
        return True
    if not stream.got_first:
        run.record_failure(_failed(
            stream.started, DEADLINE_EXCEEDED,
            f"no Watch response within rpc_timeout {run.target.rpc_timeout:g}s",
            connect_ms=stream.connect_ms))
        return False
    return True  # the deadline passed while not serving; the last status stands


def _watch_event(run: _TargetRun, policy: WaitPolicy, deadline: float, stream: _WatchStream,
                 event: tuple[str, Any]) -> bool | None:
    """Handle one stream event; True/False when the stream is done (final or not)."""
    kind, payload = event
    now = time.monotonic()
    latency = None if stream.got_first else (now - stream.opened) * 1000
    if kind == "status":
        stream.got_first = True
        obs = _status_observation(stream.started, payload, run.target.service, latency,
                                  stream.connect_ms)
        if obs.error is None:
            run.record_success(obs)
            stream.serving_since = now
            if policy.stability_window == 0:
                run.succeed()
                return True
            return None
        stream.serving_since = None
        run.record_failure(obs)
        return True if now >= deadline else None
    if kind == "error":
        obs = _rpc_error_observation(stream.started, payload, run.target, "Watch",
                                     latency_ms=latency, connect_ms=stream.connect_ms)
    else:
        obs = _failed(stream.started, RPC_FAILED, "the server ended the Watch stream")
    run.record_failure(obs)
    return False


def _watch_stream(run: _TargetRun, policy: WaitPolicy, deadline: float) -> bool:
    """Connect and follow one Watch stream; True when the target's outcome is final."""
    target = run.target
    started = time.monotonic()
    channel, failure = _connect(target, run.material, health_pb2_grpc.HealthStub, started)
    if failure is not None or channel is None:
        run.record_failure(failure or _failed(started, CONNECT_FAILED, "no channel"))
        return False
    opened = time.monotonic()
    stream = _WatchStream(started, opened, (opened - started) * 1000)
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=target.service),
        timeout=max(deadline - opened, 0.0) + target.rpc_timeout + policy.stability_window,
        metadata=_rpc_metadata(target),
        wait_for_ready=False,
    )
    threading.Thread(target=stream.read, args=(call,), name="grpc-health-watch",
                     daemon=True).start()
    try:
        while True:  # a stream reader (events as they come), not a poll
            wait_until = stream.wait_until(policy, deadline, target.rpc_timeout)
            try:
                event = stream.events.get(timeout=max(wait_until - time.monotonic(), 0.0))
            except queue.Empty:
                return _watch_quiet(run, policy, stream)
            done = _watch_event(run, policy, deadline, stream, event)
            if done is not None:
                return done
    finally:
        call.cancel()
        channel.close()


def _watch_target(run: _TargetRun, policy: WaitPolicy, deadline: float) -> None:
    # Not poll(): the pause is the policy's delay for the target's failures so far, and the
    # deadline (a monotonic time) is the one shared with every target of the report.
    while True:
        try:
            if _watch_stream(run, policy, deadline):
                return
        except Exception as exc:  # the report must still come back
            run.record_failure(_failed(time.monotonic(), RPC_FAILED,
                                       f"unexpected error: {type(exc).__name__}: {exc}"))
        now = time.monotonic()
        if now >= deadline:
            return
        time.sleep(min(policy.retry_delay(run.failures), deadline - now))
