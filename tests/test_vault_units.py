"""The vault role's cores without a server: encrypted material, OTP decoding, TLS, inputs."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret
from cryptography import x509
from tai_deploy import vault_secrets
from tai_deploy.vault_api import (
    Configuration,
    VaultClient,
    VaultError,
    decode_otp_token,
    duration_seconds,
)
from tai_deploy.vault_bootstrap import Connector, PortForward
from tai_deploy.vault_plan import tls_secrets
from tai_deploy.vault_secrets import (
    AnsibleVaultCipher,
    InitMaterial,
    MaterialError,
    load_material,
    save_material,
)
from tai_deploy.vault_tls import ServerSpec, TlsMaterial, ensure_tls

HELPERS = Path(__file__).parent / "helpers"


def _material(root_token: str | None = "s.rootTokenForTests1234567") -> InitMaterial:
    keys = tuple(base64.b64encode(os.urandom(33)).decode() for _ in range(5))
    return InitMaterial("unseal", 5, 3, keys, root_token, "2026-11-26T00:00:00+00:00")


# --- ansible-vault format --------------------------------------------------------------------

def test_cipher_output_opens_with_ansible_vaultlib_and_back() -> None:
    cipher = AnsibleVaultCipher(b"correct horse\n")
    ansible = VaultLib([("default", VaultSecret(b"correct horse"))])
    blob = cipher.encrypt(b"vault_init: {keys: [a, b]}\n")
    assert blob.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert all(len(line) <= 80 for line in blob.splitlines())
    assert ansible.decrypt(blob) == b"vault_init: {keys: [a, b]}\n"
    assert cipher.decrypt(ansible.encrypt(b"x" * 1000)) == b"x" * 1000


def test_cipher_refuses_a_wrong_password_and_a_corrupt_file() -> None:
    blob = AnsibleVaultCipher(b"one").encrypt(b"data")
    with pytest.raises(MaterialError, match="the vault password does not open this file"):
        AnsibleVaultCipher(b"two").decrypt(blob)
    with pytest.raises(MaterialError, match="corrupt"):
        AnsibleVaultCipher(b"one").decrypt(b"$ANSIBLE_VAULT;1.1;AES256\nzz\n")
    with pytest.raises(MaterialError, match="not an ansible-vault AES256 file"):
        AnsibleVaultCipher(b"one").decrypt(b"plain text")


def test_password_files_plain_executable_missing_and_empty(tmp_path: Path) -> None:
    plain = tmp_path / "pw"
    plain.write_text("s3cret\n")
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\necho s3cret\n")
    script.chmod(0o700)
    blob = AnsibleVaultCipher.from_password_file(plain).encrypt(b"same")
    assert AnsibleVaultCipher.from_password_file(script).decrypt(blob) == b"same"
    with pytest.raises(MaterialError, match=r"the vault password file .*/nope does not exist"):
        AnsibleVaultCipher.from_password_file(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(MaterialError, match="the vault password is empty"):
        AnsibleVaultCipher.from_password_file(empty)
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o700)
    with pytest.raises(MaterialError, match="exited with status 3"):
        AnsibleVaultCipher.from_password_file(failing)


# --- init material at rest -------------------------------------------------------------------

def test_material_round_trip_is_encrypted_private_and_complete(tmp_path: Path) -> None:
    cipher = AnsibleVaultCipher(b"pw")
    target = tmp_path / "secrets" / "europe-west1" / "vault-init.yml"
    material = _material()
    save_material(target, material, cipher)
    blob = target.read_bytes()
    assert all(k.encode() not in blob for k in material.secrets())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert load_material(target, cipher) == material
    assert [p.name for p in target.parent.iterdir()] == ["vault-init.yml"]
    plain = VaultLib([("default", VaultSecret(b"pw"))]).decrypt(blob).decode()
    assert "keys_base64:" in plain and "root_token:" in plain
    assert load_material(tmp_path / "missing.yml", cipher) is None


def test_material_never_shows_secrets_in_repr() -> None:
    material = _material()
    text = repr(material)
    assert "root" not in text.lower().replace("root_token", "")
    assert not any(s in text for s in material.secrets())
    assert "<password>" in repr(AnsibleVaultCipher(b"hunter2")) and "hunter2" not in repr(
        AnsibleVaultCipher(b"hunter2"))


def test_secrets_cover_base64_hex_and_the_token() -> None:
    material = _material()
    values = material.secrets()
    assert material.root_token in values
    for key in material.keys:
        assert key in values and base64.b64decode(key).hex() in values
    assert material.without_root_token().root_token is None


def test_plain_text_or_foreign_files_are_refused(tmp_path: Path) -> None:
    cipher = AnsibleVaultCipher(b"pw")
    plain = tmp_path / "plain.yml"
    plain.write_text("vault_init: {keys_base64: [a]}\n")
    with pytest.raises(MaterialError, match="is not encrypted; refusing to use plain-text"):
        load_material(plain, cipher)
    foreign = tmp_path / "foreign.yml"
    foreign.write_bytes(cipher.encrypt(b"something: else\n"))
    with pytest.raises(MaterialError, match="does not hold Vault init material"):
        load_material(foreign, cipher)
    short = tmp_path / "short.yml"
    short.write_bytes(cipher.encrypt(
        b"vault_init: {keys_base64: [a], threshold: 3, shares: 5}\n"))
    with pytest.raises(MaterialError, match="holds 1 shards, fewer than the threshold 3"):
        load_material(short, cipher)
    with pytest.raises(MaterialError, match=r"cannot decrypt .* \(wrong password\?\)"):
        load_material(foreign, AnsibleVaultCipher(b"other"))


class _BrokenCipher:
    def encrypt(self, plaintext: bytes) -> bytes:
        raise RuntimeError("hardware security module unplugged")

    def decrypt(self, ciphertext: bytes) -> bytes:
        return ciphertext


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    cipher = AnsibleVaultCipher(b"pw")
    target = tmp_path / "vault-init.yml"
    old = _material()
    save_material(target, old, cipher)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        save_material(target, _material(), _BrokenCipher())
    assert target.read_bytes() == before

    def fsync_fails(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="Input/output error"):
        save_material(target, _material(), cipher)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vault-init.yml"]
    assert load_material(target, cipher) == old


# --- API helpers -----------------------------------------------------------------------------

def test_otp_decoding_undoes_the_xor_encoding() -> None:
    token = "hvs." + secrets.token_urlsafe(18)[:24]
    otp = secrets.token_urlsafe(21)[:len(token)]
    encoded = base64.b64encode(bytes(a ^ b for a, b in zip(token.encode(), otp.encode(),
                                                             strict=True))).decode().rstrip("=")
    assert decode_otp_token(encoded, otp) == token
    with pytest.raises(VaultError, match="differ in length"):
        decode_otp_token(encoded, otp + "x")


@pytest.mark.parametrize(("value", "seconds"), [
    ("1h", 3600), ("90m", 5400), ("30s", 30), ("1h30m", 5400), (3600, 3600), ("3600", 3600),
    ("4h", 14400), ("soon", None), ("", None), (True, None)])
def test_durations_compare_in_seconds(value: object, seconds: int | None) -> None:
    assert duration_seconds(value) == seconds


def test_configuration_input_errors_are_one_sentence() -> None:
    with pytest.raises(VaultError,
                       match=r"unknown sections mounts \(known: audit_devices, auth_methods"):
        Configuration.from_mapping({"mounts": []})
    with pytest.raises(VaultError, match=r"policies\[0\] lacks policy"):
        Configuration.from_mapping({"policies": [{"name": "x"}]})
    with pytest.raises(VaultError, match="section endpoints must be a list"):
        Configuration.from_mapping({"endpoints": {"path": "x"}})
    with pytest.raises(VaultError, match="is not an http:// or https:// URL"):
        VaultClient("vault:8200")


def test_connector_refuses_bad_node_names_and_reports_kubectl_errors(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="neither an http"), Connector().connect("vault-0"):
        pass
    with pytest.raises(VaultError, match="no port_forward settings"), \
            Connector().connect("pod/vault-0"):
        pass
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\nexec "{sys.executable}" '
                       f'"{HELPERS / "vault_fake_kubectl.py"}" "$@"\n')
    kubectl.chmod(0o755)
    forward = PortForward(kubectl=str(kubectl), namespace="vault", context="ctx")
    with pytest.raises(VaultError, match=r"kubectl port-forward to pod/vault-missing-0 in "
                                         r"namespace vault failed: error: unable to forward"), \
            Connector(forward=forward).connect("pod/vault-missing-0"):
        pass
    nothing = PortForward(kubectl=str(tmp_path / "no-kubectl"), namespace="vault")
    with pytest.raises(VaultError, match="cannot run"), \
            Connector(forward=nothing).connect("pod/vault-0"):
        pass


# --- TLS -------------------------------------------------------------------------------------

SPEC = ServerSpec("vault.vault.svc", ("vault", "vault.vault.svc", "vault-0.vault-internal"),
                  ("127.0.0.1",), validity_days=365, renew_before_days=30)


def _tls(path: Path, cipher: AnsibleVaultCipher) -> TlsMaterial:
    doc = vault_secrets.load_encrypted_document(path, cipher)
    return TlsMaterial.from_document(doc, str(path))


def test_tls_is_created_once_and_then_left_alone(tmp_path: Path) -> None:
    cipher = AnsibleVaultCipher(b"pw")
    dest, ca_file = tmp_path / "vault-tls.yml", tmp_path / "vault-ca.pem"
    first = ensure_tls(dest, cipher, SPEC, ca_common_name="Test CA", ca_cert_file=ca_file)
    assert first.changed and first.actions[0] == "create the CA"
    assert ca_file.read_text() == first.ca_cert and "PRIVATE KEY" not in ca_file.read_text()
    assert b"PRIVATE KEY" not in dest.read_bytes()
    material = _tls(dest, cipher)
    cert = x509.load_pem_x509_certificate(material.server_cert.encode())
    ca = x509.load_pem_x509_certificate(material.ca_cert.encode())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == sorted(SPEC.dns_names)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    again = ensure_tls(dest, cipher, SPEC, ca_common_name="Test CA", ca_cert_file=ca_file)
    assert not again.changed and again.server_serial == first.server_serial


def test_tls_server_certificate_is_renewed_with_the_same_ca(tmp_path: Path) -> None:
    cipher = AnsibleVaultCipher(b"pw")
    dest = tmp_path / "vault-tls.yml"
    first = ensure_tls(dest, cipher, SPEC, ca_common_name="Test CA")
    later = datetime.now(UTC) + timedelta(days=340)
    check = ensure_tls(dest, cipher, SPEC, ca_common_name="Test CA", now=later, check=True)
    assert check.actions == [f"issue the server certificate (it expires on "
                             f"{first.server_not_after[:10]})"]
    assert _tls(dest, cipher).server_cert  # check mode wrote nothing new
    renewed = ensure_tls(dest, cipher, SPEC, ca_common_name="Test CA", now=later)
    assert renewed.changed and renewed.ca_cert == first.ca_cert
    assert renewed.server_serial != first.server_serial
    wider = ServerSpec(SPEC.common_name, (*SPEC.dns_names, "vault-3.vault-internal"),
                       SPEC.ip_addresses)
    names = ensure_tls(dest, cipher, wider, ca_common_name="Test CA")
    assert names.actions == ["issue the server certificate (its names differ from the wanted "
                             "ones)"]
    with pytest.raises(MaterialError, match="has expired; rotating a CA is a deliberate"):
        ensure_tls(dest, cipher, SPEC, ca_common_name="Test CA",
                   now=datetime.now(UTC) + timedelta(days=4000))


def test_tls_spec_errors_are_one_sentence() -> None:
    with pytest.raises(MaterialError, match=r"renew_before_days .* must be shorter"):
        ServerSpec("x", ("x",), validity_days=30, renew_before_days=30)
    with pytest.raises(MaterialError, match="'vault' is not an IP address"):
        ServerSpec("x", ("x",), ("vault",))


def test_tls_secrets_are_the_listener_secret_and_one_ca_secret_per_namespace() -> None:
    material = {"tls_crt": "CERT\n", "tls_key": "KEY\n", "ca_crt": "CA\n"}
    listener, *cas = tls_secrets(material, "vault-tls", "vault", "vault-ca",
                                 ["tai-system", "monitoring"])
    assert listener == {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "vault-tls", "namespace": "vault",
                     "labels": {"app.kubernetes.io/name": "vault",
                                "app.kubernetes.io/managed-by": "tai-deploy"}},
        # base64 of "CERT\n", "KEY\n", "CA\n"
        "data": {"tls.crt": "Q0VSVAo=", "tls.key": "S0VZCg==", "ca.crt": "Q0EK"}}
    assert cas == [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "vault-ca", "namespace": ns},
                    "data": {"ca.crt": "Q0EK"}} for ns in ("tai-system", "monitoring")]
