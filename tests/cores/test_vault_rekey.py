"""Shard rotation (playbooks/vault-rotate-shards.yml, vault_rekey) on a REAL OpenBao server.

One server (TLS, raft, Shamir seal) serves the module; the tests run in order and each starts
from the state the previous one left: plan mode (no network, one region per run, bad input);
check mode; a rotation through ansible-playbook, proven by a restart (old shards refused, new
ones unseal); a second rotation to other counts; a wrong current shard (one sentence, nothing
changed); a stale rekey; four crash points (a child process SIGKILLs itself after a step) and
the rerun that finishes or redoes the rotation; recovery shards of an auto-unseal server; and a
sweep of every -vvv output, the crash children's output and build/ for shards and tokens.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.vault_lab import BUILD_DIR, Lab, make_tls, readable_files, secret_strings, sweep
from helpers.vault_rekey_lab import REGION, RekeyBaoServer, crash_at, run_rotation, unseals
from tai_deploy.vault_api import (
    VaultClient,
    VaultError,
    generate_root,
    initialize,
    revoke_self,
    seal_status,
    wait_unsealed,
)
from tai_deploy.vault_bootstrap import Connector, init_and_unseal
from tai_deploy.vault_rekey import (
    PENDING_SAVED,
    REKEYED,
    VERIFIED,
    Rekey,
    RekeyResult,
    check_shares,
    rotate_shards,
)
from tai_deploy.vault_secrets import (
    AnsibleVaultCipher,
    InitMaterial,
    MaterialError,
    PendingShards,
    load_material,
    save_material,
)

pytestmark = [pytest.mark.playbook, pytest.mark.xdist_group("vault_rekey")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("vault-rekey")
    ca, cert, key = make_tls(root / "tls")
    server = RekeyBaoServer(root / "server", tls_cert=cert, tls_key=key)
    server.start()
    password = root / "vault-password"
    password.write_text(secrets.token_urlsafe(24) + "\n")
    password.chmod(0o600)
    lab = Lab(root, server, ca, password)
    try:
        init_and_unseal([server.addr], init_file=lab.init_file, cipher=lab.cipher,
                        connector=Connector(ca_cert=ca))
        lab.seen_secrets += lab.material().secrets()
        yield lab
    finally:
        server.stop()


@pytest.fixture(scope="module")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rekey-build")


def _rotate(lab: Lab, path: Path | None = None, **kwargs: object) -> RekeyResult:
    return rotate_shards(lab.server.addr, init_file=path or lab.init_file, cipher=lab.cipher,
                         connector=Connector(ca_cert=lab.ca_cert),
                         on_secret=lab.seen_secrets.extend, **kwargs)  # type: ignore[arg-type]


def _rekey(lab: Lab) -> Rekey:
    return Rekey(lab.client(), recovery=False)


def _fatal_message(output: str) -> str:
    start = output.find("fatal: [")
    assert start >= 0, output[-3000:]
    return " ".join(output[start:output.find("PLAY RECAP", start)].split())


def _restart_sealed(lab: Lab) -> None:
    lab.server.restart()
    assert seal_status(lab.client()).sealed


def _track(lab: Lab) -> InitMaterial:
    material = lab.material()
    lab.seen_secrets += material.secrets()
    return material


def test_1_plan_mode_reports_without_network_and_refuses_bad_runs(lab: Lab,
                                                                 build_root: Path) -> None:
    before = lab.init_file.read_bytes()
    plan = run_rotation(lab, build_root=build_root, vault_seal_type="shamir",
                        vault_api_addr="https://127.0.0.1:1")  # nothing listens there
    assert plan.returncode == 0, plan.output[-3000:]
    text = " ".join(plan.output.split())
    assert ("Plan only: apply mode (-e tai_apply=true) would rotate the unseal shards of "
            "europe-west1 into 5 shards (threshold 3) through https://127.0.0.1:1") in text
    rendered = (build_root / REGION / "vault-rotation" / "rotation.json").read_text()
    assert '"endpoints": "/v1/sys/rekey/{init,update,verify}"' in rendered
    assert lab.init_file.read_bytes() == before
    assert not _rekey(lab).status().started

    many = run_rotation(lab, build_root=build_root, limit=None)
    assert many.returncode != 0
    assert ("Rotate the Vault shards of one region at a time (us-central1, europe-west1, "
            "asia-southeast1 were selected): pass -l <region>, or -e vault_rotate_many_regions="
            "true to rotate them one after another.") in _fatal_message(many.output)
    assert not (build_root / "us-central1").exists()

    bad = run_rotation(lab, build_root=build_root, vault_rotate_key_threshold=1)
    assert bad.returncode != 0
    assert ("vault_rotate_key_threshold 1 with 5 shares is refused by Vault (any single shard "
            "would unseal it); use at least 2.") in _fatal_message(bad.output)
    assert all("Traceback" not in o for o in (plan.output, many.output, bad.output))


def test_2_check_mode_reads_vault_and_changes_nothing(lab: Lab, build_root: Path) -> None:
    before = lab.init_file.read_bytes()
    run = run_rotation(lab, "--check", build_root=build_root, tai_apply=True,
                       vault_seal_type="shamir")
    assert run.returncode == 0, run.output[-3000:]
    assert "rotate the 5 unseal shards (threshold 3) into 5 new ones" in " ".join(
        run.output.split())
    assert lab.init_file.read_bytes() == before
    assert not _rekey(lab).status().started


def test_3_rotation_through_the_playbook_old_shards_stop_working(lab: Lab,
                                                                  build_root: Path) -> None:
    old = lab.material()
    run = run_rotation(lab, build_root=build_root, tai_apply=True, vault_seal_type="shamir")
    assert run.returncode == 0 and run.recap(REGION)["failed"] == 0, run.output[-3000:]
    new = _track(lab)
    assert (new.key_type, new.shares, new.threshold, len(new.keys)) == ("unseal", 5, 3, 5)
    assert not set(new.keys) & set(old.keys)
    assert new.pending is None and new.rotated_at
    assert new.root_token == old.root_token and new.initialized_at == old.initialized_at
    assert "Now 5 unseal shards, threshold 3" in " ".join(run.output.split())
    blob = lab.init_file.read_bytes()
    assert blob.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert not any(k.encode() in blob for k in new.keys)

    _restart_sealed(lab)
    with pytest.raises(VaultError, match=r"^Vault at https://127\.0\.0\.1:\d+ is sealed; unseal "
                                         r"it first \(site.yml --tags vault_unseal\)"):
        _rotate(lab)
    assert not unseals(lab.server, old.keys, 3, lab.ca_cert), "old shards must be refused"
    assert seal_status(lab.client()).progress == 0
    assert unseals(lab.server, new.keys, 3, lab.ca_cert), "new shards must unseal"


def test_4_second_rotation_changes_the_counts(lab: Lab) -> None:
    old = lab.material()
    result = _rotate(lab, shares=4, threshold=2)
    assert result.rotated and not result.resumed
    assert (result.previous_shares, result.previous_threshold) == (5, 3)
    assert (result.shares, result.threshold) == (4, 2)
    new = _track(lab)
    assert (new.shares, new.threshold, len(new.keys)) == (4, 2, 4)
    assert not set(new.keys) & set(old.keys)
    status = seal_status(lab.client())
    assert (status.shares, status.threshold) == (4, 2)


def test_5_wrong_current_shard_fails_with_one_sentence_and_changes_nothing(
        lab: Lab, build_root: Path) -> None:
    good = lab.material()
    keys = list(good.keys)
    keys[1] = base64.b64encode(os.urandom(len(base64.b64decode(keys[1])))).decode()
    lab.seen_secrets.append(keys[1])
    bad_file = lab.root / "bad" / "vault-init.yml"
    save_material(bad_file, InitMaterial("unseal", good.shares, good.threshold, tuple(keys)),
                  lab.cipher)
    before, good_blob = bad_file.read_bytes(), lab.init_file.read_bytes()
    run = run_rotation(lab, build_root=build_root, tai_apply=True, vault_seal_type="shamir",
                       vault_init_file=str(bad_file))
    assert run.returncode != 0
    message = _fatal_message(run.output)
    assert "the stored unseal shards do not authorise a rekey of Vault at https://127.0.0.1:" \
        in message
    assert "the rekey was cancelled and nothing was changed" in message
    assert "Traceback" not in run.output
    assert bad_file.read_bytes() == before and lab.init_file.read_bytes() == good_blob
    assert not _rekey(lab).status().started
    status = seal_status(lab.client())
    assert (status.shares, status.threshold, status.sealed) == (4, 2, False)


def test_6_a_stale_rekey_is_cancelled_first(lab: Lab) -> None:
    old = lab.material()
    # Someone else's rekey, complete and waiting for verification; its shards are lost.
    rekey = _rekey(lab)
    started = rekey.start(3, 2)
    lost = rekey.submit(old.keys, started)
    assert isinstance(lost, list)
    lab.seen_secrets += lost
    result = _rotate(lab, shares=5, threshold=3)
    assert result.actions[0] == "cancelled a stale rekey that was in progress"
    assert result.rotated and (result.shares, result.threshold) == (5, 3)
    _track(lab)


def test_7_crash_after_the_rekey_before_the_pending_write(lab: Lab) -> None:
    old_blob, old = lab.init_file.read_bytes(), lab.material()
    child = crash_at(REKEYED, lab.server.addr, lab.init_file, lab.password_file, lab.ca_cert)
    lab.outputs.append(child.stdout + child.stderr)
    assert child.returncode == -9, child.stderr[-2000:]
    assert lab.init_file.read_bytes() == old_blob, "nothing written before the pending step"
    assert _rekey(lab).status().verifying
    result = _rotate(lab)
    assert result.rotated and not result.resumed
    assert result.actions[0] == "cancelled a stale rekey that was in progress"
    assert not set(_track(lab).keys) & set(old.keys)


def test_8_crash_after_the_pending_write_the_rerun_continues_the_verification(lab: Lab) -> None:
    old = lab.material()
    child = crash_at(PENDING_SAVED, lab.server.addr, lab.init_file, lab.password_file,
                     lab.ca_cert)
    lab.outputs.append(child.stdout + child.stderr)
    assert child.returncode == -9, child.stderr[-2000:]
    staged = _track(lab)
    assert staged.keys == old.keys and staged.pending is not None
    assert len(staged.pending.keys) == 5
    # The crash may also interrupt a verification half-way: the rerun resets that progress.
    code, _ = lab.client().call("PUT", "sys/rekey/verify", {
        "key": staged.pending.keys[0],
        "nonce": (lab.client().request("GET", "sys/rekey/verify") or {})["nonce"]})
    assert code == 200
    planned = _rotate(lab, check=True)
    assert planned.actions == ["continue the verification of the pending shards of an "
                               "interrupted rotation, then promote them"]
    assert lab.material() == staged, "check mode writes nothing"
    result = _rotate(lab)
    assert result.rotated and result.resumed
    assert result.actions[0] == ("continued the verification of the pending shards of an "
                                 "interrupted rotation")
    done = lab.material()
    assert done.keys == staged.pending.keys and done.pending is None
    assert not _rekey(lab).status().started


def test_9_crash_after_the_verification_the_pending_shards_unseal_and_get_promoted(
        lab: Lab) -> None:
    old = lab.material()
    child = crash_at(VERIFIED, lab.server.addr, lab.init_file, lab.password_file, lab.ca_cert)
    lab.outputs.append(child.stdout + child.stderr)
    assert child.returncode == -9, child.stderr[-2000:]
    staged = _track(lab)
    assert staged.keys == old.keys and staged.pending is not None
    _restart_sealed(lab)
    # Shards that are neither: one sentence, progress reset.
    junk = tuple(base64.b64encode(os.urandom(33)).decode() for _ in range(5))
    lab.seen_secrets += list(junk)
    junk_file = lab.root / "junk" / "vault-init.yml"
    save_material(junk_file, InitMaterial("unseal", 5, 3, junk).with_pending(
        PendingShards(5, 3, junk, "x")), lab.cipher)
    with pytest.raises(VaultError, match="neither the current nor the pending shards of the "
                                         "init material file unseal Vault at"):
        init_and_unseal([lab.server.addr], init_file=junk_file, cipher=lab.cipher,
                        connector=Connector(ca_cert=lab.ca_cert))
    # The role's unseal falls back to the pending shards: the vault is never lost.
    unsealed = init_and_unseal([lab.server.addr], init_file=lab.init_file, cipher=lab.cipher,
                               connector=Connector(ca_cert=lab.ca_cert))
    assert unsealed.nodes[0].action == ("unsealed with the pending shards of an interrupted "
                                        "rotation")
    result = _rotate(lab)
    assert result.rotated and result.resumed
    assert result.actions == [
        "found that Vault had already verified the pending shards of an interrupted rotation",
        "promoted the new shards in the init material file and dropped the old ones"]
    done = lab.material()
    assert done.keys == staged.pending.keys and done.pending is None
    assert not _rekey(lab).status().started


def test_10_pending_write_then_a_restart_the_old_shards_still_unseal_and_a_new_rotation_runs(
        lab: Lab) -> None:
    old = lab.material()
    child = crash_at(PENDING_SAVED, lab.server.addr, lab.init_file, lab.password_file,
                     lab.ca_cert)
    lab.outputs.append(child.stdout + child.stderr)
    assert child.returncode == -9, child.stderr[-2000:]
    staged = _track(lab)
    assert staged.pending is not None
    _restart_sealed(lab)  # the active node forgets the rekey: the pending shards never count
    unsealed = init_and_unseal([lab.server.addr], init_file=lab.init_file, cipher=lab.cipher,
                               connector=Connector(ca_cert=lab.ca_cert))
    assert unsealed.nodes[0].action == "unsealed"  # with the current (old) shards
    result = _rotate(lab)
    assert result.rotated and not result.resumed
    assert result.actions[0] == ("found that the pending shards of an interrupted rotation "
                                 "never became active; this rotation replaces them")
    done = _track(lab)
    assert done.pending is None
    assert not set(done.keys) & (set(old.keys) | set(staged.pending.keys))
    # A wrong password and a missing file: one sentence each.
    with pytest.raises(MaterialError, match=r"cannot decrypt .* \(wrong password\?\)"):
        rotate_shards(lab.server.addr, init_file=lab.init_file,
                      cipher=AnsibleVaultCipher(b"wrong"), connector=Connector())
    with pytest.raises(MaterialError, match="does not exist; the rotation needs the current "
                                            "shards"):
        _rotate(lab, lab.root / "missing.yml")


def test_11_auto_unseal_rotates_the_recovery_shards(tmp_path: Path, lab: Lab) -> None:
    """seal "static" stands in for Cloud KMS: sys/rekey-recovery-key with verification."""
    server = RekeyBaoServer(tmp_path / "kms", seal="static")
    server.start()
    try:
        client = VaultClient(server.addr)
        keys, root = initialize(client, 5, 3, recovery=True)
        lab.seen_secrets += [*keys, root]
        wait_unsealed(client, 30)
        init_file = tmp_path / "vault-init.yml"
        save_material(init_file, InitMaterial.new("recovery", 5, 3, keys, root), lab.cipher)
        result = rotate_shards(server.addr, init_file=init_file, cipher=lab.cipher,
                               connector=Connector(), shares=6, threshold=3,
                               on_secret=lab.seen_secrets.extend)
        assert result.rotated and result.key_type == "recovery" and result.seal_type == "static"
        new = load_material(init_file, lab.cipher)
        assert new is not None and (new.key_type, len(new.keys)) == ("recovery", 6)
        status = seal_status(client)
        assert (status.shares, status.threshold) == (6, 3)
        token = generate_root(client, new.keys, 3)  # the new recovery shards authorise
        lab.seen_secrets.append(token)
        revoke_self(client.with_token(token))
        with pytest.raises(VaultError, match="do not authorise a token"):
            generate_root(client, keys, 3)
        # Unseal shards for an auto-unseal server: the wrong file, said plainly.
        shamir = init_file.with_name("shamir.yml")
        save_material(shamir, InitMaterial("unseal", 6, 3, new.keys), lab.cipher)
        with pytest.raises(MaterialError, match=r"holds unseal shards but Vault at .* uses a "
                                                r"static seal that needs recovery shards"):
            rotate_shards(server.addr, init_file=shamir, cipher=lab.cipher,
                          connector=Connector())
    finally:
        server.stop()


def test_12_no_shard_or_token_in_any_output_or_in_build(lab: Lab, build_root: Path) -> None:
    playbook_runs = [o for o in lab.outputs if o.startswith("ansible-playbook [core")]
    assert len(playbook_runs) == 6 and len(lab.outputs) == 10  # + 4 crash children
    # -vv and more print each task's path (the in-process plan modules open no connection,
    # so a run refused before a module process starts shows no ESTABLISH line).
    assert all("task path: " in o for o in playbook_runs), \
        "the sweep must cover -vvv output"
    assert all("Traceback" not in o for o in lab.outputs)
    material = lab.material()
    generated = [s for s in lab.seen_secrets if s not in material.secrets()]
    secrets_ = secret_strings(material, generated)
    assert len(secrets_) >= 60
    texts = {f"run {i}": out for i, out in enumerate(lab.outputs)}
    texts |= readable_files(BUILD_DIR, build_root)
    assert any("rotation.json" in name for name in texts)
    assert sweep(texts, secrets_) == []


def test_material_keeps_pending_shards_and_masks_them(tmp_path: Path) -> None:
    cipher = AnsibleVaultCipher(b"pw")
    keys = tuple(base64.b64encode(os.urandom(33)).decode() for _ in range(5))
    new = tuple(base64.b64encode(os.urandom(33)).decode() for _ in range(4))
    staged = InitMaterial("unseal", 5, 3, keys, "s.root").with_pending(
        PendingShards(4, 2, new, "nonce-1", "2026-11-26T00:00:00+00:00"))
    target = tmp_path / "vault-init.yml"
    save_material(target, staged, cipher)
    assert load_material(target, cipher) == staged
    assert all(k in staged.secrets() and base64.b64decode(k).hex() in staged.secrets()
               for k in keys + new)
    assert not any(k in repr(staged) for k in keys + new)
    # The configure step rewrites the file without the root token: the pending shards stay.
    assert staged.without_root_token().pending == staged.pending
    promoted = staged.promoted()
    assert (promoted.keys, promoted.shares, promoted.threshold) == (new, 4, 2)
    assert promoted.pending is None and promoted.rotated_at
    with pytest.raises(MaterialError, match="there are no pending shards to promote"):
        promoted.promoted()
    broken = tmp_path / "broken.yml"
    broken.write_bytes(cipher.encrypt(
        b"vault_init: {keys_base64: [a, b], threshold: 2, shares: 2, pending: {threshold: 2}}\n"))
    with pytest.raises(MaterialError, match=r"broken\.yml has no list of shards under "
                                            r"vault_init\.pending\.keys_base64"):
        load_material(broken, cipher)


@pytest.mark.parametrize(("shares", "threshold", "message"), [
    (0, 1, "the number of shares must be between 1 and 255, not 0"),
    (256, 3, "the number of shares must be between 1 and 255, not 256"),
    (5, 6, "the threshold must be between 1 and the number of shares 5, not 6"),
    (5, 1, "a threshold of 1 with 5 shares is refused by Vault"),
])
def test_share_counts_vault_would_refuse_are_refused_first(shares: int, threshold: int,
                                                           message: str) -> None:
    with pytest.raises(VaultError, match=message):
        check_shares(shares, threshold)
    check_shares(1, 1)
