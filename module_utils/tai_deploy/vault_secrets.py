"""Vault init material (shards and the initial root token) at rest, encrypted, written atomically.

The material lives in ONE file, encrypted with a ``Cipher``. ``AnsibleVaultCipher`` writes the
ansible-vault 1.1 format (AES256-CTR, HMAC-SHA256, PBKDF2 with 10000 rounds) with
``cryptography``, so ``ansible-vault view --vault-password-file ...`` opens the file and Ansible's
``unvault`` lookup reads it. Modules cannot import Ansible's controller code (AnsiballZ ships only
module_utils), hence the re-implementation; tests check it against Ansible's VaultLib both ways.
This module never prints, logs or raises with a secret in the message.

During a shard rotation (vault_rekey) the file also holds the new shards as ``pending`` until
Vault has verified them and they are promoted; every writer here keeps them.

Custody (``holders``): when Vault was initialised (or rekeyed) with the holders' OpenPGP keys,
``keys_base64`` holds the shards ENCRYPTED to those keys, one per holder in the holders' order;
the file then holds no quorum, and nothing here can unseal Vault or mint a root token with
them. The controller's own identity (``controller``: an AppRole role id and secret id, created
with the initial root token) is what the day-to-day configuration logs in with.

Writes go to a temporary file in the same folder (mode 0600), are flushed and fsynced, then
renamed over the target and the folder is fsynced: a crash leaves the old file or the new one,
never half of either.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from .files import atomic_write, make_dirs

FORMAT_VERSION = 1
KEY_TYPES = ("unseal", "recovery")


class MaterialError(ValueError):
    """The material file is missing, unreadable or inconsistent; one sentence, no secrets."""


class Cipher(Protocol):
    """Symmetric encryption of whole files (ansible-vault in the modules)."""

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes) -> bytes: ...


VAULT_HEADER = b"$ANSIBLE_VAULT;1.1;AES256"


class AnsibleVaultCipher:
    """The ansible-vault 1.1 AES256 format with one password (vault id ``default``)."""

    def __init__(self, password: bytes) -> None:
        if not password.strip():
            raise MaterialError("the vault password is empty")
        self._password = password.strip()

    def __repr__(self) -> str:
        return "AnsibleVaultCipher(<password>)"

    @classmethod
    def from_password_file(cls, path: str | Path) -> AnsibleVaultCipher:
        """Read the password like Ansible does: an executable file is run and its stdout used."""
        source = Path(path)
        if not source.is_file():
            raise MaterialError(f"the vault password file {source} does not exist")
        try:
            if os.access(source, os.X_OK):
                proc = subprocess.run([str(source)], capture_output=True, check=False,
                                      timeout=60)
                if proc.returncode != 0:
                    raise MaterialError(f"the vault password script {source} exited with "
                                        f"status {proc.returncode}")
                return cls(proc.stdout)
            return cls(source.read_bytes())
        except OSError as exc:
            raise MaterialError(f"cannot read the vault password file {source}: "
                                f"{exc.strerror}") from None
        except subprocess.TimeoutExpired:
            raise MaterialError(f"the vault password script {source} did not finish within "
                                "60 s") from None

    def _keys(self, salt: bytes) -> tuple[bytes, bytes, bytes]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

        derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt,
                             iterations=10000).derive(self._password)
        return derived[:32], derived[32:64], derived[64:80]

    def encrypt(self, plaintext: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes, padding
        from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
        from cryptography.hazmat.primitives.ciphers import algorithms, modes
        from cryptography.hazmat.primitives.hmac import HMAC

        salt = os.urandom(32)
        key1, key2, iv = self._keys(salt)
        padder = padding.PKCS7(128).padder()
        encryptor = AesCipher(algorithms.AES(key1), modes.CTR(iv)).encryptor()
        ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize())
        ciphertext += encryptor.finalize()
        mac = HMAC(key2, hashes.SHA256())
        mac.update(ciphertext)
        body = binascii.hexlify(b"\n".join([binascii.hexlify(salt),
                                             binascii.hexlify(mac.finalize()),
                                             binascii.hexlify(ciphertext)]))
        lines = [VAULT_HEADER] + [body[i:i + 80] for i in range(0, len(body), 80)]
        return b"\n".join(lines) + b"\n"

    def decrypt(self, ciphertext: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes, padding
        from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
        from cryptography.hazmat.primitives.ciphers import algorithms, modes
        from cryptography.hazmat.primitives.hmac import HMAC

        lines = ciphertext.strip().splitlines()
        header = lines[0].strip().split(b";") if lines else []
        if len(header) < 3 or header[0] != b"$ANSIBLE_VAULT" or header[2] != b"AES256":
            raise MaterialError("not an ansible-vault AES256 file")
        try:
            salt_hex, mac_hex, data_hex = binascii.unhexlify(b"".join(lines[1:])).split(b"\n", 2)
            salt, data = binascii.unhexlify(salt_hex), binascii.unhexlify(data_hex)
        except (binascii.Error, ValueError):
            raise MaterialError("the ansible-vault file is corrupt") from None
        key1, key2, iv = self._keys(salt)
        mac = HMAC(key2, hashes.SHA256())
        mac.update(data)
        if not hmac.compare_digest(mac.finalize().hex().encode(), mac_hex.lower()):
            raise MaterialError("the vault password does not open this file")
        decryptor = AesCipher(algorithms.AES(key1), modes.CTR(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(decryptor.update(data) + decryptor.finalize()) + \
                unpadder.finalize()
        except ValueError:
            raise MaterialError("the ansible-vault file is corrupt") from None


@dataclass(frozen=True)
class PendingShards:
    """New shards of a rotation (vault_rekey) that Vault has not verified yet. Not in repr.

    They are written next to the current shards BEFORE the verification that makes them
    active, so a crash at any point leaves a file that unseals Vault: until the verification
    completes the current shards are the active ones, afterwards these are.
    """

    shares: int
    threshold: int
    keys: tuple[str, ...] = field(repr=False)
    nonce: str = ""          # of the rekey operation that created them (not a secret)
    created_at: str = ""
    holders: tuple[str, ...] = ()   # the new shards are encrypted to these holders' keys

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.shares or len(self.keys) < self.threshold:
            raise MaterialError(f"the pending shards ({len(self.keys)}, threshold "
                                f"{self.threshold} of {self.shares}) are inconsistent")

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"shares": self.shares, "threshold": self.threshold,
                               "keys_base64": list(self.keys), "rekey_nonce": self.nonce,
                               "created_at": self.created_at}
        if self.holders:
            doc["holders"] = list(self.holders)
        return doc

    @classmethod
    def from_document(cls, body: Any, source: str) -> PendingShards:
        keys = body.get("keys_base64") if isinstance(body, Mapping) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise MaterialError(f"{source} has no list of shards under "
                                "vault_init.pending.keys_base64")
        assert isinstance(body, Mapping)
        try:
            return cls(int(body.get("shares", len(keys))), int(body.get("threshold", 0)),
                       tuple(keys), str(body.get("rekey_nonce") or ""),
                       str(body.get("created_at") or ""),
                       tuple(str(h) for h in body.get("holders") or []))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MaterialError):
                raise MaterialError(f"{source}: {exc}") from None
            raise MaterialError(f"{source} has a malformed pending shares or threshold "
                                "value") from None


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ControllerIdentity:
    """The controller's AppRole login (auth/<auth_path>/login). The secret id is not in repr."""

    auth_path: str
    role_name: str
    role_id: str = field(repr=False)
    secret_id: str = field(repr=False)
    secret_id_accessor: str = ""
    created_at: str = ""

    def to_document(self) -> dict[str, Any]:
        return {"auth_path": self.auth_path, "role_name": self.role_name,
                "role_id": self.role_id, "secret_id": self.secret_id,
                "secret_id_accessor": self.secret_id_accessor, "created_at": self.created_at}

    @classmethod
    def from_document(cls, body: Any, source: str) -> ControllerIdentity:
        fields = ("auth_path", "role_name", "role_id", "secret_id")
        if not isinstance(body, Mapping) or not all(
                isinstance(body.get(k), str) and body.get(k) for k in fields):
            raise MaterialError(f"{source} has an incomplete vault_init.controller (it needs "
                                f"{', '.join(fields)})")
        return cls(str(body["auth_path"]), str(body["role_name"]), str(body["role_id"]),
                   str(body["secret_id"]), str(body.get("secret_id_accessor") or ""),
                   str(body.get("created_at") or ""))


