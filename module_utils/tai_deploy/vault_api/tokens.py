"""Tokens: validity, root-token generation (OTP flow), short-lived orphan tokens."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence

from .client import VaultClient, VaultError, refusal


def token_is_valid(client: VaultClient) -> bool:
    """Whether the client's token is accepted (lookup-self); False for revoked or unknown."""
    if not client.has_token:
        return False
    code, data = client.call("GET", "auth/token/lookup-self")
    if code == 200:
        return True
    if code in (400, 401, 403):
        return False
    raise VaultError(refusal(client.addr, "GET", "auth/token/lookup-self", code, data))


def generate_root(client: VaultClient, keys: Sequence[str], threshold: int) -> str:
    """A new root token from a quorum of shards, with the one-time-password (OTP) flow.

    A stale attempt is cancelled first. When a shard is refused the attempt is cancelled, so a
    failure leaves no half-done generation behind.
    """
    code, data = client.call("GET", "sys/generate-root/attempt")
    if code == 405:
        raise VaultError(
            f"Vault at {client.addr} has disabled sys/generate-root (OpenBao 2.5.3 and later "
            "disable it unless the listener sets disable_unauthed_generate_root_endpoints = "
            "false); the role needs it to mint its short-lived token")
    if code != 200:
        raise VaultError(refusal(client.addr, "GET", "sys/generate-root/attempt", code, data))
    if data.get("started"):
        client.request("DELETE", "sys/generate-root/attempt")
    attempt = client.request("PUT", "sys/generate-root/attempt", {}) or {}
    nonce, otp = str(attempt.get("nonce") or ""), str(attempt.get("otp") or "")
    if not nonce or not otp:
        client.request("DELETE", "sys/generate-root/attempt")
        raise VaultError(f"Vault at {client.addr} did not return a nonce and one-time password "
                         "for root-token generation")
    distinct = list(dict.fromkeys(keys))
    encoded = ""
    for key in distinct[:max(threshold, 1)]:
        code, data = client.call("PUT", "sys/generate-root/update", {"key": key, "nonce": nonce})
        if code != 200:
            reason = refusal(client.addr, "PUT", "sys/generate-root/update", code, data)
            _quiet_cancel(client)
            raise VaultError(
                f"the stored shards do not authorise a token on {client.addr} "
                f"({reason.split(': ', 1)[-1]}); the attempt was cancelled and nothing was "
                "changed")
        if data.get("complete"):
            encoded = str(data.get("encoded_token") or data.get("encoded_root_token") or "")
            break
    if not encoded:
        _quiet_cancel(client)
        raise VaultError(f"{len(distinct)} stored shards did not complete root-token generation "
                         f"on {client.addr}; the attempt was cancelled")
    return decode_otp_token(encoded, otp)


def _quiet_cancel(client: VaultClient) -> None:
    with contextlib.suppress(VaultError):
        client.request("DELETE", "sys/generate-root/attempt")


def decode_otp_token(encoded: str, otp: str) -> str:
    """Undo the OTP encoding of generate-root: base64 (unpadded) XOR the one-time password."""
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise VaultError("Vault returned an encoded token that is not base64") from None
    pad = otp.encode()
    if len(raw) != len(pad):
        raise VaultError("the encoded token and the one-time password differ in length")
    return bytes(a ^ b for a, b in zip(raw, pad, strict=True)).decode()


def create_orphan_token(client: VaultClient, *, policies: Sequence[str], ttl: str,
                        display_name: str) -> str:
    """An orphan, non-renewable token that expires after ttl even if nobody revokes it."""
    data = client.request("POST", "auth/token/create-orphan", {
        "policies": list(policies), "ttl": ttl, "explicit_max_ttl": ttl, "renewable": False,
        "no_default_policy": True, "display_name": display_name}) or {}
    token = (data.get("auth") or {}).get("client_token")
    if not token:
        raise VaultError(f"Vault at {client.addr} created no token")
    return str(token)


def revoke_self(client: VaultClient) -> None:
    client.request("PUT", "auth/token/revoke-self")

