"""The kubeconfig entry that replaces `gcloud container clusters get-credentials`.

That kubectl really runs the exec plugin is tested in tests/cores/test_gke_token.py."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from tai_deploy.gke_kubeconfig import Entry, KubeconfigError, ensure

CA = base64.b64encode(b"ca").decode()
CONTEXT = "gke_tai-production_europe-west1_tai-cluster"


PYTHON, SCRIPT = "/opt/tai/.venv/bin/python", "/opt/tai/scripts/tai-gke-token"


def entry(server: str = "https://203.0.113.10", context: str = CONTEXT) -> Entry:
    return Entry(context, server, CA, PYTHON, (SCRIPT,))


def test_entry_uses_the_token_command_and_keeps_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://10.0.0.1"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}]}))
    outcome = ensure(path, entry())
    assert outcome.changed
    cfg = yaml.safe_load(path.read_text())
    assert [c["name"] for c in cfg["clusters"]] == [CONTEXT, "other"]
    assert cfg["current-context"] == "other"  # roles name their context explicitly
    cluster = next(c for c in cfg["clusters"] if c["name"] == CONTEXT)["cluster"]
    assert cluster == {"server": "https://203.0.113.10", "certificate-authority-data": CA}
    user = next(u for u in cfg["users"] if u["name"] == CONTEXT)["user"]
    assert user["exec"]["command"] == PYTHON and user["exec"]["args"] == [SCRIPT]
    assert user["exec"]["apiVersion"] == "client.authentication.k8s.io/v1"
    assert user["exec"]["interactiveMode"] == "Never"  # required by the v1 exec API
    assert "token" not in user
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_second_run_is_unchanged_and_a_new_endpoint_updates(tmp_path: Path) -> None:
    path = tmp_path / "config"
    assert ensure(path, entry()).changed
    mtime = path.stat().st_mtime_ns
    assert not ensure(path, entry()).changed
    assert path.stat().st_mtime_ns == mtime
    assert ensure(path, entry(server="https://203.0.113.11")).changed
    cfg = yaml.safe_load(path.read_text())
    assert len(cfg["clusters"]) == 1
    assert cfg["clusters"][0]["cluster"]["server"] == "https://203.0.113.11"


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    outcome = ensure(path, entry(), check_mode=True)
    assert outcome.changed and CONTEXT in outcome.after
    assert not path.exists()


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match=r"^server 'http://x' must be an https:// URL"):
        ensure(tmp_path / "config", entry(server="http://x"))
    with pytest.raises(KubeconfigError, match="must be the base64 CA certificate"):
        ensure(tmp_path / "config", Entry(CONTEXT, "https://x", "not base64!"))
    bad = tmp_path / "bad"
    bad.write_text("- a list\n")
    with pytest.raises(KubeconfigError, match="is not a kubeconfig"):
        ensure(bad, entry())


def test_the_dns_endpoint_entry_has_no_ca(tmp_path: Path) -> None:
    # The DNS-based endpoint presents a publicly trusted certificate: no CA is pinned.
    path = tmp_path / "config"
    ensure(path, Entry(CONTEXT, "https://gke-0123.europe-west1.gke.goog", "", PYTHON, (SCRIPT,)))
    cfg = yaml.safe_load(path.read_text())
    assert cfg["clusters"][0]["cluster"] == {"server": "https://gke-0123.europe-west1.gke.goog"}
