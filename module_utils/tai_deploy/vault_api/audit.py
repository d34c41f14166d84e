"""Audit devices: checked by the controller identity, enabled with a root token only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .change import CREATED, UNCHANGED, Change, mount_key, str_options
from .client import VaultClient, VaultError, refusal, response_data


def audit_present(client: VaultClient, item: Mapping[str, Any]) -> Change:
    key = mount_key(item["path"])
    devices = response_data(client.request("GET", "sys/audit"))
    if key not in devices:
        raise VaultError(f"audit device {key} is not enabled on {client.addr}; it is enabled "
                         "at init with the initial root token (or declared in the server "
                         "configuration), and the controller identity may not enable one: "
                         "see docs/runbooks/vault.md (break-glass)")
    found = devices[key]
    return Change("audit", key, UNCHANGED, {"type": found.get("type")},
                  {"type": item["type"]})



def ensure_audit_device(client: VaultClient, path: str, device_type: str,
                        options: Mapping[str, Any], *, check: bool = False) -> Change:
    """An audit device at path with these options, enabled through the API when it is absent.

    OpenBao (2.2 and later) refuses audit devices through the API and reads them from the
    server configuration's ``audit`` stanza (the role renders it); HashiCorp Vault ignores that
    stanza (an unknown-field warning) and takes them through ``PUT sys/audit/<path>``. Either
    way, what is found at path is compared with what is wanted; a different device there is
    refused (replacing it would drop the audit trail).
    """
    key = mount_key(path)
    devices = response_data(client.request("GET", "sys/audit"))
    current = devices.get(key)
    wanted = {"type": device_type, "options": str_options(options)}
    if current is not None:
        before = {"type": current.get("type"),
                  "options": {k: str_options(current.get("options")).get(k)
                              for k in wanted["options"]}}
        if before != wanted:
            raise VaultError(f"audit device {key} on {client.addr} is {before}, not {wanted}; "
                             "disable it deliberately before the role enables its own")
        return Change("audit", key, UNCHANGED, before, wanted)
    if not check:
        code, data = client.call("PUT", f"sys/audit/{key[:-1]}", wanted)
        if code >= 400:
            why = refusal(client.addr, "PUT", f"sys/audit/{key[:-1]}", code, data)
            raise VaultError(f"{why}; declare the device in the server configuration (audit "
                             "stanza) where the API may not enable one")
    return Change("audit", key, CREATED, None, wanted)

