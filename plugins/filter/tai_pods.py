# Copyright: tai-deploy contributors
"""Filters of the waits: tai_pod_wait (pods, which sees a crash loop), tai_deployment_wait
(Deployments, which sees pods the API server refuses) and tai_certificate_wait (a cert-manager
Certificate).

``pods | tai_pod_wait(3)`` returns ``{done, failed, message, stop}`` (module_utils/tai_deploy/
pod_status.py): a k8s_info ``until`` stops on ``stop`` (done or failed), and the next task fails
with ``message``, the container's last error in one sentence, instead of waiting for "Running".
``deployments | tai_deployment_wait(1)`` stops on a Deployment whose pods are refused
(ReplicaFailure) or that exceeded its progress deadline; ``certificate | tai_certificate_wait``
returns ``{done, message}``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.pod_status import certificate_wait, deployment_wait, pod_wait


def tai_pod_wait(pods: Iterable[Mapping[str, Any]], wanted: Any,
                 state: str = "Running") -> dict[str, Any]:
    result = pod_wait(pods, int(wanted), state)
    result["stop"] = result["done"] or result["failed"]  # what an `until` waits for
    return result


def tai_deployment_wait(deployments: Iterable[Mapping[str, Any]],
                        wanted: Any = 1) -> dict[str, Any]:
    return deployment_wait(deployments, int(wanted))


def tai_certificate_wait(certificates: Any) -> dict[str, Any]:
    """A Certificate, or k8s_info's list of resources (its first)."""
    if isinstance(certificates, list):
        certificates = certificates[0] if certificates else None
    return certificate_wait(certificates)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_pod_wait": tai_pod_wait, "tai_deployment_wait": tai_deployment_wait,
                "tai_certificate_wait": tai_certificate_wait}
