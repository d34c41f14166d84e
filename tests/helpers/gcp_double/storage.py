"""TEST DOUBLE of the Cloud Storage JSON API's bucket methods (storage v1), on loopback.

NOT Google Cloud Storage: an in-memory store behind the real paths. Served:
  POST  /storage/v1/b?project={p}        buckets.insert  (Bucket)
  GET   /storage/v1/b/{bucket}           buckets.get
  PATCH /storage/v1/b/{bucket}           buckets.patch   (Bucket, merged over the live one)
  GET   /storage/v1/b/{bucket}/iam       buckets.getIamPolicy  (Policy, kind storage#policy)
  PUT   /storage/v1/b/{bucket}/iam       buckets.setIamPolicy  (Policy)
Bodies are checked against the request $ref of each method in Google's storage v1 discovery
document (schema.py), then against the documented cross-field rule of rules.py
(storage_retention_policy_excludes_versioning). Object uploads and downloads are the
other double, tests/helpers/gcs_double.py.

Server fields and answers follow https://cloud.google.com/storage/docs/json_api/v1/buckets:
a new bucket has metageneration 1, locationType region, a retentionPolicy gets effectiveTime
and isLocked false; a new bucket's policy holds the convenience bindings of the project's
owners, editors and viewers (roles/storage.legacyBucketOwner, legacyBucketReader); a name that
exists answers 409, a missing bucket 404 "The specified bucket does not exist.".
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import rules, schema
from .resources import PROJECT_NUMBER, error


def _etag(policy: dict[str, Any]) -> str:
    import base64

    digest = hashlib.sha256(json.dumps(policy.get("bindings", []), sort_keys=True).encode())
    return base64.b64encode(digest.digest()[:6]).decode()


@dataclass
class StorageApi:
    """Buckets and their IAM policies. ``account_exists`` answers whether a service account
    e-mail of the project exists (the IAM part of the double)."""

    account_exists: Callable[[str], bool] = lambda email: True
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seq: int = 0

    def project_of(self, path: str, params: dict[str, str]) -> str | None:
        m = re.fullmatch(r"/storage/v1/b/([^/]+)(?:/iam)?", path)
        if m and m.group(1) in self.buckets:
            return str(self.buckets[m.group(1)]["_project"])
        return params.get("project")

    def handle(self, method: str, path: str, params: dict[str, str],
               body: Any) -> tuple[int, Any]:
        if path == "/storage/v1/b" and method == "POST":
            return self._insert(params.get("project", ""), body or {})
        m = re.fullmatch(r"/storage/v1/b/([^/]+)(/iam)?", path)
        if not m:
            return 404, error(404, f"The double does not serve {method} {path}.", "NOT_FOUND")
        name, iam = m.group(1), bool(m.group(2))
        live = self.buckets.get(name)
        if live is None:
            return 404, error(404, "The specified bucket does not exist.", "NOT_FOUND",
                              "notFound")
        if iam and method == "GET":
            return 200, copy.deepcopy(self.policies[name])
        if iam and method == "PUT":
            return self._set_policy(name, live, body or {})
        if method == "GET":
            return 200, self._public(live)
        if method == "PATCH":
            return self._patch(live, body or {})
        return 400, error(400, f"The double does not serve {method} on a bucket.",
                          "INVALID_ARGUMENT")

    @staticmethod
    def _public(bucket: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in bucket.items() if not k.startswith("_")}

    @staticmethod
    def _invalid(api_method: str, body: Any) -> tuple[int, Any] | None:
        ref = schema.request_ref("storage.v1", api_method)
        if ref is not None:
            found = schema.validate("storage.v1", ref, body)
            if found.items:
                return 400, found.error()
        return None

    def _check(self, bucket: dict[str, Any]) -> tuple[int, Any] | None:
        message = rules.storage_retention_policy_excludes_versioning(bucket)
        if message:
            return 400, error(400, message, "INVALID_ARGUMENT", "invalid")
        return None

    def _insert(self, project: str, body: dict[str, Any]) -> tuple[int, Any]:
        bad = self._invalid("storage.buckets.insert", body) or self._check(body)
        if bad:
            return bad
        name = str(body.get("name") or "")
        if not project or not name:
            return 400, error(400, "Required parameter: project and the bucket name.",
                              "INVALID_ARGUMENT", "required")
        if name in self.buckets:
            return 409, error(409, "Your previous request to create the named bucket "
                                   "succeeded and you already own it.", "ALREADY_EXISTS",
                              "conflict")
        self._seq += 1
        bucket = copy.deepcopy(body)
        now = "2026-12-01T00:00:00.000Z"
        bucket.update({"kind": "storage#bucket", "id": name, "name": name,
                       "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}",
                       "projectNumber": PROJECT_NUMBER, "metageneration": "1",
                       "location": str(body.get("location", "US")).upper(),
                       "locationType": "region", "timeCreated": now, "updated": now,
                       "etag": f"CA{self._seq}=", "_project": project})
        bucket.setdefault("storageClass", "STANDARD")
        if bucket.get("retentionPolicy"):
            bucket["retentionPolicy"].update({"effectiveTime": now, "isLocked": False})
        if bucket.get("softDeletePolicy"):
            bucket["softDeletePolicy"]["effectiveTime"] = now
        self.buckets[name] = bucket
        # A new bucket's policy holds the convenience values of the project's basic roles:
        # projectOwner and projectEditor get roles/storage.legacyBucketOwner, projectViewer
        # roles/storage.legacyBucketReader
        # (https://cloud.google.com/storage/docs/access-control/iam#convenience-values and
        # https://cloud.google.com/storage/docs/access-control/iam-roles, "Basic roles": these
        # bindings, not the basic roles themselves, give the project's members object access).
        policy: dict[str, Any] = {
            "kind": "storage#policy", "resourceId": f"projects/_/buckets/{name}", "version": 1,
            "bindings": [
                {"role": "roles/storage.legacyBucketOwner",
                 "members": [f"projectEditor:{project}", f"projectOwner:{project}"]},
                {"role": "roles/storage.legacyBucketReader",
                 "members": [f"projectViewer:{project}"]}]}
        policy["etag"] = _etag(policy)
        self.policies[name] = policy
        return 200, self._public(bucket)

    def _patch(self, live: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
        bad = self._invalid("storage.buckets.patch", body)
        if bad:
            return bad
        merged = {**live, **copy.deepcopy(body)}
        bad = self._check(merged)
        if bad:
            return bad
        live.clear()
        live.update(merged)
        live["metageneration"] = str(int(live.get("metageneration", "1")) + 1)
        return 200, self._public(live)

    def _set_policy(self, name: str, live: dict[str, Any], body: dict[str, Any]
                    ) -> tuple[int, Any]:
        bad = self._invalid("storage.buckets.setIamPolicy", body)
        if bad:
            return bad
        current = self.policies[name]
        if body.get("etag") and body["etag"] != current.get("etag"):
            # buckets.setIamPolicy with a stale etag: 412 Precondition Failed
            return 412, error(412, "Precondition Failed", "FAILED_PRECONDITION",
                              "conditionNotMet")
        for b in body.get("bindings") or []:
            for member in b.get("members") or []:
                email = member.split(":", 1)[1] if member.startswith("serviceAccount:") else ""
                if email.endswith(f"@{live['_project']}.iam.gserviceaccount.com") and \
                        not self.account_exists(email):
                    return 400, error(400, f"Service account {email} does not exist.",
                                      "INVALID_ARGUMENT", "invalid")
        new = copy.deepcopy(body)
        new.update({"kind": "storage#policy", "resourceId": f"projects/_/buckets/{name}"})
        new.setdefault("version", 1)
        new["etag"] = _etag(new)
        self.policies[name] = new
        return 200, copy.deepcopy(new)
