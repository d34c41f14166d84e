"""What an ensure function found and did, and the mount-path rules they share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .client import VaultError

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class Change:
    """What an ensure function found and did. ``before``/``after`` never hold secrets."""

    kind: str
    name: str
    action: str
    before: Any = None
    after: Any = None

    @property
    def changed(self) -> bool:
        return self.action != UNCHANGED



def mount_key(path: str) -> str:
    clean = path.strip().strip("/")
    if not clean or " " in clean:
        raise VaultError(f"mount path {path!r} is not valid")
    return clean + "/"


def str_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in (options or {}).items()}

