"""The project's Binary Authorization policy: its body against Google's discovery document, its
allow-list against every image the TAI namespace runs, and its apply (read, then PUT) on the
GCP TEST DOUBLE."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO
from helpers.chart_render import by_kind, containers, render, workloads
from helpers.gcp_double import serve
from helpers.project_inputs import PROJECT, global_cfg
from project_resources import binary_authorization_item, project_global_items
from tai_deploy import gcp_schema
from tai_deploy.gcp_resource import Converger
from tai_deploy.gcp_rest import RestClient, RetryPolicy, make_session

DEFAULTS = yaml.safe_load((REPO / "roles" / "project" / "defaults" / "main.yml").read_text())
POLICY_CFG: dict[str, Any] = {**DEFAULTS["project_binary_authorization"],
                              "enforced_namespaces": ["tai-system"]}
# Containers the injectors add to every TAI pod (not in the chart's manifests): the Istio proxy
# (istiod's default hub docker.io/istio) and the Vault agent (the vault chart's default
# agent image hashicorp/vault).
INJECTED = ("docker.io/istio/proxyv2:1.28.0", "hashicorp/vault:1.20.4")


def normalised(image: str) -> str:
    """An image reference as a registry sees it: Docker Hub names get docker.io/ (and library/
    for official images), the way Docker resolves a reference without a registry."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def pattern_matches(pattern: str, image: str) -> bool:
    """Binary Authorization's namePattern (discovery document, AdmissionWhitelistPattern): a
    trailing ``*`` matches within the last path segment, a trailing ``**`` also below it."""
    if pattern.endswith("**"):
        return image.startswith(pattern[:-2])
    if pattern.endswith("*"):
        return image.startswith(pattern[:-1]) and "/" not in image[len(pattern) - 1:]
    return image == pattern


def test_the_policy_body_is_a_valid_update_policy_request() -> None:
    item = binary_authorization_item(PROJECT, POLICY_CFG)
    body = item["update"]["body"]
    assert gcp_schema.method_problems("binaryauthorization.v1",
                                      "binaryauthorization.projects.updatePolicy", body) == []
    assert body["defaultAdmissionRule"] == {"evaluationMode": "ALWAYS_DENY",
                                            "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY"}
    assert body["kubernetesNamespaceAdmissionRules"] == {"tai-system": {
        "evaluationMode": "ALWAYS_DENY", "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG"}}
    # A mistyped mode is refused by the schema before anything is written.
    bad = {**body, "defaultAdmissionRule": {"evaluationMode": "ALWAYS_DENY",
                                            "enforcementMode": "ENFORCED"}}
    assert gcp_schema.method_problems("binaryauthorization.v1",
                                      "binaryauthorization.projects.updatePolicy", bad)


def test_every_image_of_the_tai_namespace_is_allowed() -> None:
    backup = {"enabled": True, "bucket": "tai-backups",
              "gcpServiceAccount": "s@p.iam.gserviceaccount.com"}
    objects = render("europe-west1", {"redis": {"backup": backup}}).objects
    images = {c["image"] for w in workloads(objects) for c in containers(w)}
    images |= {c["image"] for cj in by_kind(objects, "CronJob").values()
               for c in cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]}
    assert len(images) >= 6  # three services, redis, the exporter, the snapshot job
    patterns = POLICY_CFG["allowed_images"]
    for image in sorted(images | set(INJECTED)):
        assert any(pattern_matches(p, normalised(image)) for p in patterns), image
    # And the allow-list is not "everything".
    for image in ("docker.io/evil/redis:7.4.6", "gcr.io/other-project/governor:v1.0.0",
                  "docker.io/library/redis-fork/x:1"):
        assert not any(pattern_matches(p, image) for p in patterns), image


@pytest.fixture
def running() -> Iterator[str]:
    with serve() as (_double, url):
        yield url


def converger(url: str) -> Converger:
    def client(service: str) -> RestClient:
        return RestClient(make_session("none", url), url, service=service,
                          retry=RetryPolicy(attempts=2, base_delay=0.0))
    return Converger(client, poll_interval=0.0, sleep=lambda _: None)


def test_the_policy_replaces_the_default_once_then_is_unchanged(running: str) -> None:
    cfg = {**global_cfg(), "binary_authorization": POLICY_CFG}
    item = project_global_items(cfg)[-1]
    assert item["id"] == "binary-authorization"
    first = converger(running).converge([item])
    assert [r.action for r in first] == ["updated"]
    assert "defaultAdmissionRule.evaluationMode" in first[0].fields
    assert [r.action for r in converger(running).converge([item])] == ["unchanged"]


def test_the_double_refuses_what_google_refuses(running: str) -> None:
    import requests
    answer = requests.put(f"{running}/v1/projects/{PROJECT}/policy", timeout=10,
                          json={"defaultAdmissionRule": {"evaluationMode": "SOMETIMES"}})
    assert answer.status_code == 400
