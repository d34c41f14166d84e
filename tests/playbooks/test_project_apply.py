"""The project phase and the dns role applied from an EMPTY project against the GCP TEST DOUBLE.

The real playbooks (playbooks/project.yml, playbooks/traffic.yml) run in apply mode against the
loopback double of Service Usage, Compute, IAM, KMS, Resource Manager, Firestore and Cloud DNS:
first from a project where only Service Usage is enabled, then again with changed=0. The API
calls of each run are counted per region and printed (pytest -s shows them).

The dns role publishes a region only once its gateway's certificate is Ready, which it reads from
the region's cluster: each region's kube context points at a Kubernetes API test double that
holds cert-manager's CRDs, a ClusterIssuer and the gateway's Certificate, issued by the double's
minimal cert-manager controller (tests/helpers/k8s_double/cert_manager.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.ansible_run import PlaybookRun, run_playbook
from helpers.gateway_cluster import gateway_cluster
from helpers.gcp_double import GcpDouble, serve
from helpers.k8s_double import KubeApiDouble

PROJECT = "tai-production"
REGION = "europe-west1"
REGISTRY = "projects/ggen-project/locations/us/repositories/gcr.io"
ZONES = ("europe-west1-b", "europe-west1-c", "europe-west1-d")
SERVICES = ("serviceusage.googleapis.com", "compute.googleapis.com", "iam.googleapis.com",
            "cloudkms.googleapis.com", "cloudresourcemanager.googleapis.com",
            "firestore.googleapis.com", "dns.googleapis.com", "storage.googleapis.com",
            "binaryauthorization.googleapis.com", "artifactregistry.googleapis.com")


KUBECONFIG: dict[str, str] = {}


def gateway_certificate(directory: Path) -> KubeApiDouble:
    """A cluster double whose gateway certificate (istio-system/tai-tls-cert) is issued, and a
    kubeconfig naming it under every region's context."""
    cluster, kubeconfig = gateway_cluster(directory, PROJECT, (REGION, "us-central1"))
    KUBECONFIG["KUBECONFIG"] = str(kubeconfig)
    return cluster


def apply(url: str, build: Path, *playbooks: str, region: str = REGION,
          extra: dict[str, object] | None = None) -> PlaybookRun:
    endpoints = dict.fromkeys(SERVICES, url)
    variables = {"tai_apply": True, "tai_build_root": str(build),
                 "project_api_endpoints": endpoints, "project_auth_kind": "none",
                 "project_poll_interval": 0, "dns_api_endpoints": endpoints,
                 "dns_api_endpoint": url, "dns_auth_kind": "none",
                 "dns_change_poll_interval": 0,
                 # Google allocates the address: no expected value in a new project
                 "tai_region_lb_address": "", **(extra or {})}
    return run_playbook(*playbooks, "-l", region, "-e", json.dumps(variables), env=KUBECONFIG)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GcpDouble, str, Path]]:
    with serve(GcpDouble.empty_project(op_polls=2)) as (double, url):
        for zone in ZONES:
            double.apis.add_neg(PROJECT, zone, "tai-istio-ingress-443")
        # the registry of the TAI images (gcr.io/ggen-project): another project's Artifact
        # Registry gcr.io repository, whose owners already have their bindings
        double.apis.add_repository("ggen-project", "us", "gcr.io")
        double.apis.add_binding(REGISTRY, "roles/artifactregistry.writer",
                                "group:ggen-release@example.com")
        cluster = gateway_certificate(tmp_path_factory.mktemp("cluster"))
        try:
            yield double, url, tmp_path_factory.mktemp("build")
        finally:
            cluster.stop()


def calls(double: GcpDouble, start: int) -> Counter[str]:
    """Reads and writes since ``start`` (getIamPolicy is a POST that only reads)."""
    return Counter("read" if m == "GET" or p.endswith(":getIamPolicy") else "write"
                   for m, p, _ in double.requests[start:])


