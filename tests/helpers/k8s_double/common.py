"""What every part of the Kubernetes API TEST DOUBLE uses: its error answer and its timestamps.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). ``_HttpError`` is an error answered as
the API server answers one, a ``Status`` body with its reason, message and code; ``_now_iso``
the timestamps of metadata, events and conditions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


class _HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
