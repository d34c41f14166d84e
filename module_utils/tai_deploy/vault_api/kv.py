"""KV version 2 secrets, compared (or generated) and written without a value reaching a diff."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .change import CREATED, UNCHANGED, UPDATED, Change
from .client import VaultClient, VaultError, refusal, response_data


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


# --- generated secrets ------------------------------------------------------------------------

# Letters and digits: within every charset a consumer accepts (the chart's Redis passwords take
# letters, digits and ._~+/=- only) and needing no quoting anywhere. 40 of them: 238 bits.
GENERATED_ALPHABET = string.ascii_letters + string.digits
GENERATED_LENGTH = 40
GENERATED_MIN_LENGTH, GENERATED_MAX_LENGTH = 24, 256


def generate_value(length: int = GENERATED_LENGTH) -> str:
    """A random value from the operating system's CSPRNG (secrets), GENERATED_ALPHABET only."""
    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(length))


def ensure_generated_secret(client: VaultClient, mount: str, path: str, key: str, length: int,
                            *, check: bool = False,
                            on_secret: Callable[[Sequence[str]], None] | None = None
                            ) -> Change:
    """<mount>/<path> holds a non-empty ``key``: left untouched when it does; otherwise a new
    random value is written (beside the secret's other keys, if any), with check-and-set on the
    version read, so a value written meanwhile by somebody else is never overwritten.

    The value is never returned: ``before``/``after`` carry key names only (and which key was
    generated); ``on_secret`` hears it (the module masks it in every output).
    """
    clean = path.strip().strip("/")
    if not clean or ".." in clean.split("/"):
        raise VaultError(f"secret path {path!r} is not valid")
    name = f"{mount}/{clean}"
    status, body = client.call("GET", f"{mount}/data/{clean}")
    if status not in (200, 404):
        raise VaultError(refusal(client.addr, "GET", f"{mount}/data/{clean}", status, body))
    # A 404 of KV v2 still carries the metadata of a deleted latest version (its number is the
    # check-and-set value a write needs); a path never written has none (version 0).
    inner = response_data(body) if status == 200 or isinstance(body.get("data"), Mapping) else {}
    found = inner.get("data")
    current = {str(k): v for k, v in found.items()} if isinstance(found, Mapping) else None
    meta = inner.get("metadata")
    version = int(meta.get("version") or 0) if isinstance(meta, Mapping) else 0
    keys = sorted(current or {})
    if current is not None and str(current.get(key) or ""):
        return Change("secret", name, UNCHANGED, {"keys": keys}, {"keys": keys})
    value = generate_value(length)
    if on_secret is not None:
        on_secret([value])
    after = {"keys": sorted({*keys, key}), "generated": [key]}
    if not check:
        code, answer = client.call("POST", f"{mount}/data/{clean}",
                                   {"options": {"cas": version},
                                    "data": {**(current or {}), key: value}})
        if code >= 400:
            raise VaultError(refusal(client.addr, "POST", f"{mount}/data/{clean}", code, answer)
                             + f"; {name} was not written (if another run wrote it meanwhile, "
                             "run again: an existing value is kept)")
    return Change("secret", name, CREATED if current is None else UPDATED,
                  None if current is None else {"keys": keys}, after)
