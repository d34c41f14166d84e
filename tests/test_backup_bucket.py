"""The backup bucket's body and IAM, checked against Google's discovery documents (storage.v1,
iam.v1 inside google-api-python-client), and the rule that only the backup identities write."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO
from tai_deploy.backup_bucket import (
    READER_ROLE,
    WRITER_ROLE,
    BucketError,
    bucket_bindings,
    bucket_body,
    identities,
    service_accounts,
    workload_identity_bindings,
)

DOCS = next((REPO / ".venv" / "lib").glob("python3*/site-packages/googleapiclient/"
                                            "discovery_cache/documents"))
STORAGE = json.loads((DOCS / "storage.v1.json").read_text())
IAM = json.loads((DOCS / "iam.v1.json").read_text())
BACKUPS = yaml.safe_load((REPO / "group_vars/all/backups.yml").read_text())
PROJECT = "tai-production"


def problems(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str) -> list[str]:
    """Every field of value must be declared by the discovery schema, with its type."""
    if "$ref" in schema:
        schema = doc["schemas"][schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        out = []
        for key, item in value.items():
            if "properties" in schema:
                if key not in schema["properties"]:
                    out.append(f"{where}.{key}: not in the schema")
                    continue
                out += problems(item, schema["properties"][key], doc, f"{where}.{key}")
            elif "additionalProperties" in schema:
                out += problems(item, schema["additionalProperties"], doc, f"{where}.{key}")
        return out
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [p for i, v in enumerate(value) for p in problems(v, schema["items"], doc,
                                                                 f"{where}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: int64 and strings travel as JSON strings"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value} not in {schema['enum']}"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: not a boolean"]
    if kind == "integer":
        return [] if isinstance(value, int) and not isinstance(value, bool) else [
            f"{where}: not an integer"]
    return [f"{where}: unknown schema type {kind}"]


WRITERS = identities(BACKUPS["tai_backup_identities"])


@pytest.mark.parametrize("protection", ["retention-policy", "versioning"])
def test_bucket_body_is_a_storage_v1_bucket(protection: str) -> None:
    body = bucket_body(PROJECT, "europe-west1", retention_days=30, protection=protection)
    assert problems(body, {"$ref": "Bucket"}, STORAGE, "Bucket") == []
    assert body["name"] == "tai-tai-production-europe-west1-backups"
    assert body["iamConfiguration"] == {"uniformBucketLevelAccess": {"enabled": True},
                                        "publicAccessPrevention": "enforced"}
    if protection == "retention-policy":
        assert body["retentionPolicy"] == {"retentionPeriod": str(30 * 86400)}
        assert "lifecycle" not in body
    else:
        assert body["versioning"] == {"enabled": True} and "retentionPolicy" not in body
    # Cloud Storage refuses versioning together with a retention policy.
    assert not (body.get("retentionPolicy") and body["versioning"]["enabled"])


def test_only_the_two_backup_identities_write_and_readers_only_read() -> None:
    bindings = bucket_bindings(PROJECT, WRITERS, ["group:tai-sre@example.com"])
    policy = {"bindings": bindings}
    assert problems(policy, {"$ref": "Policy"}, STORAGE, "Policy") == []
    assert bindings == [
        {"role": WRITER_ROLE, "members": [
            "serviceAccount:redis-backup@tai-production.iam.gserviceaccount.com",
            "serviceAccount:vault-backup@tai-production.iam.gserviceaccount.com"]},
        {"role": READER_ROLE, "members": ["group:tai-sre@example.com"]}]
    assert bucket_bindings(PROJECT, WRITERS, []) == bindings[:1]


def test_service_accounts_and_workload_identity_are_iam_v1_bodies() -> None:
    for body in service_accounts(PROJECT, WRITERS):
        assert problems(body, {"$ref": "CreateServiceAccountRequest"}, IAM, "request") == []
    vault = next(w for w in WRITERS if w.kind == "vault")
    bindings = workload_identity_bindings(PROJECT, vault)
    assert problems({"bindings": bindings}, {"$ref": "Policy"}, IAM, "Policy") == []
    assert bindings[0]["members"] == [
        "serviceAccount:tai-production.svc.id.goog[vault/vault-snapshot]"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: bucket_bindings(PROJECT, WRITERS, ["alice@example.com"]), "not an IAM member"),
    (lambda: bucket_body(PROJECT, "europe-west1", retention_days=0), "between 1 and 36500"),
    (lambda: bucket_body(PROJECT, "europe-west1", retention_days=3, protection="x"),
     "is not one of"),
    (lambda: identities({"vault": BACKUPS["tai_backup_identities"]["vault"]}),
     "exactly the vault and redis"),
])
def test_bad_input_is_one_sentence(call: Any, message: str) -> None:
    with pytest.raises(BucketError, match=message):
        call()



# ---- the project phase's bucket items, against the GCP TEST DOUBLE -------------------------

def _backup_cfg(protection: str = "retention-policy") -> dict[str, Any]:
    return {"bucket": f"tai-{PROJECT}-europe-west1-backups", "environment": "production",
            "identities": BACKUPS["tai_backup_identities"], "readers": ["group:sre@example.com"],
            "retention_days": 30, "noncurrent_days": 90, "soft_delete_days": 7,
            "protection": protection}


def _converger(url: str) -> Any:
    from tai_deploy.gcp_resource import Converger
    from tai_deploy.gcp_rest import RestClient, RetryPolicy, make_session

    def client(service: str) -> RestClient:
        return RestClient(make_session("none", url), url, service=service,
                          retry=RetryPolicy(attempts=1, base_delay=0.0))
    return Converger(client, poll_interval=0.0, sleep=lambda _: None)


def test_the_project_phase_creates_the_bucket_its_writers_and_readers_once() -> None:
    from helpers.gcp_double import serve
    from helpers.project_inputs import global_cfg, region_cfg
    from project_resources import (
        project_global_items,
        project_region_items,
        project_workload_identity_items,
    )
    from tai_deploy.gcp_schema import declared_problems
    glob = {**global_cfg(), "backup_identities": BACKUPS["tai_backup_identities"]}
    region = {**region_cfg("europe-west1"), "backup": _backup_cfg()}
    items = project_global_items(glob) + project_region_items(region, "europe-west1")
    # what the plan writes is checked against storage v1's discovery document
    assert declared_problems("items", items) == []
    bucket_item = next(i for i in items if i["id"] == "backup-bucket")
    broken = {**bucket_item, "create": {**bucket_item["create"], "body": {
        **bucket_item["create"]["body"], "retentionPolicy": {"retentionDays": 30}}}}
    assert declared_problems("items", [broken]) != []  # not a field of BucketRetentionPolicy
    with serve() as (double, url):
        converger = _converger(url)
        converger.converge(items)
        name = f"tai-{PROJECT}-europe-west1-backups"
        live = double.apis.storage.buckets[name]
        assert live["retentionPolicy"]["retentionPeriod"] == str(30 * 86400)
        assert live["versioning"] == {"enabled": False}
        assert live["softDeletePolicy"]["retentionDurationSeconds"] == str(7 * 86400)
        policy = {b["role"]: b["members"] for b in double.apis.storage.policies[name]["bindings"]}
        assert policy[WRITER_ROLE] == [
            f"serviceAccount:redis-backup@{PROJECT}.iam.gserviceaccount.com",
            f"serviceAccount:vault-backup@{PROJECT}.iam.gserviceaccount.com"]
        assert policy[READER_ROLE] == ["group:sre@example.com"]
        # nobody else holds a role on the bucket: the convenience bindings Cloud Storage gives
        # a new bucket (project owners and editors may write through legacyBucketOwner) are gone
        assert set(policy) == {WRITER_ROLE, READER_ROLE}
        for account in ("vault-backup", "redis-backup"):
            assert (f"projects/{PROJECT}/serviceAccounts/{account}@{PROJECT}"
                    ".iam.gserviceaccount.com") in double.apis.resources
        double.add_cluster(PROJECT, "europe-west1", "tai-cluster")  # the pool exists
        converger.converge(project_workload_identity_items(glob))
        wi = double.apis.policies[
            f"projects/{PROJECT}/serviceAccounts/vault-backup@{PROJECT}.iam.gserviceaccount.com"]
        assert wi["bindings"] == [{"role": "roles/iam.workloadIdentityUser", "members": [
            f"serviceAccount:{PROJECT}.svc.id.goog[vault/vault-snapshot]"]}]
        again = _converger(url)
        again.converge(items)
        assert {r.action for r in again.results} == {"unchanged"}, [
            (r.id, r.action, r.fields) for r in again.results if r.action != "unchanged"]


def test_the_double_refuses_a_retention_policy_with_versioning_as_cloud_storage_does() -> None:
    import requests
    from helpers.gcp_double import serve
    body = bucket_body(PROJECT, "europe-west1", retention_days=30)
    with serve() as (double, url):
        both = {**body, "versioning": {"enabled": True}}
        answer = requests.post(f"{url}/storage/v1/b?project={PROJECT}", json=both, timeout=10)
        assert answer.status_code == 400
        assert "mutually exclusive" in answer.json()["error"]["message"]
        assert double.apis.storage.buckets == {}
        # each choice alone is accepted, and a patch cannot add the other one later
        for protection in ("retention-policy", "versioning"):
            one = bucket_body(PROJECT, "europe-west1" if protection == "versioning" else
                              "us-central1", retention_days=30, protection=protection)
            assert requests.post(f"{url}/storage/v1/b?project={PROJECT}", json=one,
                                 timeout=10).status_code == 200
        locked = f"tai-{PROJECT}-us-central1-backups"
        patch = requests.patch(f"{url}/storage/v1/b/{locked}",
                               json={"versioning": {"enabled": True}}, timeout=10)
        assert patch.status_code == 400


# ---- the backup settings are checked by the validation play, before anything is written ---

BAD_BACKUPS: dict[str, Any] = {
    "tai_backup_bucket": "my-backups",
    "tai_backup_protection": "both",
    "tai_backup_retention_days": 0,
    "tai_backup_soft_delete_days": 3,
    "tai_backup_noncurrent_days": "ninety",
    "tai_backup_identities": {"vault": {"account_id": "VB", "namespace": "vault",
                                        "kubernetes_service_account": "vault-snapshot"}},
    "tai_backup_readers": ["alice@example.com", "allUsers"],
}
BAD_BACKUP_SENTENCES = (
    "tai_backup_bucket of region europe-west1 is 'my-backups', but the project phase creates "
    "tai-tai-production-europe-west1-backups; leave tai_backup_bucket at its default.",
    "tai_backup_protection of region europe-west1 is 'both'; it must be one of "
    "retention-policy, versioning.",
    "tai_backup_retention_days of region europe-west1 is 0; it must be a whole number from 1 "
    "to 36500.",
    "tai_backup_soft_delete_days of region europe-west1 is 3; it must be a whole number from 7 "
    "to 90.",
    "tai_backup_noncurrent_days of region europe-west1 is 'ninety'; it must be a whole number "
    "from 1 to 36500.",
    "tai_backup_identities of region europe-west1 names vault; it must name exactly the vault "
    "and redis writers.",
    "tai_backup_identities.vault.account_id of region europe-west1 is 'VB'; it must be a "
    "service account id (6-30 lowercase letters, digits and hyphens, starting with a letter).",
    "tai_backup_readers of region europe-west1 lists 'alice@example.com', which is not an IAM "
    "member such as group:sre@example.com.",
    "tai_backup_readers of region europe-west1 lists 'allUsers'; the backup bucket may not be "
    "public.",
)


def test_bad_backup_settings_are_one_sentence_each_from_the_inventory_rules() -> None:
    from tai_deploy.inventory import check_backups
    good = {k: v for k, v in BACKUPS.items() if k.startswith("tai_backup_")}
    good["tai_backup_bucket"] = f"tai-{PROJECT}-europe-west1-backups"
    assert check_backups("europe-west1", {"tai_gcp_project": PROJECT, **good}) == []
    identities_ = BACKUPS["tai_backup_identities"]
    assert check_backups("europe-west1", {"tai_backup_identities": {
        **identities_, "redis": {**identities_["redis"], "namespace": "Tai System"}}}) == [
        "tai_backup_identities.redis.namespace of region europe-west1 is 'Tai System'; it must "
        "be a namespace name (lowercase letters, digits and hyphens, at most 63)."]
    assert check_backups("europe-west1", {"tai_gcp_project": PROJECT, **BAD_BACKUPS}) == list(
        BAD_BACKUP_SENTENCES)


def test_bad_backup_settings_are_refused_by_the_validation_play(tmp_path: Any) -> None:
    from helpers.ansible_run import run_playbook
    root = tmp_path / "build"
    run = run_playbook("site.yml", "-l", "europe-west1", "-e", json.dumps(BAD_BACKUPS),
                       env={"TAI_BUILD_ROOT": str(root)})
    assert run.returncode != 0, run.output[-3000:]
    text = " ".join(run.output.split())
    for sentence in BAD_BACKUP_SENTENCES:
        assert sentence in text, sentence
    assert "TASK [project" not in run.stdout  # no role ran
    assert "filter plugin" not in text
    assert not root.exists() and not (tmp_path / ".build.staging").exists()


def test_a_writer_added_by_hand_is_removed_and_the_reruns_change_nothing() -> None:
    from helpers.gcp_double import serve
    from helpers.project_inputs import global_cfg, region_cfg
    from project_resources import project_global_items, project_region_items
    glob = {**global_cfg(), "backup_identities": BACKUPS["tai_backup_identities"]}
    region = {**region_cfg("europe-west1"), "backup": _backup_cfg()}
    items = project_global_items(glob) + project_region_items(region, "europe-west1")
    name = f"tai-{PROJECT}-europe-west1-backups"
    with serve() as (double, url):
        converger = _converger(url)
        converger.converge([i for i in items if i["id"] != "backup-bucket-iam"])
        # what Cloud Storage gives every new bucket: the project's editors may write
        assert {b["role"]: b["members"] for b in double.apis.storage.policies[name]["bindings"]
                } == {"roles/storage.legacyBucketOwner": [f"projectEditor:{PROJECT}",
                                                          f"projectOwner:{PROJECT}"],
                      "roles/storage.legacyBucketReader": [f"projectViewer:{PROJECT}"]}
        converger.converge([i for i in items if i["id"] == "backup-bucket-iam"])
        assert double.apis.storage.policies[name]["bindings"] == bucket_bindings(
            PROJECT, WRITERS, ["group:sre@example.com"])
        # someone grants an extra writer by hand: the next run removes it, and says so
        policy = double.apis.storage.policies[name]
        policy["bindings"].append({"role": "roles/storage.objectAdmin",
                                   "members": ["user:someone@example.com"]})
        policy["bindings"][0]["members"].append("serviceAccount:other@example.iam."
                                                "gserviceaccount.com")
        fixed = _converger(url)
        fixed.converge(items)
        result = next(r for r in fixed.results if r.id == "backup-bucket-iam")
        assert result.action == "updated"
        assert result.fields == [
            f"no {WRITER_ROLE} for serviceAccount:other@example.iam.gserviceaccount.com",
            "no roles/storage.objectAdmin for user:someone@example.com"]
        assert double.apis.storage.policies[name]["bindings"] == bucket_bindings(
            PROJECT, WRITERS, ["group:sre@example.com"])
        start = len(double.requests)
        again = _converger(url)
        again.converge(items)
        assert {r.action for r in again.results} == {"unchanged"}
        assert [p for m, p, _ in double.requests[start:] if m == "PUT" or "setIam" in p] == []


def test_a_concurrent_edit_of_the_bucket_policy_is_read_again_and_retried() -> None:
    from helpers.gcp_double import serve
    from helpers.project_inputs import global_cfg, region_cfg
    from project_resources import project_global_items, project_region_items
    glob = {**global_cfg(), "backup_identities": BACKUPS["tai_backup_identities"]}
    items = project_global_items(glob) + project_region_items(
        {**region_cfg("europe-west1"), "backup": _backup_cfg()}, "europe-west1")
    name = f"tai-{PROJECT}-europe-west1-backups"
    with serve() as (double, url):
        # buckets.setIamPolicy with a stale etag answers 412 Precondition Failed
        double.fail("PUT", f"/storage/v1/b/{name}/iam", 412, "Precondition Failed")
        _converger(url).converge(items)
        puts = [p for m, p, _ in double.requests if m == "PUT"]
        assert puts == [f"/storage/v1/b/{name}/iam"] * 2
        assert double.apis.storage.policies[name]["bindings"] == bucket_bindings(
            PROJECT, WRITERS, ["group:sre@example.com"])