@dataclass(frozen=True)
class InitMaterial:
    """What ``sys/init`` returned (and later rotations). Secrets are excluded from repr."""

    key_type: str
    shares: int
    threshold: int
    keys: tuple[str, ...] = field(repr=False)
    root_token: str | None = field(default=None, repr=False)
    initialized_at: str = ""
    rotated_at: str = ""
    pending: PendingShards | None = field(default=None, repr=False)
    # Names of the holders the shards are encrypted to, in the order of keys; empty: the shards
    # are stored in the clear (inside this encrypted file), the custody before holders existed.
    holders: tuple[str, ...] = ()
    controller: ControllerIdentity | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.holders and len(self.holders) != len(self.keys):
            raise MaterialError(f"the material names {len(self.holders)} holders for "
                                f"{len(self.keys)} shards")
        if self.key_type not in KEY_TYPES:
            raise MaterialError(f"key type {self.key_type!r} is not one of {', '.join(KEY_TYPES)}")
        if not 1 <= self.threshold <= self.shares:
            raise MaterialError(f"threshold {self.threshold} is not between 1 and {self.shares}")
        if len(self.keys) < self.threshold:
            raise MaterialError(f"the material holds {len(self.keys)} shards, fewer than the "
                                f"threshold {self.threshold}")

    @classmethod
    def new(cls, key_type: str, shares: int, threshold: int, keys: Sequence[str],
            root_token: str, *, holders: Sequence[str] = ()) -> InitMaterial:
        return cls(key_type, shares, threshold, tuple(keys), root_token, _now(),
                   holders=tuple(holders))

    @property
    def custody(self) -> str:
        """``holders``: the shards are encrypted to the holders' keys; ``file``: in the clear."""
        return "holders" if self.holders else "file"

    def secrets(self) -> list[str]:
        """Every secret string in the material, for output masking (Ansible no_log_values)."""
        keys = list(self.keys) + (list(self.pending.keys) if self.pending else [])
        out = keys + [_b64_to_hex(k) for k in keys]
        if self.root_token:
            out.append(self.root_token)
        if self.controller is not None:
            out += [self.controller.secret_id, self.controller.role_id]
        return [s for s in out if s]

    def with_controller(self, controller: ControllerIdentity | None) -> InitMaterial:
        return replace(self, controller=controller)

    def without_root_token(self) -> InitMaterial:
        return replace(self, root_token=None)

    def with_pending(self, pending: PendingShards | None) -> InitMaterial:
        """The same material with (other) pending shards of a rotation, or none."""
        return replace(self, pending=pending)

    def promoted(self) -> InitMaterial:
        """The pending shards become the current ones; the old shards are dropped."""
        if self.pending is None:
            raise MaterialError("there are no pending shards to promote")
        return replace(self, shares=self.pending.shares, threshold=self.pending.threshold,
                       keys=self.pending.keys, pending=None, rotated_at=_now(),
                       holders=self.pending.holders)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "key_type": self.key_type,
            "shares": self.shares,
            "threshold": self.threshold,
            "keys_base64": list(self.keys),
            "initialized_at": self.initialized_at,
        }
        if self.root_token:
            doc["root_token"] = self.root_token
        if self.rotated_at:
            doc["rotated_at"] = self.rotated_at
        if self.pending is not None:
            doc["pending"] = self.pending.to_document()
        if self.holders:
            doc["holders"] = list(self.holders)
        if self.controller is not None:
            doc["controller"] = self.controller.to_document()
        return {"vault_init": doc}

    @classmethod
    def from_document(cls, doc: Any, source: str) -> InitMaterial:
        body = doc.get("vault_init") if isinstance(doc, Mapping) else None
        if not isinstance(body, Mapping):
            raise MaterialError(f"{source} does not hold Vault init material (no vault_init key)")
        keys = body.get("keys_base64")
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise MaterialError(f"{source} has no list of shards under vault_init.keys_base64")
        pending = (PendingShards.from_document(body["pending"], source) if body.get("pending")
                   else None)
        holders = body.get("holders") or []
        if not isinstance(holders, list) or not all(isinstance(h, str) and h for h in holders):
            raise MaterialError(f"{source} has a malformed vault_init.holders list")
        controller = (ControllerIdentity.from_document(body["controller"], source)
                      if body.get("controller") else None)
        try:
            return cls(
                key_type=str(body.get("key_type", "unseal")),
                shares=int(body.get("shares", len(keys))),
                threshold=int(body.get("threshold", 0)),
                keys=tuple(keys),
                root_token=str(body["root_token"]) if body.get("root_token") else None,
                initialized_at=str(body.get("initialized_at", "")),
                rotated_at=str(body.get("rotated_at") or ""),
                pending=pending,
                holders=tuple(holders),
                controller=controller,
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MaterialError):
                raise MaterialError(f"{source}: {exc}") from None
            raise MaterialError(f"{source} has a malformed shares or threshold value") from None


