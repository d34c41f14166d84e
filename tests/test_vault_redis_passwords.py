"""The Redis ACL users' passwords, generated into Vault by the vault role's configuration, on a
REAL OpenBao server (tests/helpers/vault_server.py): a missing password is generated (letters
and digits, never returned), an existing one is left untouched, and a second run changes
nothing. The controller identity writes them, so its policy grants exactly these paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.vault_server import BaoServer
from tai_deploy.vault_api import (
    CREATED,
    UNCHANGED,
    UPDATED,
    Configuration,
    VaultClient,
    VaultError,
    apply_configuration,
    ensure_secrets_engine,
)
from tai_deploy.vault_bootstrap import Connector, configure, init_and_unseal
from tai_deploy.vault_plan import redis_passwords
from tai_deploy.vault_secrets import AnsibleVaultCipher, load_material

pytestmark = pytest.mark.xdist_group("vault_redis_passwords")

CIPHER = AnsibleVaultCipher(b"test-password")
USERS = ["governor", "coordinator", "scheduler", "cluster-admin"]
# The chart's rule for a Redis password (docs/runbooks/redis-recovery.md, redis-start.sh).
CHART_CHARSET = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


def config(users: list[str]) -> Configuration:
    return Configuration.from_mapping({
        "secrets_engines": [{"path": "tai", "type": "kv", "options": {"version": "2"}}],
        "generated_secrets": redis_passwords(users, "tai", "redis", 40)})


class Lab:
    def __init__(self, server: BaoServer, init_file: Path) -> None:
        self.server, self.init_file = server, init_file
        self.heard: list[str] = []

    def configure(self, users: list[str], *, check: bool = False) -> Any:
        return configure(self.server.addr, config(users), init_file=self.init_file,
                         cipher=CIPHER, connector=Connector(), check=check,
                         on_secret=self.heard.extend)

    def read(self, path: str) -> dict[str, Any] | None:
        """The latest data of tai/<path>, read with a token of the test's own (root policy)."""
        body = self.root.request("GET", f"tai/data/{path}", missing_ok=True)
        return None if body is None else dict(body["data"]["data"] or {})

    root: VaultClient


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("vault-redis")
    server = BaoServer(root / "server")
    server.start()
    try:
        init_file = root / "vault-init.yml"
        init_and_unseal([server.addr], init_file=init_file, cipher=CIPHER,
                        connector=Connector())
        material = load_material(init_file, CIPHER)
        assert material is not None and material.root_token
        out = Lab(server, init_file)
        # A token of the test's own, outliving the initial root token that configure revokes.
        token = VaultClient(server.addr, token=material.root_token).request(
            "POST", "auth/token/create-orphan", {"policies": ["root"], "ttl": "1h"})
        assert token is not None
        out.root = VaultClient(server.addr, token=token["auth"]["client_token"])
        yield out
    finally:
        server.stop()


def test_1_check_mode_reports_the_missing_passwords_and_writes_none(lab: Lab) -> None:
    ensure_secrets_engine(lab.root, "tai", "kv", options={"version": "2"})
    # What an operator (or an older release) left: coordinator's password set by hand,
    # cluster-admin's secret without a password, scheduler's latest version deleted.
    lab.root.request("POST", "tai/data/redis/coordinator",
                     {"data": {"password": "chosen-by-an-operator"}})
    lab.root.request("POST", "tai/data/redis/cluster-admin", {"data": {"note": "kept"}})
    lab.root.request("POST", "tai/data/redis/scheduler", {"data": {"password": "old"}})
    lab.root.request("DELETE", "tai/data/redis/scheduler")
    planned = apply_configuration(lab.root, config(USERS), check=True)
    assert [(c.name, c.action) for c in planned if c.kind == "secret"] == [
        ("tai/redis/governor", CREATED), ("tai/redis/coordinator", UNCHANGED),
        ("tai/redis/scheduler", CREATED), ("tai/redis/cluster-admin", UPDATED)]
    assert lab.read("redis/governor") is None
    assert lab.read("redis/scheduler") is None
    assert lab.read("redis/cluster-admin") == {"note": "kept"}


def test_2_apply_generates_each_missing_password_as_the_controller(lab: Lab) -> None:
    result = lab.configure(USERS)
    secrets = {c.name: c for c in result.changes if c.kind == "secret"}
    assert {n: c.action for n, c in secrets.items()} == {
        "tai/redis/governor": CREATED, "tai/redis/coordinator": UNCHANGED,
        "tai/redis/scheduler": CREATED, "tai/redis/cluster-admin": UPDATED}
    assert secrets["tai/redis/cluster-admin"].after == {"keys": ["note", "password"],
                                                        "generated": ["password"]}
    generated = {u: (lab.read(f"redis/{u}") or {}).get("password", "")
                 for u in ("governor", "scheduler", "cluster-admin")}
    for value in generated.values():
        assert len(value) == 40 and re.fullmatch(r"[A-Za-z0-9]{40}", value)
        assert CHART_CHARSET.match(value)
        # Masked by the module (no_log_values) and never part of what is reported.
        assert value in lab.heard
        assert value not in repr(result.changes) and value not in repr(result)
    assert len(set(generated.values())) == 3
    assert lab.read("redis/coordinator") == {"password": "chosen-by-an-operator"}
    assert lab.read("redis/cluster-admin") == {"note": "kept",
                                               "password": generated["cluster-admin"]}
    # The deleted version was written over with check-and-set on its number: version 2.
    meta = lab.root.request("GET", "tai/metadata/redis/scheduler")
    assert meta is not None and meta["data"]["current_version"] == 2


def test_3_a_second_run_changes_nothing_and_keeps_every_password(lab: Lab) -> None:
    before = {u: lab.read(f"redis/{u}") for u in USERS}
    def generated() -> list[str]:  # on_secret also hears shards and tokens
        return [v for v in lab.heard if re.fullmatch(r"[A-Za-z0-9]{40}", v)]
    heard = generated()
    again = lab.configure(USERS)
    assert again.token_source == "controller identity"
    assert not again.changed
    assert [c.name for c in again.changes if c.changed] == []
    assert {u: lab.read(f"redis/{u}") for u in USERS} == before
    assert generated() == heard, "nothing was generated"


def test_a_length_outside_the_range_is_refused_in_one_sentence() -> None:
    with pytest.raises(VaultError, match=r"^generated_secrets\[0\] \(tai/redis/governor\) has "
                                         r"length 8; it must be a whole number from 24 to 256$"):
        Configuration.from_mapping({"generated_secrets": redis_passwords(
            ["governor"], "tai", "redis", 8)})
    assert redis_passwords(["governor"], "tai", "", 40) == []
