"""scripts/tai-gke-token: GKE credentials from Application Default Credentials, without gcloud.

Real google-auth signs and exchanges the credentials; the token endpoint and the Kubernetes
API's /version are loopback TEST DOUBLES (tests/helpers/token_lab.py) because neither Google
nor a kube-apiserver can run here. The real kubectl (.venv/bin) runs the exec plugin from the
kubeconfig that the gke_kubeconfig core writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from helpers.ansible_run import BIN, REPO
from helpers.token_lab import (
    TokenEndpoint,
    api_server,
    service_account_key,
    token_endpoint,
)
from tai_deploy.gke_kubeconfig import Entry, ensure

SCRIPT = REPO / "scripts" / "tai-gke-token"
CONTEXT = "gke_tai-production_europe-west1_tai-cluster"


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with token_endpoint() as state:
        yield state


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No ADC but what the test gives: a bare HOME, no gcloud config, no metadata server."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_", "KUBECONFIG"))}
    env.update(HOME=str(tmp / "home"), NO_GCE_CHECK="True", **extra)
    (tmp / "home").mkdir(exist_ok=True)
    return env


def run_token(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_service_account_key_gives_an_exec_credential(tmp_path: Path,
                                                        endpoint: TokenEndpoint) -> None:
    key = service_account_key(tmp_path / "key.json", endpoint)
    before = datetime.now(UTC)
    proc = run_token(clean_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key)))
    assert proc.returncode == 0, proc.stderr
    cred = json.loads(proc.stdout)
    assert cred["apiVersion"] == "client.authentication.k8s.io/v1"
    assert cred["kind"] == "ExecCredential"
    assert cred["status"]["token"] == endpoint.issued[-1]
    expires = datetime.strptime(cred["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"
                                ).replace(tzinfo=UTC)
    # google-auth keeps a few minutes of margin on the 3599 s the endpoint granted.
    assert before + timedelta(minutes=40) < expires < before + timedelta(hours=1, minutes=1)
    assert endpoint.requests[-1]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_no_credentials_is_one_sentence(tmp_path: Path) -> None:
    proc = run_token(clean_env(tmp_path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "tai-gke-token found no Application Default Credentials: set "
        "GOOGLE_APPLICATION_CREDENTIALS to a key or authorized_user file, run `gcloud auth "
        "application-default login` once, or run on a machine with a service account.")


def test_a_refused_key_is_one_sentence(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    key = service_account_key(tmp_path / "key.json", endpoint, register=False)
    proc = run_token(clean_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key)))
    assert proc.returncode == 1 and proc.stdout == ""
    line = proc.stderr.strip()
    assert line.startswith("tai-gke-token could not get an access token from the Application "
                           "Default Credentials: ")
    assert "invalid_grant" in line and "\n" not in line and "Traceback" not in proc.stderr


def kubeconfig(tmp: Path, server: str, ca_data: str) -> Path:
    path = tmp / "kubeconfig"
    ensure(path, Entry(CONTEXT, server, ca_data, sys.executable, (str(SCRIPT),)))
    return path


def kubectl(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(config), "--context",
                           CONTEXT, *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_kubectl_runs_the_plugin_and_the_server_sees_the_token(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    key = service_account_key(tmp_path / "key.json", endpoint)
    env = clean_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key))
    with api_server(tmp_path, endpoint) as api:
        config = kubeconfig(tmp_path, api.url, api.ca_data)
        view = kubectl(config, env, "config", "view", "--raw", "-o", "json")
        assert view.returncode == 0, view.stderr
        user = json.loads(view.stdout)["users"][0]["user"]["exec"]
        assert user["command"] == sys.executable and user["args"] == [str(SCRIPT)]
        assert "token" not in yaml.safe_load(config.read_text())["users"][0]["user"]
        got = kubectl(config, env, "get", "--raw", "/version")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["gitVersion"] == "v1.34.1-gke.1000"
        assert api.seen and api.seen[-1] == f"Bearer {endpoint.issued[-1]}"


def test_kubectl_reports_the_plugins_sentence_when_credentials_fail(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    with api_server(tmp_path, endpoint) as api:
        config = kubeconfig(tmp_path, api.url, api.ca_data)
        got = kubectl(config, clean_env(tmp_path), "get", "--raw", "/version")
        assert got.returncode != 0
        assert "tai-gke-token found no Application Default Credentials" in got.stderr
        assert api.seen == []  # nothing reached the server without a token
