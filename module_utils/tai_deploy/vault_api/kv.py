"""KV version 2 secrets, compared and written without a value ever reaching a diff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .change import CREATED, UNCHANGED, UPDATED, Change
from .client import VaultClient, VaultError, response_data


def ensure_kv_secret(client: VaultClient, mount: str, path: str, data: Mapping[str, Any], *,
                     check: bool = False) -> Change:
    """The latest version of <mount>/<path> holds exactly data; written only when it differs.

    ``before``/``after`` carry the key names only (with a marker of which changed), never a
    value: this is what a diff may show of a secret.
    """
    clean = path.strip().strip("/")
    if not clean or ".." in clean.split("/"):
        raise VaultError(f"secret path {path!r} is not valid")
    wanted = {str(k): str(v) for k, v in data.items()}
    current_body = client.request("GET", f"{mount}/data/{clean}", missing_ok=True)
    current_data = (response_data(current_body).get("data") if current_body else None)
    name = f"{mount}/{clean}"
    if not isinstance(current_data, Mapping):
        if not check:
            client.request("POST", f"{mount}/data/{clean}", {"data": wanted})
        return Change("secret", name, CREATED, None, {"keys": sorted(wanted)})
    current = {str(k): str(v) for k, v in current_data.items()}
    if current == wanted:
        return Change("secret", name, UNCHANGED, {"keys": sorted(current)},
                      {"keys": sorted(wanted)})
    changed_keys = sorted(k for k in set(current) | set(wanted)
                          if current.get(k) != wanted.get(k))
    if not check:
        client.request("POST", f"{mount}/data/{clean}", {"data": wanted})
    return Change("secret", name, UPDATED, {"keys": sorted(current)},
                  {"keys": sorted(wanted), "changed": changed_keys})
