"""Custody of Vault's shards: the named holders and their OpenPGP public keys.

Vault and OpenBao encrypt each shard they return from ``sys/init`` (``pgp_keys``, or
``recovery_pgp_keys`` with an auto-unseal seal) and from a rekey to one holder's public key, in
the order the keys are given. The controller then only ever sees ciphertexts: no file and no
password on it holds a quorum. A holder decrypts their shard with their own private key
(``base64 -d | gpg --decrypt``) when a quorum is needed (unseal with a Shamir seal, rekey,
break-glass root generation).

Vault wants each key as the base64 of the binary (unarmoured) transferable public key. The
inventory may give the ASCII-armoured block a person exports (``gpg --armor --export``); both
are accepted and normalised here. The check follows RFC 4880 (packet framing, section 4.2;
public-key packets, 5.5.2; fingerprints, 12.2) and RFC 9580 (version 6 keys), far enough to say
in one sentence when a key is not a public key or cannot encrypt; Vault does the rest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Tags (RFC 4880 4.3): public key, public subkey, user id; a secret key must never be given.
_PUBLIC_KEY, _PUBLIC_SUBKEY, _USER_ID = 6, 14, 13
_SECRET_KEY, _SECRET_SUBKEY = 5, 7
# Public-key algorithms able to encrypt (RFC 4880 9.1, RFC 6637, RFC 9580 9.1).
_ENCRYPTING = {1: "RSA", 2: "RSA", 16: "Elgamal", 18: "ECDH", 25: "X25519", 26: "X448"}
_ARMOR = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----(.*?)-----END PGP PUBLIC KEY BLOCK-----",
                    re.S)
_HOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")


class CustodyError(ValueError):
    """A holder or key is unusable; one sentence, never the key material."""


@dataclass(frozen=True)
class PublicKey:
    """What the check found in one key: Vault's form of it and what names it."""

    base64: str
    fingerprint: str
    user_ids: tuple[str, ...]


def _unarmor(text: str) -> bytes:
    match = _ARMOR.search(text)
    if match is None:
        body = "".join(text.split())
    else:
        lines = [ln.strip() for ln in match.group(1).strip().splitlines()]
        # Armour headers ("Comment: ...") end at the first blank line; "=XXXX" is the CRC.
        if "" in lines:
            lines = lines[lines.index("") + 1:]
        body = "".join(ln for ln in lines if ln and not ln.startswith("="))
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise CustodyError("is neither an armoured OpenPGP public key block nor base64") from None


def _packets(blob: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of every packet (RFC 4880 4.2, old and new formats)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(blob):
        head = blob[i]
        if not head & 0x80:
            raise CustodyError("is not OpenPGP data (bad packet header)")
        if head & 0x40:                     # new format
            tag = head & 0x3F
            if i + 1 >= len(blob):
                raise CustodyError("is truncated")
            first = blob[i + 1]
            if first < 192:
                length, i = first, i + 2
            elif first < 224:
                if i + 2 >= len(blob):
                    raise CustodyError("is truncated")
                length, i = ((first - 192) << 8) + blob[i + 2] + 192, i + 3
            elif first == 255:
                length, i = int.from_bytes(blob[i + 2:i + 6], "big"), i + 6
            else:
                raise CustodyError("uses partial packet lengths, which keys never do")
        else:                               # old format
            tag, kind = (head >> 2) & 0x0F, head & 0x03
            if kind == 3:
                raise CustodyError("uses an indeterminate packet length")
            size = (1, 2, 4)[kind]
            length = int.from_bytes(blob[i + 1:i + 1 + size], "big")
            i += 1 + size
        if i + length > len(blob):
            raise CustodyError("is truncated")
        out.append((tag, blob[i:i + length]))
        i += length
    return out


def _fingerprint(body: bytes) -> str:
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body,
                            usedforsecurity=False).hexdigest().upper()
    prefix = b"\x9b" if version == 6 else b"\x9a"
    return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()


