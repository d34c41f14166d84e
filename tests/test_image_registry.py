"""Read access of the GKE nodes to the registry the images come from.

The repository of each image is derived as Artifact Registry documents it (gcr.io hosts are
served by "gcr.io" repositories: https://cloud.google.com/artifact-registry/docs/transition/
gcr-repositories), the grant is planned and checked against artifactregistry v1's discovery
document, and applied against the GCP TEST DOUBLE: created once, unchanged on a rerun, someone
else's binding kept, a registry whose IAM we may not edit refused in one sentence.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO
from helpers.gcp_double import serve
from helpers.project_inputs import PROJECT, global_cfg
from project_resources import chart_images, image_registry_items, project_global_items
from tai_deploy.gcp_resource import ConvergeError, Converger
from tai_deploy.gcp_rest import RestClient, RetryPolicy, make_session
from tai_deploy.gcp_schema import declared_problems
from tai_deploy.image_registry import RegistryError, Repository, repositories, repository_of

NODES = f"tai-gke-nodes@{PROJECT}.iam.gserviceaccount.com"
GCR = "projects/ggen-project/locations/us/repositories/gcr.io"


@pytest.mark.parametrize(("image", "repo"), [
    ("gcr.io/ggen-project/governor", Repository("ggen-project", "us", "gcr.io")),
    ("eu.gcr.io/ggen-project/governor:v1", Repository("ggen-project", "europe", "eu.gcr.io")),
    ("asia.gcr.io/ggen-project/a/b@sha256:00", Repository("ggen-project", "asia",
                                                          "asia.gcr.io")),
    ("us.gcr.io/ggen-project/x", Repository("ggen-project", "us", "us.gcr.io")),
    ("europe-west1-docker.pkg.dev/tai-images/tai/governor:v1",
     Repository("tai-images", "europe-west1", "tai")),
    ("python", None), ("docker.io/library/redis", None), ("quay.io/org/img", None),
])
def test_the_repository_of_an_image(image: str, repo: Repository | None) -> None:
    assert repository_of(image) == repo


@pytest.mark.parametrize("image", ["gcr.io/governor", "gcr.io/Bad_Project/x",
                                   "us-docker.pkg.dev/tai-images/governor"])
def test_a_malformed_google_image_is_one_sentence(image: str) -> None:
    with pytest.raises(RegistryError, match=f"^The image {image} "):
        repository_of(image)


def test_the_chart_images_come_from_one_repository_of_another_project() -> None:
    values = yaml.safe_load((REPO / "charts/tai-chart/values.yaml").read_text())
    images = chart_images(values, {})
    assert images == [f"gcr.io/ggen-project/{s}" for s in ("coordinator", "governor",
                                                           "scheduler")]
    assert repositories(images) == [Repository("ggen-project", "us", "gcr.io")]
    # the inventory's tai_services_values override the chart's
    moved = chart_images(values, {"services": {"governor": {"image": {
        "repository": "europe-west1-docker.pkg.dev/tai-images/tai/governor"}}}})
    assert [r.resource for r in repositories(moved)] == [
        f"/v1/{GCR}", "/v1/projects/tai-images/locations/europe-west1/repositories/tai"]


def _cfg(**extra: Any) -> dict[str, Any]:
    return {"images": ["gcr.io/ggen-project/governor", "gcr.io/ggen-project/scheduler",
                       "docker.io/library/redis"], "member": NODES, **extra}


def test_the_grant_is_planned_once_and_checked_against_the_discovery_document() -> None:
    items = project_global_items({**global_cfg(), "image_registry": _cfg()})
    grants = [i for i in items if i["id"].startswith("registry-iam-")]
    assert [(i["resource"], i["bindings"]) for i in grants] == [
        (f"/v1/{GCR}", [{"role": "roles/artifactregistry.reader",
                         "members": [f"serviceAccount:{NODES}"]}])]
    assert declared_problems("items", items) == []
    broken = {**grants[0], "bindings": [{"role": "roles/artifactregistry.reader",
                                         "member": [f"serviceAccount:{NODES}"]}]}
    found = declared_problems("items", [broken])
    assert len(found) == 1 and "member" in found[0], found
    assert image_registry_items(PROJECT, _cfg(grant=False)) == []


def _converger(url: str) -> Converger:
    def client(service: str) -> RestClient:
        return RestClient(make_session("none", url), url, service=service,
                          retry=RetryPolicy(attempts=1, base_delay=0.0))
    return Converger(client, poll_interval=0.0, sleep=lambda _: None)


def test_the_grant_is_made_once_and_keeps_the_registry_owners_bindings() -> None:
    items = image_registry_items(PROJECT, _cfg())
    with serve() as (double, url):
        double.apis.add_repository("ggen-project", "us", "gcr.io")
        owners = "group:ggen-release@example.com"
        double.apis.add_binding(GCR, "roles/artifactregistry.writer", owners)
        double.apis.add_binding(GCR, "roles/artifactregistry.reader", "group:other@example.com")
        first = _converger(url)
        first.converge(items)
        assert [r.action for r in first.results] == ["updated"]
        policy = {b["role"]: b["members"] for b in double.apis.policies[GCR]["bindings"]}
        assert policy == {"roles/artifactregistry.writer": [owners],
                          "roles/artifactregistry.reader": ["group:other@example.com",
                                                            f"serviceAccount:{NODES}"]}
        start = len(double.requests)
        again = _converger(url)
        again.converge(items)
        assert [r.action for r in again.results] == ["unchanged"]
        assert [f"{m} {p}" for m, p, _ in double.requests[start:]] == [
            f"GET /v1/{GCR}:getIamPolicy?options.requestedPolicyVersion=3"]


def test_a_registry_whose_iam_we_may_not_edit_says_who_must_grant_what() -> None:
    items = image_registry_items(PROJECT, _cfg())
    with serve() as (double, url):
        double.apis.add_repository("ggen-project", "us", "gcr.io")
        double.fail("GET", r"repositories/gcr\.io:getIamPolicy", 403,
                    "Permission 'artifactregistry.repositories.getIamPolicy' denied on resource")
        with pytest.raises(ConvergeError) as caught:
            _converger(url).converge(items)
    assert str(caught.value) == (
        "Cannot edit the IAM policy of Artifact Registry repository gcr.io (us) of project "
        "ggen-project: permission denied (Permission 'artifactregistry.repositories."
        "getIamPolicy' denied on resource); an administrator of project ggen-project must grant "
        f"roles/artifactregistry.reader on repository gcr.io (location us) to serviceAccount:"
        f"{NODES}, then set project_image_registry_grant: false.")
