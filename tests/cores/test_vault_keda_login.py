"""KEDA's Vault login (TriggerAuthentication keda-redis) against a real OpenBao server.

The Kubernetes auth role keda-redis is bound to an audience. KEDA's hashiCorpVault provider
sends the token in the file its TriggerAuthentication names (credential.serviceAccount) and
asks for no audience itself, so the login works only if that file holds a token of the bound
audience. Both halves come from the project's own data: the role and its policy from the
vault role's defaults (what vault_configure sends), the token file and the projected volume
behind it from the autoscaling role's filters with that role's defaults (what the plan renders
for the KEDA release and the TriggerAuthentication). OpenBao checks each login with the
TokenReview of the Kubernetes API TEST DOUBLE of tests/helpers/token_review.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml
from helpers.token_review import API_AUDIENCE, TokenApi, token_api
from helpers.vault_server import BaoServer
from tai_deploy.inventory import Context, role_problems
from tai_deploy.vault_api import (
    Configuration,
    VaultClient,
    VaultError,
    apply_configuration,
    create_orphan_token,
    generate_root,
    revoke_self,
)
from tai_deploy.vault_bootstrap import Connector, init_and_unseal
from tai_deploy.vault_secrets import AnsibleVaultCipher, load_material

pytestmark = pytest.mark.xdist_group("vault_keda_login")

REPO = Path(__file__).resolve().parents[2]
CIPHER = AnsibleVaultCipher(b"test-password")


def _defaults(role: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (REPO / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
    return data


def _filters() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tai_autoscaling", REPO / "plugins" / "filter" / "tai_autoscaling.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VAULT = _defaults("vault")
AUTOSCALING = _defaults("autoscaling")
KEDA_NAMESPACE = AUTOSCALING["autoscaling_keda_namespace"]
REDIS_AUTH = AUTOSCALING["autoscaling_keda_redis_auth"]


def keda_role() -> dict[str, Any]:
    """auth/kubernetes/role/keda-redis as the vault role's defaults define it."""
    role = dict(VAULT["vault_default_kubernetes_roles"]["keda-redis"])
    # the one templated field: the vault role's KEDA namespace, the autoscaling role's too
    assert role["bound_service_account_namespaces"] == ["{{ vault_keda_namespace }}"]
    assert VAULT["vault_keda_namespace"] == KEDA_NAMESPACE
    role["bound_service_account_namespaces"] = [KEDA_NAMESPACE]
    return role


def keda_token_audience() -> tuple[str, str]:
    """The file KEDA's TriggerAuthentication logs in with, and the audience of the projected
    token the KEDA release mounts there (the kubelet requests a token of that audience)."""
    filters = _filters()
    scaled = [{"kind": "ScaledObject", "spec": {"triggers": [
        {"type": "redis-cluster", "authenticationRef": {"name": REDIS_AUTH["name"]}}]}}]
    auth = filters.tai_keda_trigger_authentications(
        scaled, namespace="tai-system", owner_labels={}, redis_auth=REDIS_AUTH)[0]
    vault = auth["spec"]["hashiCorpVault"]
    assert (vault["authentication"], vault["role"]) == ("kubernetes", "keda-redis")
    path = PurePosixPath(vault["credential"]["serviceAccount"])
    values = filters.tai_keda_releases({"chart": "keda", "repository": "r", "version": "2.18.1"},
                                       KEDA_NAMESPACE, "vault-ca",
                                       REDIS_AUTH["vault_audience"])[0]["values"]
    mount = next(m for m in values["volumes"]["keda"]["extraVolumeMounts"]
                 if PurePosixPath(m["mountPath"]) == path.parent)
    volume = next(v for v in values["volumes"]["keda"]["extraVolumes"]
                  if v["name"] == mount["name"])
    source = next(s["serviceAccountToken"] for s in volume["projected"]["sources"]
                  if s.get("serviceAccountToken", {}).get("path") == path.name)
    return str(path), str(source["audience"])