def _algorithm(body: bytes) -> int:
    # version (1), creation time (4), [v5/v6: key material length (4)], algorithm (1)
    if len(body) < 6 or body[0] not in (4, 5, 6):
        raise CustodyError(f"has a public-key packet of version {body[0] if body else '?'}; "
                           "Vault reads version 4 (and newer) keys")
    return body[5]


def parse_public_key(text: str) -> PublicKey:
    """Check one public key (armoured or base64) and return it in the form Vault takes."""
    if not isinstance(text, str) or not text.strip():
        raise CustodyError("is empty")
    blob = _unarmor(text)
    packets = _packets(blob)
    tags = [t for t, _ in packets]
    if _SECRET_KEY in tags or _SECRET_SUBKEY in tags:
        raise CustodyError("holds a SECRET key; give only the holder's public key "
                           "(gpg --armor --export)")
    if not packets or packets[0][0] != _PUBLIC_KEY:
        raise CustodyError("does not start with an OpenPGP public-key packet")
    keys = [body for tag, body in packets if tag in (_PUBLIC_KEY, _PUBLIC_SUBKEY)]
    if not any(_algorithm(body) in _ENCRYPTING for body in keys):
        raise CustodyError("has no key that can encrypt (add an encryption subkey, for "
                           "example gpg --quick-add-key FPR cv25519 encr)")
    user_ids = tuple(body.decode("utf-8", "replace") for tag, body in packets if tag == _USER_ID)
    return PublicKey(base64.b64encode(blob).decode(), _fingerprint(packets[0][1]), user_ids)


@dataclass(frozen=True)
class Holder:
    name: str
    key: PublicKey


def holder_problems(holders: Any, shares: Any, threshold: Any, *, where: str) -> list[str]:
    """One sentence per problem of vault_key_holders against the share count and threshold."""
    if holders in (None, []):
        return []
    if not isinstance(holders, Sequence) or isinstance(holders, (str, bytes)):
        return [f"vault_key_holders of {where} must be a list of {{name, public_key}}."]
    out: list[str] = []
    names: list[str] = []
    fingerprints: dict[str, str] = {}
    for i, item in enumerate(holders):
        if not isinstance(item, Mapping):
            out.append(f"vault_key_holders[{i}] of {where} must be a mapping with name and "
                       "public_key.")
            continue
        name = str(item.get("name") or "")
        if not _HOLDER_NAME.match(name):
            out.append(f"vault_key_holders[{i}].name of {where} is {name!r}; it must be 1 to 64 "
                       "letters, digits, spaces or ._@- (the holder's name, never a secret).")
        elif name in names:
            out.append(f"vault_key_holders of {where} names {name} twice; each holder keeps "
                       "exactly one shard.")
        names.append(name)
        try:
            key = parse_public_key(item.get("public_key") or "")
        except CustodyError as exc:
            out.append(f"vault_key_holders[{i}].public_key ({name or 'unnamed'}) of {where} "
                       f"{exc}.")
            continue
        if key.fingerprint in fingerprints:
            out.append(f"vault_key_holders of {where}: {name} and {fingerprints[key.fingerprint]}"
                       f" have the same key ({key.fingerprint}); one person would hold two "
                       "shards.")
        fingerprints.setdefault(key.fingerprint, name)
    try:
        count, quorum = int(shares), int(threshold)
    except (TypeError, ValueError):
        return out
    if len(holders) != count:
        out.append(f"vault_key_holders of {where} lists {len(holders)} holders but "
                   f"vault_key_shares is {count}; Vault encrypts exactly one shard to each "
                   "holder's key.")
    if quorum > len(holders):
        out.append(f"vault_key_threshold of {where} is {quorum}, more than the "
                   f"{len(holders)} holders; no quorum could ever be gathered.")
    return out


def parse_holders(holders: Sequence[Mapping[str, Any]]) -> list[Holder]:
    """The holders with their checked keys (raises on the first problem)."""
    problems = holder_problems(list(holders), len(holders), 1, where="the request")
    if problems:
        raise CustodyError(problems[0])
    return [Holder(str(h["name"]), parse_public_key(str(h["public_key"]))) for h in holders]