def _b64_to_hex(key: str) -> str:
    try:
        return base64.b64decode(key, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


HEADER = ("# Vault init material (unseal or recovery shards, initial root token until it is\n"
          "# revoked). Written by the tai-deploy vault role; keep it encrypted.\n")


def load_encrypted_document(path: str | Path, cipher: Cipher) -> Any | None:
    """The decrypted YAML document of an encrypted file, or None when the file is missing."""
    target = Path(path)
    try:
        blob = target.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MaterialError(f"cannot read {target}: {exc.strerror}") from None
    if not blob.lstrip().startswith(b"$ANSIBLE_VAULT;"):
        raise MaterialError(f"{target} is not encrypted; refusing to use plain-text secrets "
                            "(encrypt it with ansible-vault, then rotate what it holds)")
    try:
        plain = cipher.decrypt(blob)
    except Exception:  # the cipher's own errors may carry context we do not want to print
        raise MaterialError(f"cannot decrypt {target} with the given vault password file "
                            "(wrong password?)") from None
    try:
        return yaml.safe_load(plain.decode())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise MaterialError(f"{target} decrypts to something that is not YAML") from None


def save_encrypted_document(path: str | Path, doc: Mapping[str, Any], cipher: Cipher, *,
                            header: str = "") -> None:
    """Encrypt a YAML document and write it atomically (0600, folder 0700), fsynced."""
    text = header + yaml.safe_dump(dict(doc), sort_keys=True, default_flow_style=False)
    write_private_atomic(Path(path), cipher.encrypt(text.encode()))


def load_material(path: str | Path, cipher: Cipher) -> InitMaterial | None:
    """The decrypted init material, or None when the file does not exist."""
    doc = load_encrypted_document(path, cipher)
    return None if doc is None else InitMaterial.from_document(doc, str(path))


def ensure_writable(path: str | Path) -> None:
    """Fail now, with one sentence, if a file cannot be written atomically at path."""
    target = Path(path)
    try:
        write_private_atomic(target.parent / f".{target.name}.probe", b"probe")
        (target.parent / f".{target.name}.probe").unlink()
    except OSError as exc:
        raise MaterialError(
            f"cannot write the init material file {target} ({exc.strerror or exc}); Vault was "
            "not initialised, fix the folder (vault_secrets_dir) and run again") from None


def save_material(path: str | Path, material: InitMaterial, cipher: Cipher) -> None:
    save_encrypted_document(path, material.to_document(), cipher, header=HEADER)


def write_private_atomic(target: Path, blob: bytes, *, mode: int = 0o600) -> None:
    """Replace target with blob atomically and durably, in a folder only the owner reads."""
    private_folder(target.parent)
    atomic_write(target, blob, mode=mode, durable=True, dir_mode=0o700)


def private_folder(folder: Path) -> None:
    """folder and every missing parent 0700; when folder lies under the project's secrets/
    folder, secrets/ itself and every folder under it are made 0700 as well, also those an
    earlier version created 0755 (secrets/<environment>/ holds every region's material)."""
    folder = Path(folder).absolute()
    make_dirs(folder, 0o700)
    root = next((p for p in (folder, *folder.parents) if p.name == "secrets"), None)
    if root is None:
        return
    for here, dirs, _ in os.walk(root):
        for path in (Path(here), *(Path(here) / d for d in dirs)):
            if not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != 0o700:
                path.chmod(0o700)
