# Copyright: tai-deploy contributors
"""The record the swap keeps on the Service (annotation bluegreen.tai-deploy.io/state): which
slot serves which image since when, and when the old slot may be scaled down."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .inputs import ANNOTATION, SwapError


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _json_annotation(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Record:
    """The last switch of a Service: written with the selector, read by every later step."""

    phase: str
    active: str
    active_image: str
    previous: str
    previous_image: str
    swapped_at: float
    scale_down_at: float
    scaled_down: bool = False

    def to_annotation(self) -> str:
        return json.dumps({
            "phase": self.phase, "active": self.active, "activeImage": self.active_image,
            "previous": self.previous, "previousImage": self.previous_image,
            "swappedAt": _iso(self.swapped_at), "scaleDownAt": _iso(self.scale_down_at),
            "scaledDown": self.scaled_down,
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str, where: str) -> Record:
        try:
            d = json.loads(text)
            return cls(str(d["phase"]), str(d["active"]), str(d["activeImage"]),
                       str(d["previous"]), str(d["previousImage"]), _epoch(d["swappedAt"]),
                       _epoch(d["scaleDownAt"]), bool(d.get("scaledDown", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SwapError(f"{where}: annotation {ANNOTATION} is not a blue-green record "
                            f"({exc}); fix or remove it by hand") from exc

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "active": self.active, "active_image": self.active_image,
                "previous": self.previous, "previous_image": self.previous_image,
                "swapped_at": _iso(self.swapped_at), "scale_down_at": _iso(self.scale_down_at),
                "scaled_down": self.scaled_down}
