"""secrets/ and every folder under it are 0700, whatever the umask, also when they exist."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tai_deploy.files import atomic_write
from tai_deploy.vault_secrets import ensure_writable, write_private_atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_a_new_secrets_tree_is_created_0700(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    target = tmp_path / "project" / "secrets" / "production" / "europe-west1" / "vault-init.yml"
    ensure_writable(target)  # the role's probe before init creates the folders first
    write_private_atomic(target, b"ciphertext")
    secrets = tmp_path / "project" / "secrets"
    assert {str(p.relative_to(tmp_path)): mode(p) for p in (
        secrets, secrets / "production", target.parent)} == {
        "project/secrets": 0o700, "project/secrets/production": 0o700,
        "project/secrets/production/europe-west1": 0o700}
    assert mode(target) == 0o600
    # The folder above secrets/ is the project's: untouched.
    assert mode(tmp_path / "project") == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["vault-init.yml"]


@pytest.mark.usefixtures("umask_022")
def test_folders_an_earlier_run_left_0755_are_made_0700(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    for region in ("us-central1", "europe-west1"):
        (secrets / "production" / region).mkdir(parents=True, mode=0o755)
    (secrets / "production" / "us-central1" / "vault-init.yml").write_bytes(b"old")
    assert mode(secrets / "production") == 0o755
    write_private_atomic(secrets / "production" / "europe-west1" / "vault-tls.yml", b"x")
    assert {p.name: mode(p) for p in (secrets, *sorted(secrets.rglob("*"))) if p.is_dir()} == {
        "secrets": 0o700, "production": 0o700, "us-central1": 0o700, "europe-west1": 0o700}
    # Files keep their own mode; only folders are tightened.
    assert mode(secrets / "production" / "us-central1" / "vault-init.yml") == 0o644


@pytest.mark.usefixtures("umask_022")
def test_other_writes_keep_their_folder_mode(tmp_path: Path) -> None:
    target = tmp_path / "build" / "europe-west1" / "istio" / "values.yaml"
    atomic_write(target, "a: 1\n")
    assert mode(tmp_path / "build") == 0o755
    assert mode(target.parent) == 0o755
