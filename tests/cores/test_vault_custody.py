"""Vault custody, the controller identity, audit and per-service policies on a REAL OpenBao server.

One OpenBao server (raft, the static auto-unseal seal standing in for Cloud KMS, the role's
declarative file audit device) serves the module; three holders get OpenPGP keys made by the
real ``gpg``. The tests run in order, each from the state the previous one left:

1. init with the holders' keys: each recovery shard is encrypted to its holder, the file holds
   only ciphertexts (they authorise nothing); 2. the first configure creates the controller
   identity with the initial root token, stores it, revokes the root token; 3. a rerun logs in
   as the controller (no root token generated) and changes nothing; 4. the controller identity
   is refused everything outside the converge; 5. a per-service token reads its own secret and
   is denied another service's; 6. the service secrets: drift reported without values, repaired;
   7. the audit log is written and holds HMACs, never a secret; 8. break-glass: the holders'
   decrypted shards generate a root token that re-issues the identity (the old one stops);
9. rotation to the holders (sys/rekey-recovery-key with pgp_keys): the first run stores the new
   ciphertexts as pending and waits; the second, with their decrypted new shards, verifies and
   promotes them; only the new shards work then.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.vault_lab import make_tls
from helpers.vault_rekey_lab import RekeyBaoServer
from helpers.vault_server import BaoServer
from tai_deploy.vault_api import (
    Configuration,
    VaultClient,
    VaultError,
    approle_login,
    generate_root,
    token_is_valid,
)
from tai_deploy.vault_bootstrap import ConfigureResult, Connector, configure, init_and_unseal
from tai_deploy.vault_custody import holder_problems, parse_public_key
from tai_deploy.vault_plan import (
    kv_secrets,
    role_endpoints,
    secret_values,
    service_policies,
    service_roles,
)
from tai_deploy.vault_rekey import rotate_shards
from tai_deploy.vault_secrets import AnsibleVaultCipher, InitMaterial, load_material

# GnuPG's gpg is a Debian package of the setup (pyproject [tool.tai-deploy.apt]).
pytestmark = [pytest.mark.xdist_group("vault_custody")]

HOLDERS = ("alice", "bob", "carol")
SERVICES = ("governor", "coordinator", "scheduler")


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--batch", "--quiet", "--homedir", str(home), *args],
                          input=data, capture_output=True, check=True).stdout


@dataclass
class Custody:
    server: BaoServer
    init_file: Path
    cipher: AnsibleVaultCipher
    gnupg: Path
    holders: list[tuple[str, str]]          # (name, armoured public key)
    audit_log: Path
    kube_ca: str
    values: dict[str, dict[str, str]]

    def client(self, token: str | None = None) -> VaultClient:
        return VaultClient(self.server.addr, token=token)

    def material(self) -> InitMaterial:
        material = load_material(self.init_file, self.cipher)
        assert material is not None
        return material

    def decrypted(self, count: int) -> list[str]:
        """What `count` holders do with their shard: base64 -d | gpg --decrypt."""
        return [_gpg(self.gnupg, "--decrypt", data=base64.b64decode(k)).decode().strip()
                for k in self.material().keys[:count]]

    def config(self) -> Configuration:
        roles = service_roles(SERVICES, "tai-system", "1h", "4h")
        return Configuration.from_mapping({
            "audit_devices": [{"path": "file", "type": "file",
                               "options": {"file_path": str(self.audit_log)}}],
            "auth_methods": [{"path": "kubernetes", "type": "kubernetes"}],
            "secrets_engines": [{"path": "tai", "type": "kv", "options": {"version": "2"}}],
            "policies": [{"name": n, "policy": p}
                         for n, p in sorted(service_policies(SERVICES, "tai").items())],
            "endpoints": [{"path": "auth/kubernetes/config",
                           "data": {"kubernetes_host": "https://kubernetes.default.svc",
                                    "kubernetes_ca_cert": self.kube_ca}},
                          *role_endpoints(roles, "kubernetes")],
            "kv_secrets": kv_secrets(self.values, "tai", SERVICES),
        })

    def configure(self, *, check: bool = False, break_glass_token: str | None = None
                  ) -> ConfigureResult:
        return configure(self.server.addr, self.config(), init_file=self.init_file,
                         cipher=self.cipher, connector=Connector(), check=check,
                         secret_values=secret_values(self.values),
                         break_glass_token=break_glass_token)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Custody]:
    root = tmp_path_factory.mktemp("vault-custody")
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700)
    holders = []
    for name in HOLDERS:
        uid = f"{name} <{name}@tai.example>"
        # ed25519 primary, cv25519 encryption subkey: fast, and what Vault's OpenPGP reads.
        _gpg(gnupg, "--passphrase", "", "--quick-gen-key", uid, "future-default", "default",
             "never")
        holders.append((name, _gpg(gnupg, "--armor", "--export", uid).decode()))
    server = RekeyBaoServer(root / "server", seal="static", audit_file=root / "audit.log")
    server.start()
    password = root / "vault-password"
    password.write_text(secrets.token_urlsafe(24) + "\n")
    _, kube_ca_file, _ = make_tls(root / "tls")
    values = {s: {"api_key": f"{s}-{secrets.token_hex(8)}", "db_url": "redis://x"}
              for s in SERVICES}
    try:
        yield Custody(server, root / "secrets" / "vault-init.yml",
                      AnsibleVaultCipher.from_password_file(password), gnupg, holders,
                      root / "audit.log", Path(kube_ca_file).read_text(), values)
    finally:
        server.stop()
        # gpg started an agent for this home; stop it with the home.
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"],
                       capture_output=True, check=False)


def test_holder_keys_are_checked_one_sentence_each(lab: Custody) -> None:
    _, armoured = lab.holders[0]
    key = parse_public_key(armoured)
    assert parse_public_key(key.base64) == key          # armoured and base64 are the same key
    assert any("alice@tai.example" in u for u in key.user_ids)
    good = [{"name": n, "public_key": k} for n, k in lab.holders]
    assert holder_problems(good, 3, 2, where="europe-west1") == []
    secret_key = base64.b64encode(_gpg(lab.gnupg, "--export-secret-keys", "--pinentry-mode",
                                       "loopback", "--passphrase", "", "alice@tai.example"))
    problems = holder_problems(
        [*good[:2], {"name": "dave", "public_key": "not a key"},
         {"name": "erin", "public_key": secret_key.decode()}, {"name": "bob", "public_key":
                                                             good[0]["public_key"]}],
        4, 6, where="europe-west1")
    assert problems == [
        "vault_key_holders[2].public_key (dave) of europe-west1 is neither an armoured OpenPGP "
        "public key block nor base64.",
        "vault_key_holders[3].public_key (erin) of europe-west1 holds a SECRET key; give only "
        "the holder's public key (gpg --armor --export).",
        "vault_key_holders of europe-west1 names bob twice; each holder keeps exactly one shard.",
        "vault_key_holders of europe-west1: bob and alice have the same key "
        f"({key.fingerprint}); one person would hold two shards.",
        "vault_key_holders of europe-west1 lists 5 holders but vault_key_shares is 4; Vault "
        "encrypts exactly one shard to each holder's key.",
        "vault_key_threshold of europe-west1 is 6, more than the 5 holders; no quorum could "
        "ever be gathered.",
    ]


def test_1_init_encrypts_each_shard_to_its_holder(lab: Custody) -> None:
    keys = [(n, parse_public_key(k).base64) for n, k in lab.holders]
    result = init_and_unseal([lab.server.addr], init_file=lab.init_file, cipher=lab.cipher,
                             connector=Connector(), shares=3, threshold=2, holders=keys)
    assert result.initialized_now and result.key_type == "recovery"
    material = lab.material()
    assert material.holders == HOLDERS and material.custody == "holders"
    assert material.root_token
    # Each holder, and only that holder, opens their shard: alice's key decrypts shard 0.
    shards = lab.decrypted(3)
    assert len(set(shards)) == 3
    # The file's ciphertexts authorise nothing: generate-root refuses them.
    with pytest.raises(VaultError, match="do not authorise a token"):
        generate_root(lab.client(), material.keys, material.threshold)


def test_2_first_configure_creates_the_controller_identity_and_revokes_root(
        lab: Custody) -> None:
    root = lab.material().root_token
    result = lab.configure()
    assert result.root_token_revoked and result.controller_issued
    material = lab.material()
    assert material.root_token is None and material.controller is not None
    assert not token_is_valid(lab.client(root))
    actions = {(c.kind, c.name): c.action for c in result.changes}
    assert actions[("audit", "file/")] == "unchanged"   # declared in the server configuration
    assert actions[("auth", "tai-deploy/")] == "created"
    assert actions[("policy", "tai-governor")] == "created"
    assert actions[("secret", "tai/governor/config")] == "created"


def test_3_rerun_logs_in_as_the_controller_and_changes_nothing(lab: Custody) -> None:
    attempts = lab.audit_log.read_text().count('"path":"sys/generate-root/attempt"')
    result = lab.configure()
    assert result.token_source == "controller identity"
    assert not result.changed
    # No root token was generated: the run made no generate-root request at all.
    assert lab.audit_log.read_text().count('"path":"sys/generate-root/attempt"') == attempts
    assert attempts > 0  # test 1's refused attempt is in the log: the count can see one


def test_4_controller_identity_is_refused_everything_else(lab: Custody) -> None:
    ident = lab.material().controller
    assert ident is not None
    token = approle_login(lab.client(), ident.auth_path, ident.role_id, ident.secret_id)
    me = lab.client(token)
    allowed = me.call("GET", "tai/data/governor/config")[0]
    refused = {
        "widen its own policy": me.call("PUT", "sys/policies/acl/tai-deploy-controller",
                                        {"policy": 'path "*" {capabilities=["sudo"]}'}),
        "change its own role": me.call("POST", "auth/tai-deploy/role/controller",
                                       {"token_policies": ["root"]}),
        "disable the audit device": me.call("DELETE", "sys/audit/file"),
        "seal Vault": me.call("PUT", "sys/seal"),
        "create tokens": me.call("POST", "auth/token/create", {"policies": ["tai-governor"]}),
        "write another policy": me.call("PUT", "sys/policies/acl/other", {"policy": ""}),
        "read the raft snapshot": me.call("GET", "sys/storage/raft/configuration"),
    }
    assert allowed == 200
    assert {what: code for what, (code, _) in refused.items()} == dict.fromkeys(refused, 403)
    me.request("PUT", "auth/token/revoke-self")


def _root(lab: Custody) -> VaultClient:
    """Break-glass: two holders decrypt their shards and generate a root token."""
    return lab.client(generate_root(lab.client(), lab.decrypted(2), 2))


def test_5_a_service_token_reads_its_own_secret_only(lab: Custody) -> None:
    root = _root(lab)
    try:
        token = root.request("POST", "auth/token/create",
                             {"policies": ["tai-governor"], "no_default_policy": True,
                              "ttl": "5m"}) or {}
        governor = lab.client(token["auth"]["client_token"])
        own = governor.request("GET", "tai/data/governor/config") or {}
        assert own["data"]["data"] == lab.values["governor"]
        assert governor.call("GET", "tai/data/coordinator/config")[0] == 403
        assert governor.call("GET", "tai/data/scheduler/config")[0] == 403
        assert governor.call("PUT", "tai/data/governor/config", {"data": {}})[0] == 403
        role = (root.request("GET", "auth/kubernetes/role/tai-coordinator") or {})["data"]
        assert role["bound_service_account_names"] == ["coordinator"]
        assert role["token_policies"] == ["tai-coordinator"]
    finally:
        root.request("PUT", "auth/token/revoke-self")


def test_6_service_secret_drift_is_reported_without_values_then_repaired(
        lab: Custody) -> None:
    old = lab.values["scheduler"]["api_key"]
    lab.values["scheduler"]["api_key"] = "rotated-" + secrets.token_hex(8)
    check = lab.configure(check=True)
    drift = [c for c in check.changes if c.changed]
    assert [(c.kind, c.name, c.action) for c in drift] == [
        ("secret", "tai/scheduler/config", "updated")]
    assert drift[0].after == {"keys": ["api_key", "db_url"], "changed": ["api_key"]}
    assert old not in repr(drift) and lab.values["scheduler"]["api_key"] not in repr(drift)
    assert lab.configure().changed
    assert not lab.configure().changed


def test_7_audit_log_is_written_and_holds_hmacs_not_secrets(lab: Custody) -> None:
    log = lab.audit_log.read_text()
    assert log.count("\n") > 20 and "hmac-sha256:" in log
    ident = lab.material().controller
    assert ident is not None
    leaked = [s for s in [ident.secret_id, *(v for d in lab.values.values() for v in d.values()
                                             if v != "redis://x")] if s in log]
    assert leaked == []
    assert '"path":"tai/data/governor/config"' in log


def test_8_break_glass_reissues_the_controller_identity(lab: Custody) -> None:
    before = lab.material().controller
    assert before is not None
    root = _root(lab)
    result = lab.configure(break_glass_token=root._token)
    assert result.controller_issued and result.root_token_revoked
    assert not token_is_valid(root)
    after = lab.material().controller
    assert after is not None and after.secret_id != before.secret_id
    with pytest.raises(VaultError, match="controller identity of the init material file was "
                                         "refused"):
        approle_login(lab.client(), before.auth_path, before.role_id, before.secret_id)
    assert not lab.configure().changed


def test_9_rotation_to_the_holders_takes_their_shards_twice(lab: Custody) -> None:
    keys = [(n, parse_public_key(k).base64) for n, k in lab.holders]
    old = lab.decrypted(2)
    with pytest.raises(VaultError, match="held by alice, bob, carol: 2 of them decrypt"):
        rotate_shards(lab.server.addr, init_file=lab.init_file, cipher=lab.cipher,
                      connector=Connector(), holders=keys)
    first = rotate_shards(lab.server.addr, init_file=lab.init_file, cipher=lab.cipher,
                          connector=Connector(), holders=keys, current_keys=old)
    assert first.awaiting_holders and not first.rotated
    material = lab.material()
    assert material.pending is not None and material.pending.holders == HOLDERS
    new = [_gpg(lab.gnupg, "--decrypt", data=base64.b64decode(k)).decode().strip()
           for k in material.pending.keys[1:]]
    again = rotate_shards(lab.server.addr, init_file=lab.init_file, cipher=lab.cipher,
                          connector=Connector(), holders=keys)
    assert again.awaiting_holders and lab.material().pending is not None  # still waiting
    done = rotate_shards(lab.server.addr, init_file=lab.init_file, cipher=lab.cipher,
                         connector=Connector(), holders=keys, new_keys=new)
    assert done.rotated and not done.awaiting_holders
    material = lab.material()
    assert material.pending is None and material.holders == HOLDERS
    assert set(lab.decrypted(3)) >= set(new) and not set(new) & set(old)
    with pytest.raises(VaultError, match="do not authorise a token"):
        generate_root(lab.client(), old, 2)
    root = lab.client(generate_root(lab.client(), new, 2))
    root.request("PUT", "auth/token/revoke-self")
    assert material.controller is not None  # the identity survives a rotation


def test_shamir_unseal_needs_the_holders_shards(tmp_path: Path, lab: Custody) -> None:
    """A Shamir-sealed node of a holders' cluster is unsealed only with shards handed in."""
    server = BaoServer(tmp_path / "server", lifetime=120)
    server.start()
    try:
        keys = [(n, parse_public_key(k).base64) for n, k in lab.holders]
        init_file = tmp_path / "init.yml"
        with pytest.raises(VaultError, match="held by alice, bob, carol: 2 of them decrypt"):
            init_and_unseal([server.addr], init_file=init_file, cipher=lab.cipher,
                            connector=Connector(), shares=3, threshold=2, holders=keys)
        material = load_material(init_file, lab.cipher)
        assert material is not None and material.holders == HOLDERS
        shards = [_gpg(lab.gnupg, "--decrypt", data=base64.b64decode(k)).decode().strip()
                  for k in material.keys[1:]]
        result = init_and_unseal([server.addr], init_file=init_file, cipher=lab.cipher,
                                 connector=Connector(), shares=3, threshold=2,
                                 unseal_keys=shards)
        assert [n.action for n in result.nodes] == ["unsealed"]
    finally:
        server.stop()