@pytest.mark.playbook
def test_first_apply_then_a_rerun_changes_nothing(project: tuple[GcpDouble, str, Path]) -> None:
    double, url, build = project
    first = apply(url, build, "playbooks/project.yml")
    assert first.returncode == 0, first.output[-4000:]
    assert first.recap(REGION)["changed"] > 0
    project_calls = calls(double, 0)
    # before any cluster exists there is no workload identity pool: one sentence, no traceback
    early = apply(url, build, "playbooks/identities.yml")
    assert early.returncode != 0
    assert f"Identity Pool does not exist ({PROJECT}.svc.id.goog)" in " ".join(
        early.output.split())
    assert "Traceback" not in early.output
    start = len(double.requests)
    double.add_cluster(PROJECT, REGION, "tai-cluster")  # what clusters.yml creates
    after = apply(url, build, "playbooks/identities.yml", "playbooks/traffic.yml")
    assert after.returncode == 0, after.output[-4000:]
    first_calls = project_calls + calls(double, start)  # the refused early run not counted
    # what the plan promised now exists
    res = double.apis.resources
    assert f"/compute/v1/projects/{PROJECT}/global/networks/tai-vpc" in res
    subnet = res[f"/compute/v1/projects/{PROJECT}/regions/{REGION}/subnetworks/tai-{REGION}"]
    assert subnet["ipCidrRange"] == "10.16.0.0/20"
    assert [r["rangeName"] for r in subnet["secondaryIpRanges"]] == ["pods", "services"]
    router = res[f"/compute/v1/projects/{PROJECT}/regions/{REGION}/routers/tai-{REGION}-router"]
    assert router["nats"][0]["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    assert f"projects/{PROJECT}/databases/tai-firestore" in res
    for account in ("tai-gke-nodes", "tai-governor", "tai-coordinator", "tai-scheduler",
                    "fluent-bit", "vault-server"):
        assert f"projects/{PROJECT}/serviceAccounts/{account}@{PROJECT}.iam.gserviceaccount.com" \
            in res
    governor = f"tai-governor@{PROJECT}.iam.gserviceaccount.com"
    wi = double.apis.policies[f"projects/{PROJECT}/serviceAccounts/{governor}"]
    assert wi["bindings"] == [{"role": "roles/iam.workloadIdentityUser", "members": [
        f"serviceAccount:{PROJECT}.svc.id.goog[tai-system/governor]"]}]
    # the region's backup bucket: a retention policy, no versioning, written only by the two
    # backup identities (bound to their CronJobs' Kubernetes service accounts)
    bucket = double.apis.storage.buckets[f"tai-{PROJECT}-{REGION}-backups"]
    assert bucket["retentionPolicy"]["retentionPeriod"] == str(30 * 86400)
    assert bucket["versioning"] == {"enabled": False}
    writers = [b for b in double.apis.storage.policies[bucket["name"]]["bindings"]
               if b["role"] == "roles/storage.objectCreator"]
    assert writers == [{"role": "roles/storage.objectCreator", "members": [
        f"serviceAccount:{a}-backup@{PROJECT}.iam.gserviceaccount.com"
        for a in ("redis", "vault")]}]
    redis_wi = double.apis.policies[
        f"projects/{PROJECT}/serviceAccounts/redis-backup@{PROJECT}.iam.gserviceaccount.com"]
    assert redis_wi["bindings"][0]["members"] == [
        f"serviceAccount:{PROJECT}.svc.id.goog[tai-system/redis-snapshot]"]
    # only the backup identities write to the bucket: Cloud Storage's convenience bindings of
    # the project's owners, editors and viewers are gone
    assert {b["role"] for b in double.apis.storage.policies[bucket["name"]]["bindings"]} == {
        "roles/storage.objectCreator"}
    # the nodes read the images' registry: on its repository, next to its owners' bindings
    assert double.apis.policies[REGISTRY]["bindings"] == [
        {"role": "roles/artifactregistry.writer", "members": ["group:ggen-release@example.com"]},
        {"role": "roles/artifactregistry.reader",
         "members": [f"serviceAccount:tai-gke-nodes@{PROJECT}.iam.gserviceaccount.com"]}]
    project_roles = {b["role"]: b["members"]
                     for b in double.apis.policies[f"projects/{PROJECT}"]["bindings"]}
    assert project_roles["roles/datastore.user"] == sorted(
        f"serviceAccount:tai-{s}@{PROJECT}.iam.gserviceaccount.com"
        for s in ("coordinator", "governor", "scheduler"))
    key = (f"projects/{PROJECT}/locations/{REGION}/keyRings/tai-gke/cryptoKeys/gke-secrets")
    assert double.apis.policies[key]["bindings"] == [{
        "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        "members": ["serviceAccount:service-123456789012@container-engine-robot.iam."
                    "gserviceaccount.com"]}]
    # the address Google allocated is used by the forwarding rule and the geo DNS item
    address = res[f"/compute/v1/projects/{PROJECT}/global/addresses/tai-{REGION}-lb-address"]
    rule = res[f"/compute/v1/projects/{PROJECT}/global/forwardingRules/tai-{REGION}-lb"]
    assert rule["IPAddress"] == address["address"]
    rrset = double.rrset(PROJECT, "tai-example-com", "api.tai.example.com.")
    assert rrset is not None
    assert rrset["routingPolicy"]["geo"]["items"] == [
        {"location": REGION, "rrdatas": [address["address"]],
         "kind": "dns#rRSetRoutingPolicyGeoPolicyGeoPolicyItem"}]

    start = len(double.requests)
    again = apply(url, build, "playbooks/project.yml", "playbooks/identities.yml",
                  "playbooks/traffic.yml")
    assert again.returncode == 0, again.output[-4000:]
    assert again.recap(REGION)["changed"] == 0, again.output[-4000:]
    rerun = calls(double, start)
    assert rerun["write"] == 0
    print(f"\n{REGION} from an empty project: {sum(first_calls.values())} API calls "
          f"({first_calls['write']} writes); no-op rerun: {sum(rerun.values())} calls "
          f"({rerun['write']} writes)")

    # a second region adds only its own objects; project-wide ones are read and unchanged
    start = len(double.requests)
    for zone in ("us-central1-a", "us-central1-b", "us-central1-c"):
        double.apis.add_neg(PROJECT, zone, "tai-istio-ingress-443")
    double.add_cluster(PROJECT, "us-central1", "tai-cluster")
    second = apply(url, build, "playbooks/project.yml", "playbooks/identities.yml",
                   "playbooks/traffic.yml", region="us-central1")
    assert second.returncode == 0, second.output[-4000:]
    added = calls(double, start)
    start = len(double.requests)
    second_again = apply(url, build, "playbooks/project.yml", "playbooks/identities.yml",
                         "playbooks/traffic.yml", region="us-central1")
    assert second_again.recap("us-central1")["changed"] == 0
    print(f"us-central1 added to the project: {sum(added.values())} API calls "
          f"({added['write']} writes); no-op rerun: {sum(calls(double, start).values())} calls")


@pytest.mark.playbook
def test_an_expected_address_that_google_did_not_allocate_is_one_sentence(
        project: tuple[GcpDouble, str, Path]) -> None:
    double, url, build = project
    run = apply(url, build, "playbooks/traffic.yml", extra={"tai_region_lb_address": "35.2.2.2"})
    assert run.returncode != 0
    text = " ".join(run.output.split())
    allocated = double.apis.resources[
        f"/compute/v1/projects/{PROJECT}/global/addresses/tai-{REGION}-lb-address"]["address"]
    assert (f"global address tai-{REGION}-lb-address ({REGION}) holds address {allocated}, not "
            f"35.2.2.2 (tai_region_lb_address of {REGION}); Google allocated {allocated}") in text
    assert "Traceback" not in run.output
