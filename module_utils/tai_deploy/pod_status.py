"""Why pods cannot become ready, read from their status, in one sentence.

A wait for "every pod Running" passes for a crash-looping container: between two restarts the
kubelet reports the pod's phase as Running. These functions read what the kubelet reports per
container (core/v1 ContainerStatus: ``state.waiting.reason`` and ``lastState.terminated``) so
that a wait stops at once with the container's own last error instead of timing out, or passing,
and the error surfacing later somewhere else (a port-forward that fails).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Waiting reasons of the kubelet that do not resolve by waiting: a crash loop, an image that
# cannot be pulled, a container that cannot be created from its spec.
STUCK_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull",
    "InvalidImageName", "CreateContainerConfigError", "CreateContainerError",
    "RunContainerError", "PreStartHookError", "PostStartHookError",
})


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


def container_problem(status: Mapping[str, Any], init: bool = False) -> str | None:
    """The reason a container cannot run, or None while it runs or is still being created."""
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    if reason not in STUCK_REASONS:
        return None
    what = f"{'init container' if init else 'container'} {status.get('name', '?')}"
    restarts = int(status.get("restartCount") or 0)
    head = f"{what} is in {reason}"
    if restarts:
        head += f" (restarted {restarts} time{'s' if restarts != 1 else ''})"
    last = (status.get("lastState") or {}).get("terminated") or {}
    if last:
        ended = str(last.get("reason") or "an error")
        if last.get("exitCode") is not None:
            ended += f" (exit code {last['exitCode']})"
        detail = str(last.get("message") or "").strip()
        return head + f"; its last run ended with {ended}" + (f": {detail}" if detail else "")
    message = str(waiting.get("message") or "").strip()
    return head + (f": {message}" if message else "")


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """One sentence naming the pod and why it cannot become ready, or None."""
    meta = pod.get("metadata") or {}
    ref = f"Pod {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        reason = status.get("reason") or "no reason given"
        message = str(status.get("message") or "").strip()
        return _sentence(f"{ref} failed ({reason})" + (f": {message}" if message else ""))
    for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
        for container in status.get(key) or []:
            problem = container_problem(container, init)
            if problem:
                return _sentence(f"{ref}: {problem}")
    return None


def _reached(pod: Mapping[str, Any], state: str) -> bool:
    status = pod.get("status") or {}
    if state == "Ready":  # the pod's Ready condition, not a phase
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    return bool(status.get("phase") == state)


def pod_wait(pods: Iterable[Mapping[str, Any]], wanted: int,
             state: str = "Running") -> dict[str, Any]:
    """State of a wait for ``wanted`` pods in ``state`` (a phase such as Running, or Ready for
    the Ready condition): done, failed (with the first problem's sentence), or neither (keep
    waiting). A stuck container fails the wait even when the pod's phase says Running."""
    pods = list(pods)
    problems = [p for p in (pod_problem(pod) for pod in pods) if p]
    if problems:
        return {"done": False, "failed": True, "message": problems[0]}
    reached = [p for p in pods if _reached(p, state)]
    return {"done": len(reached) >= int(wanted), "failed": False, "message": ""}


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def deployment_problem(deployment: Mapping[str, Any]) -> str | None:
    """One sentence naming a Deployment that cannot get its pods, or None.

    The Deployment controller copies its ReplicaSet's ReplicaFailure condition (reason
    FailedCreate: the API server refused the pods, for instance a mutating webhook with
    ``failurePolicy: Fail`` that cannot be called) and reports Progressing=False with reason
    ProgressDeadlineExceeded after ``spec.progressDeadlineSeconds`` (apps/v1
    DeploymentCondition). Neither resolves by waiting longer.
    """
    meta = deployment.get("metadata") or {}
    ref = f"Deployment {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    conds = _conditions(deployment)
    failure = conds.get("ReplicaFailure") or {}
    if failure.get("status") == "True":
        return _sentence(f"{ref} cannot create its pods ({failure.get('reason', 'no reason')}): "
                         f"{failure.get('message', '')}")
    progressing = conds.get("Progressing") or {}
    if progressing.get("status") == "False" and progressing.get(
            "reason") == "ProgressDeadlineExceeded":
        return _sentence(f"{ref} stopped progressing: {progressing.get('message', '')}")
    return None


def deployment_wait(deployments: Iterable[Mapping[str, Any]], wanted: int = 1) -> dict[str, Any]:
    """State of a wait for ``wanted`` Deployments to be Available: done, failed (with the first
    problem's sentence), or neither; ``stop`` is what an ``until`` waits for."""
    deployments = list(deployments)
    problems = [p for p in (deployment_problem(d) for d in deployments) if p]
    available = [d for d in deployments
                 if (_conditions(d).get("Available") or {}).get("status") == "True"]
    done = len(available) >= wanted
    failed = bool(problems) and not done
    return {"done": done, "failed": failed, "stop": done or failed,
            "message": problems[0] if failed else ""}


def certificate_wait(certificate: Mapping[str, Any] | None) -> dict[str, Any]:
    """State of a wait for a cert-manager Certificate: done once its Ready condition is True
    for its current generation (cert-manager.io/v1 CertificateStatus); ``message`` says why it
    is not, in cert-manager's words (an ACME order or challenge that is pending, an issuer
    that does not exist)."""
    if not certificate:
        return {"done": False, "message": "it does not exist"}
    ready = _conditions(certificate).get("Ready") or {}
    generation = (certificate.get("metadata") or {}).get("generation")
    observed = ready.get("observedGeneration", generation)
    if ready.get("status") == "True" and observed == generation:
        return {"done": True, "message": ""}
    if not ready:
        return {"done": False, "message": "cert-manager has not reported on it (no Ready "
                                          "condition: is the cert-manager controller running?)"}
    return {"done": False, "message": f"Ready is {ready.get('status')} "
                                      f"({ready.get('reason', 'no reason')}: "
                                      f"{str(ready.get('message', '')).rstrip('.')})"}
