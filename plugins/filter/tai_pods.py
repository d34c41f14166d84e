# Copyright: tai-deploy contributors
"""Filter tai_pod_wait: the state of a wait for pods, which sees a crash loop.

``pods | tai_pod_wait(3)`` returns ``{done, failed, message, stop}`` (module_utils/tai_deploy/
pod_status.py): a k8s_info ``until`` stops on ``stop`` (done or failed), and the next task fails
with ``message``, the container's last error in one sentence, instead of waiting for "Running".
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.pod_status import pod_wait


def tai_pod_wait(pods: Iterable[Mapping[str, Any]], wanted: Any,
                 state: str = "Running") -> dict[str, Any]:
    result = pod_wait(pods, int(wanted), state)
    result["stop"] = result["done"] or result["failed"]  # what an `until` waits for
    return result


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_pod_wait": tai_pod_wait}