@dataclass
class Lab:
    server: BaoServer
    api: TokenApi
    mount: str

    def login(self, jwt: str, role: str = "keda-redis") -> str:
        answer = VaultClient(self.server.addr).request(
            "POST", f"auth/{self.mount}/login", {"role": role, "jwt": jwt}) or {}
        return str(answer["auth"]["client_token"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("vault-keda")
    server = BaoServer(root / "server")
    server.start()
    try:
        with token_api() as api:
            api.add_account(KEDA_NAMESPACE, "keda-operator")
            api.add_account(KEDA_NAMESPACE, "keda-metrics-server")
            init_file = root / "vault-init.yml"
            init_and_unseal([server.addr], init_file=init_file, cipher=CIPHER,
                            connector=Connector())
            material = load_material(init_file, CIPHER)
            assert material is not None
            root_token = generate_root(VaultClient(server.addr), material.keys,
                                       material.threshold)
            token = create_orphan_token(VaultClient(server.addr, token=root_token),
                                        policies=["root"], ttl="5m", display_name="test")
            revoke_self(VaultClient(server.addr, token=root_token))
            vault = VaultClient(server.addr, token=token)
            mount = VAULT["vault_kubernetes_auth_path"]
            kv = VAULT["vault_kv_mount"]
            # Vault runs in the cluster in production (its own CA and reviewer token); here the
            # API server is the double, so the login JWT itself reviews (no reviewer JWT).
            apply_configuration(vault, Configuration.from_mapping({
                "secrets_engines": [{"path": kv, "type": "kv", "options": {"version": "2"}}],
                "auth_methods": [{"path": mount, "type": "kubernetes"}],
                "policies": [{"name": "keda-redis",
                              "policy": VAULT["vault_default_policies"]["keda-redis"]}],
                "endpoints": [
                    {"path": f"auth/{mount}/config",
                     "data": {"kubernetes_host": api.url, "kubernetes_ca_cert": api.ca_pem,
                              "disable_local_ca_jwt": True}},
                    {"path": f"auth/{mount}/role/keda-redis", "data": keda_role()}]}))
            for user in ("keda", "scheduler"):
                vault.request("POST", f"{kv}/data/redis/{user}",
                              {"data": {"password": f"{user}-password"}})
            revoke_self(vault)
            yield Lab(server, api, mount)
    finally:
        server.stop()


def test_the_role_is_bound_to_the_audience_of_the_token_keda_sends() -> None:
    path, audience = keda_token_audience()
    assert keda_role()["audience"] == audience == "vault"
    # not the pod's default token, whose audience is the API server's
    assert path != "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_keda_logs_in_with_its_projected_token_and_reads_its_password_only(lab: Lab) -> None:
    _, audience = keda_token_audience()
    token = lab.login(lab.api.mint(KEDA_NAMESPACE, "keda-operator", [audience]))
    # OpenBao asked the API server to review the token for the role's audience
    assert lab.api.reviews[-1]["audiences"] == [audience]
    vault = VaultClient(lab.server.addr, token=token)
    secret = vault.request("GET", REDIS_AUTH["vault_secret_path"]) or {}
    assert secret["data"]["data"] == {"password": "keda-password"}
    with pytest.raises(VaultError, match="403"):
        vault.request("GET", "tai/data/redis/scheduler")


def test_a_token_for_the_api_server_is_refused(lab: Lab) -> None:
    # the operator's default pod token (audience: the API server's), which every client of the
    # API server could replay: refused before any TokenReview
    reviews = len(lab.api.reviews)
    default_token = lab.api.mint(KEDA_NAMESPACE, "keda-operator")
    with pytest.raises(VaultError, match=r"HTTP 403 \(invalid audience \(aud\) claim"):
        lab.login(default_token)
    assert len(lab.api.reviews) == reviews
    assert API_AUDIENCE != "vault"


def test_another_account_of_the_keda_namespace_is_refused(lab: Lab) -> None:
    other = lab.api.mint(KEDA_NAMESPACE, "keda-metrics-server", ["vault"])
    with pytest.raises(VaultError, match="403"):
        lab.login(other)


def test_an_empty_audience_is_refused_in_one_sentence() -> None:
    # the KEDA release would mount no token while the TriggerAuthentication names its file
    inputs = {"autoscaling_keda_redis_auth": {**REDIS_AUTH, "vault_audience": ""}}
    assert [p for p in role_problems("autoscaling", inputs, Context(region="europe-west1"))
            if "vault_audience" in p] == [
        "autoscaling_keda_redis_auth.vault_audience of region europe-west1 is empty; KEDA's "
        "operator logs in to Vault with a projected token of that audience, the audience of "
        "the Vault role it names (vault_role; the vault role's keda-redis is bound to vault)."]
    assert not [p for p in role_problems("autoscaling", {"autoscaling_keda_redis_auth":
                                                         REDIS_AUTH},
                                         Context(region="europe-west1"))
                if "vault_audience" in p]
