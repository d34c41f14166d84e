"""Safety rails of the Vault bootstrap against a real OpenBao server.

- Init never starts unless the init material file can be written: between sys/init and that
  write the shards exist only in memory, so a failing write would lose them for good.
- Check mode compares the configuration as the controller identity: it logs in, revokes its
  token, and leaves no generate-root attempt and no file change behind; a configuration that
  needs more than the identity's policy grants is reported (a real run refuses it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.vault_server import BaoServer
from tai_deploy.vault_api import Configuration, VaultClient, seal_status
from tai_deploy.vault_bootstrap import Connector, configure, init_and_unseal
from tai_deploy.vault_secrets import AnsibleVaultCipher, MaterialError, load_material

CIPHER = AnsibleVaultCipher(b"test-password")
CONFIG = Configuration.from_mapping({
    "secrets_engines": [{"path": "tai", "type": "kv", "options": {"version": "2"}}],
})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    bao = BaoServer(tmp_path_factory.mktemp("vault-safety") / "server")
    bao.start()
    try:
        yield bao
    finally:
        bao.stop()


def test_init_refuses_to_start_when_the_init_file_cannot_be_written(
        server: BaoServer) -> None:
    # Nothing can be created under /proc, even by root (file modes do not stop root).
    unwritable = Path("/proc/tai-deploy-no-such-folder/vault-init.yml")
    with pytest.raises(MaterialError, match=r"cannot write the init material file .*; Vault was "
                                            r"not initialised"):
        init_and_unseal([server.addr], init_file=unwritable, cipher=CIPHER,
                        connector=Connector())
    assert not seal_status(VaultClient(server.addr)).initialized


def test_check_mode_compares_and_leaves_nothing_behind(server: BaoServer, tmp_path: Path) -> None:
    init_file = tmp_path / "vault-init.yml"
    init_and_unseal([server.addr], init_file=init_file, cipher=CIPHER, connector=Connector())
    first = configure(server.addr, CONFIG, init_file=init_file, cipher=CIPHER,
                      connector=Connector())
    assert first.root_token_revoked
    before = init_file.read_bytes()
    material = load_material(init_file, CIPHER)
    assert material is not None and material.root_token is None

    dry = configure(server.addr, Configuration.from_mapping({
        "secrets_engines": [{"path": "tai", "type": "kv", "options": {"version": "2"},
                             "description": "drifted"}]}),
        init_file=init_file, cipher=CIPHER, connector=Connector(), check=True)
    assert dry.token_source == "controller identity"
    assert [(c.kind, c.action) for c in dry.changes if c.changed] == [
        ("secrets_engine", "updated")]
    wider = configure(server.addr, Configuration.from_mapping({
        "secrets_engines": [{"path": "tai2", "type": "kv", "options": {"version": "2"}}]}),
        init_file=init_file, cipher=CIPHER, connector=Connector(), check=True)
    assert [(c.kind, c.name, c.action) for c in wider.changes if c.changed] == [
        ("policy", "tai-deploy-controller", "updated")]
    assert "re-issue it with a break-glass root token" in wider.warnings[0]
    attempt = VaultClient(server.addr).request("GET", "sys/generate-root/attempt") or {}
    assert attempt.get("started") is False, "no generate-root attempt is left behind"
    assert init_file.read_bytes() == before
