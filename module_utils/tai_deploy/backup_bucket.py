"""The regional backup bucket as data: its storage v1 ``Bucket`` body, its IAM bindings, and the
two Google service accounts that alone may write to it (with their workload-identity members).

The project phase creates these (``buckets.insert`` with :func:`bucket_body`,
``buckets.setIamPolicy`` with :func:`bucket_bindings`, ``projects.serviceAccounts.create`` with
:func:`service_accounts` and their ``setIamPolicy`` with :func:`workload_identity_bindings`);
nothing here talks to an API.

Protection of the snapshots. Cloud Storage refuses a bucket that has both a retention policy
(Bucket Lock) and Object Versioning ("Object versioning cannot be enabled on a bucket with a
retention policy"), so :func:`bucket_body` offers the two as ``protection``:

* ``retention-policy`` (default): ``retentionPolicy.retentionPeriod`` = the retention days; no
  object can be deleted or replaced before that age, by anyone. Versioning stays off (there is
  nothing it would keep: nothing can be replaced).
* ``versioning``: ``versioning.enabled`` and a lifecycle rule that deletes noncurrent versions
  after ``noncurrent_days``.

Both add a soft-delete window (``softDeletePolicy``) and enforce uniform bucket-level access and
public access prevention. The writers get ``roles/storage.objectCreator`` only (create; no
read, no delete, no overwrite: the jobs upload with ``ifGenerationMatch=0``); the listed readers
get ``roles/storage.objectViewer``; nobody else is granted anything on the bucket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DAY = 86400
PROTECTIONS = ("retention-policy", "versioning")
WRITER_ROLE = "roles/storage.objectCreator"
READER_ROLE = "roles/storage.objectViewer"
_MEMBER = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):\S+$")


class BucketError(ValueError):
    """Bad input; one sentence."""


@dataclass(frozen=True)
class BackupIdentity:
    """A writer: a Google service account and the Kubernetes service account acting as it."""

    kind: str                        # vault | redis
    account_id: str
    namespace: str
    kubernetes_service_account: str

    def email(self, project: str) -> str:
        return f"{self.account_id}@{project}.iam.gserviceaccount.com"

    def workload_identity_member(self, project: str) -> str:
        return (f"serviceAccount:{project}.svc.id.goog[{self.namespace}/"
                f"{self.kubernetes_service_account}]")

    @classmethod
    def from_mapping(cls, kind: str, data: Mapping[str, Any]) -> BackupIdentity:
        missing = [k for k in ("account_id", "namespace", "kubernetes_service_account")
                   if not data.get(k)]
        if missing:
            raise BucketError(f"tai_backup_identities.{kind} lacks {', '.join(missing)}")
        account = str(data["account_id"])
        if not re.match(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", account):
            raise BucketError(f"tai_backup_identities.{kind}.account_id {account!r} is not a "
                              "service account id (6-30 lowercase letters, digits, dashes)")
        return cls(kind, account, str(data["namespace"]), str(data["kubernetes_service_account"]))


def is_member(value: object) -> bool:
    """An IAM principal such as group:sre@example.com (Policy.bindings[].members)."""
    return isinstance(value, str) and bool(_MEMBER.match(value))


def identities(data: Mapping[str, Mapping[str, Any]]) -> list[BackupIdentity]:
    """tai_backup_identities (group_vars/all/backups.yml) as typed writers."""
    if set(data) != {"vault", "redis"}:
        raise BucketError("tai_backup_identities must name exactly the vault and redis writers")
    return [BackupIdentity.from_mapping(kind, data[kind]) for kind in sorted(data)]


def bucket_name(project: str, region: str) -> str:
    name = f"tai-{project}-{region}-backups"
    if len(name) > 63 or not re.match(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$", name):
        raise BucketError(f"bucket name {name} is not a valid Cloud Storage name (3-63 "
                          "lowercase letters, digits, dashes, dots)")
    return name


def bucket_body(project: str, region: str, *, retention_days: int, noncurrent_days: int = 90,
                soft_delete_days: int = 7, protection: str = "retention-policy",
                labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The storage v1 ``Bucket`` resource of buckets.insert (int64 fields as strings)."""
    if protection not in PROTECTIONS:
        raise BucketError(f"protection {protection!r} is not one of {', '.join(PROTECTIONS)}")
    if not 1 <= retention_days <= 36500:
        raise BucketError(f"tai_backup_retention_days must be between 1 and 36500, not "
                          f"{retention_days}")
    if not 7 <= soft_delete_days <= 90:
        raise BucketError("the soft-delete window must be between 7 and 90 days")
    body: dict[str, Any] = {
        "name": bucket_name(project, region),
        "location": region.upper(),
        "storageClass": "STANDARD",
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True},
                             "publicAccessPrevention": "enforced"},
        "softDeletePolicy": {"retentionDurationSeconds": str(soft_delete_days * DAY)},
        "labels": {"app": "tai", "purpose": "backups", **dict(labels or {})},
    }
    if protection == "retention-policy":
        body["retentionPolicy"] = {"retentionPeriod": str(retention_days * DAY)}
        body["versioning"] = {"enabled": False}
    else:
        body["versioning"] = {"enabled": True}
        body["lifecycle"] = {"rule": [{"action": {"type": "Delete"},
                                       "condition": {"daysSinceNoncurrentTime": noncurrent_days}}]}
    return body


def bucket_bindings(project: str, writers: Sequence[BackupIdentity], readers: Sequence[str]
                    ) -> list[dict[str, Any]]:
    """``Policy.bindings`` of the bucket: objectCreator for writers, objectViewer for readers."""
    bad = [r for r in readers if not _MEMBER.match(r)]
    if bad:
        raise BucketError(f"tai_backup_readers has {', '.join(bad)}, which is not an IAM member "
                          "such as group:sre@example.com")
    if any(r in ("allUsers", "allAuthenticatedUsers") for r in readers):
        raise BucketError("tai_backup_readers may not be public")
    out = [{"role": WRITER_ROLE,
            "members": sorted(f"serviceAccount:{w.email(project)}" for w in writers)}]
    if readers:
        out.append({"role": READER_ROLE, "members": sorted(set(readers))})
    return out


def service_accounts(project: str, writers: Sequence[BackupIdentity]) -> list[dict[str, Any]]:
    """iam v1 ``CreateServiceAccountRequest`` bodies (projects.serviceAccounts.create)."""
    return [{"accountId": w.account_id,
             "serviceAccount": {"displayName": f"TAI {w.kind} snapshots",
                                "description": f"Writes {w.kind} snapshots to the regional "
                                               f"backup buckets of {project}."}}
            for w in writers]


def workload_identity_bindings(project: str, writer: BackupIdentity) -> list[dict[str, Any]]:
    """``Policy.bindings`` on the writer's service account: only its Kubernetes SA acts as it."""
    return [{"role": "roles/iam.workloadIdentityUser",
             "members": [writer.workload_identity_member(project)]}]
