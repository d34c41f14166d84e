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