def test_inventory_rules_check_holders_services_and_the_controller_policy(lab: Custody) -> None:
    """The validation play's rules (inventory.py) refuse holders that do not match the shares,
    secrets of an unknown service, and a policy that would overwrite the controller's."""
    from tai_deploy.inventory import Context, role_problems

    holders = [{"name": n, "public_key": k} for n, k in lab.holders[:2]]
    problems = role_problems("vault", {
        "vault_key_holders": holders, "vault_key_shares": 3, "vault_key_threshold": 2,
        "vault_services": list(SERVICES), "vault_default_policies": {},
        "vault_policies": {"tai-deploy-controller": "path"},
        "vault_service_secrets": {"billing": {"k": "v"}, "governor": {}},
    }, Context(region="europe-west1", charts={"vault": {"repository": "r", "chart": "vault",
                                                        "version": "0.31.0"}}))
    assert problems == [
        "vault_key_holders of europe-west1 lists 2 holders but vault_key_shares is 3; Vault "
        "encrypts exactly one shard to each holder's key.",
        "vault_service_secrets of europe-west1 has secrets for billing, which is not one of "
        "vault_services (governor, coordinator, scheduler).",
        "vault_service_secrets.governor of europe-west1 must be a non-empty mapping of secret "
        "names to values.",
        "vault_policies defines tai-deploy-controller, the controller's own policy; the "
        "configuration may not write it (the controller would grant itself anything).",
    ]
