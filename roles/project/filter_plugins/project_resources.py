# Copyright: tai-deploy contributors
"""Filters project_global_items / project_region_items: the project phase's resources as data.

Each returns the ordered list of gcp_resource items (see module_utils/tai_deploy/gcp_resource.py)
that the project role writes to build/ and apply converges. Bodies are built here as data, never
as YAML text with interpolated values. Every create/update body names its discovery ``method_id``
so that the plan checks it against Google's schema before it is written.

Pure functions, no Ansible import beyond the FilterModule hook; tests import them directly.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Filters run on the controller, where Ansible does not put the project's module_utils on the
# import path.
_MODULE_UTILS = Path(__file__).resolve().parents[3] / "module_utils"
if str(_MODULE_UTILS) not in sys.path:
    sys.path.insert(0, str(_MODULE_UTILS))

from tai_deploy import backup_bucket, image_registry  # noqa: E402

COMPUTE = "compute.googleapis.com"
IAM = "iam.googleapis.com"
KMS = "cloudkms.googleapis.com"
CRM = "cloudresourcemanager.googleapis.com"
FIRESTORE = "firestore.googleapis.com"
BINAUTHZ = "binaryauthorization.googleapis.com"
STORAGE = "storage.googleapis.com"
ARTIFACT_REGISTRY = "artifactregistry.googleapis.com"


def _compute_item(ident: str, title: str, project: str, scope: str, collection: str, *,
                  kind: str, body: dict[str, Any], compare: dict[str, Any],
                  update: dict[str, Any] | None, immutable: list[str]) -> dict[str, Any]:
    base = f"/compute/v1/projects/{project}/{scope}/{collection}"
    item: dict[str, Any] = {
        "id": ident, "kind": "rest", "title": title, "service": COMPUTE, "api": "compute.v1",
        "self": f"{base}/{body['name']}",
        "create": {"method": "POST", "path": base, "method_id": f"compute.{kind}.insert",
                   "body": body},
        "compare": compare, "immutable": immutable}
    if update is not None:
        item["update"] = {"method": "PATCH", "path": f"{base}/{body['name']}",
                          "method_id": f"compute.{kind}.patch", "body": update,
                          "fingerprint": True}
    return item


def _service_account(project: str, account: Mapping[str, Any]) -> dict[str, Any]:
    email = f"{account['name']}@{project}.iam.gserviceaccount.com"
    shown = {"displayName": str(account["display_name"]),
             "description": str(account["description"])}
    return {
        "id": f"sa-{account['name']}", "kind": "rest", "title": f"service account {email}",
        "service": IAM, "api": "iam.v1", "self": f"/v1/projects/{project}/serviceAccounts/{email}",
        "create": {"method": "POST", "path": f"/v1/projects/{project}/serviceAccounts",
                   "method_id": "iam.projects.serviceAccounts.create",
                   "body": {"accountId": str(account["name"]), "serviceAccount": shown}},
        "compare": shown,
        "update": {"method": "PATCH", "path": f"/v1/projects/{project}/serviceAccounts/{email}",
                   "method_id": "iam.projects.serviceAccounts.patch",
                   "body": {"serviceAccount": shown, "updateMask": "displayName,description"}},
        "outputs": {"email": "email"}}


def _backup_accounts(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The two writers of the backup buckets (vault-backup, redis-backup) as service accounts
    of the list: no project role (they are granted on the buckets only), each bound to the
    Kubernetes service account of its snapshot CronJob through workload identity."""
    if not cfg.get("backup_identities"):
        return []
    project = str(cfg["project"])
    writers = backup_bucket.identities(cfg["backup_identities"])
    bodies = backup_bucket.service_accounts(project, writers)
    return [{"name": w.account_id, "display_name": b["serviceAccount"]["displayName"],
             "description": b["serviceAccount"]["description"], "project_roles": [],
             "workload": f"{w.namespace}/{w.kubernetes_service_account}"}
            for w, b in zip(writers, bodies, strict=True)]


def _backup_items(project: str, region: str, backup: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The region's backup bucket (storage v1 buckets.insert) and its IAM policy: the backup
    writers may create objects, the listed readers may read them, nobody else holds a role on
    the bucket (the policy is set exactly, not merged)."""
    writers = backup_bucket.identities(backup["identities"])
    body = backup_bucket.bucket_body(
        project, region, retention_days=int(backup["retention_days"]),
        noncurrent_days=int(backup["noncurrent_days"]),
        soft_delete_days=int(backup["soft_delete_days"]), protection=str(backup["protection"]),
        labels={"environment": str(backup["environment"])})
    name = body["name"]
    if str(backup.get("bucket") or name) != name:
        raise backup_bucket.BucketError(
            f"tai_backup_bucket of region {region} is {backup['bucket']}, but the project "
            f"phase creates {name}; leave tai_backup_bucket at its default")
    # Fields we own as the API returns them (int64 as strings, location upper case).
    owned = {k: body[k] for k in ("location", "storageClass", "iamConfiguration",
                                  "softDeletePolicy", "labels", "versioning")}
    for key in ("retentionPolicy", "lifecycle"):
        if key in body:
            owned[key] = body[key]
    path = f"/storage/v1/b/{name}"
    return [
        {"id": "backup-bucket", "kind": "rest", "service": STORAGE, "api": "storage.v1",
         "title": f"backup bucket {name}", "self": path,
         "create": {"method": "POST", "path": f"/storage/v1/b?project={project}",
                    "method_id": "storage.buckets.insert", "body": body},
         "compare": owned, "immutable": ["location", "storageClass"],
         "update": {"method": "PATCH", "path": path, "method_id": "storage.buckets.patch",
                    "body": {k: v for k, v in owned.items()
                             if k not in ("location", "storageClass")}}},
        # Authoritative: Cloud Storage gives a new bucket the convenience bindings of the
        # project's owners and editors (roles/storage.legacyBucketOwner, which creates and
        # deletes objects) and viewers (legacyBucketReader); they are removed, so only the
        # backup identities write and only the listed readers read. Project owners can still
        # change the bucket's IAM policy (the residual risk, docs/runbooks/vault-restore.md).
        {"id": "backup-bucket-iam", "kind": "iam_policy", "service": STORAGE, "style": "storage",
         "title": f"backup bucket {name}", "resource": path, "authoritative": True,
         "bindings": backup_bucket.bucket_bindings(project, writers,
                                                   [str(r) for r in backup["readers"]])},
    ]


def project_global_items(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Services, the VPC, the service accounts, the project IAM, Firestore: once per project."""
    project = str(cfg["project"])
    items: list[dict[str, Any]] = [{
        "id": "services", "kind": "services", "title": f"services of project {project}",
        "project": project, "services": sorted({str(s) for s in cfg["services"]})}]
    net = str(cfg["network"])
    routing = {"routingMode": str(cfg["routing_mode"])}
    items.append(_compute_item(
        "network", f"VPC network {net}", project, "global", "networks", kind="networks",
        body={"name": net, "description": str(cfg["network_description"]),
         "autoCreateSubnetworks": False, "routingConfig": routing},
        compare={"autoCreateSubnetworks": False, "routingConfig": routing},
        update={"routingConfig": routing}, immutable=["autoCreateSubnetworks"]))
    accounts = list(cfg["service_accounts"]) + _backup_accounts(cfg)
    items += [_service_account(project, a) for a in accounts]
    roles: dict[str, list[str]] = {}
    for account in accounts:
        for role in account.get("project_roles") or []:
            roles.setdefault(str(role), []).append(
                f"serviceAccount:{account['name']}@{project}.iam.gserviceaccount.com")
    items.append({
        "id": "project-iam", "kind": "iam_policy", "service": CRM,
        "title": f"project {project}", "resource": f"/v1/projects/{project}", "get": "POST",
        "bindings": [{"role": r, "members": sorted(m)} for r, m in sorted(roles.items())]})
    db = cfg["firestore"]
    wanted = {"type": str(db["type"]), "locationId": str(db["location"])}
    items.append({
        "id": "firestore", "kind": "rest", "title": f"Firestore database {db['name']}",
        "service": FIRESTORE, "api": "firestore.v1",
        "self": f"/v1/projects/{project}/databases/{db['name']}",
        "create": {"method": "POST",
                   "path": f"/v1/projects/{project}/databases?databaseId={db['name']}",
                   "method_id": "firestore.projects.databases.create",
                   "body": {**wanted, "deleteProtectionState": "DELETE_PROTECTION_ENABLED"}},
        "compare": wanted, "immutable": ["type", "locationId"]})
    if cfg.get("binary_authorization"):
        items.append(binary_authorization_item(project, cfg["binary_authorization"]))
    if cfg.get("image_registry"):
        items += image_registry_items(project, cfg["image_registry"])
    return items


def chart_images(values: Mapping[str, Any], *overrides: Mapping[str, Any] | None) -> list[str]:
    """The image repositories of the TAI services (``services.<name>.image.repository``) in the
    chart's values with the inventory's overrides (the tai_services role's values, later ones
    win), sorted."""
    found: dict[str, str] = {}
    for layer in (values, *overrides):
        for name, svc in ((layer or {}).get("services") or {}).items():
            repo = ((svc or {}).get("image") or {}).get("repository") if isinstance(
                svc, Mapping) else None
            if repo:
                found[str(name)] = str(repo)
    return sorted(set(found.values()))


def image_registry_items(project: str, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """roles/artifactregistry.reader for the node service account on each Artifact Registry
    repository the images are read from (module_utils/tai_deploy/image_registry.py): on the
    repository, the narrowest grant the API allows. ``grant: false`` leaves them out (an
    administrator of a registry project that is not the operator's grants it; README)."""
    if not cfg.get("grant", True):
        return []
    member = f"serviceAccount:{cfg['member']}"
    items = []
    for repo in image_registry.repositories(str(i) for i in cfg["images"]):
        other = repo.project != project
        denied = (f"an administrator of project {repo.project} must grant "
                  f"{image_registry.READER_ROLE} on repository {repo.name} (location "
                  f"{repo.location}) to {member}, then set project_image_registry_grant: false"
                  if other else "")
        item: dict[str, Any] = {
            "id": f"registry-iam-{repo.project}-{repo.location}-{repo.name}",
            "kind": "iam_policy", "service": ARTIFACT_REGISTRY, "api": "artifactregistry.v1",
            "method_id": "artifactregistry.projects.locations.repositories.setIamPolicy",
            "title": repo.title, "resource": repo.resource, "get": "GET",
            "bindings": [{"role": image_registry.READER_ROLE, "members": [member]}]}
        if denied:
            item["denied_hint"] = denied
        items.append(item)
    return items


def binary_authorization_policy(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The project's Binary Authorization policy (binaryauthorization v1 ``Policy``): images
    matching an allowed pattern are admitted, every other one is denied, enforced in the named
    namespaces and by the default rule's enforcement mode elsewhere."""
    def rule(mode: str) -> dict[str, str]:
        return {"evaluationMode": "ALWAYS_DENY", "enforcementMode": mode}
    policy: dict[str, Any] = {
        "description": str(cfg["description"]),
        # Google-maintained system images of GKE (kube-system, ...) are admitted.
        "globalPolicyEvaluationMode": "ENABLE",
        "admissionWhitelistPatterns": [{"namePattern": str(p)}
                                       for p in cfg["allowed_images"]],
        "defaultAdmissionRule": rule(str(cfg["default_enforcement"])),
    }
    namespaces = sorted(str(n) for n in cfg.get("enforced_namespaces") or [])
    if namespaces:
        policy["kubernetesNamespaceAdmissionRules"] = {
            n: rule("ENFORCED_BLOCK_AND_AUDIT_LOG") for n in namespaces}
    return policy


def binary_authorization_item(project: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The policy as a gcp_resource item: one per project, always present (Google serves a
    default one), so it is read and replaced (PUT) when it differs."""
    path = f"/v1/projects/{project}/policy"
    body = binary_authorization_policy(cfg)
    put = {"method": "PUT", "path": path, "method_id": "binaryauthorization.projects.updatePolicy",
           "body": body}
    return {"id": "binary-authorization", "kind": "rest", "service": BINAUTHZ,
            "api": "binaryauthorization.v1",
            "title": f"Binary Authorization policy of project {project}", "self": path,
            "create": put, "compare": body, "update": put}


def project_workload_identity_items(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """roles/iam.workloadIdentityUser on each workload's Google service account for
    ``serviceAccount:<project>.svc.id.goog[<namespace>/<ksa>]``.

    Applied after the clusters: the workload identity pool <project>.svc.id.goog exists only once
    a cluster with workload identity does (IAM answers 400 "Identity Pool does not exist" before).
    """
    project = str(cfg["project"])
    pool = f"{project}.svc.id.goog"
    items: list[dict[str, Any]] = []
    for account in list(cfg["service_accounts"]) + _backup_accounts(cfg):
        ksa = account.get("workload")
        if not ksa:
            continue
        email = f"{account['name']}@{project}.iam.gserviceaccount.com"
        items.append({
            "id": f"wi-{account['name']}", "kind": "iam_policy", "service": IAM,
            "title": f"service account {email}",
            "resource": f"/v1/projects/{project}/serviceAccounts/{email}", "get": "POST",
            "bindings": [{"role": "roles/iam.workloadIdentityUser",
                          "members": [f"serviceAccount:{pool}[{ksa}]"]}]})
    return items


def _key_items(project: str, region: str, ring: str, key: str, *,
               members: Mapping[str, list[str]], labels: Mapping[str, str],
               ) -> list[dict[str, Any]]:
    ring_path = f"/v1/projects/{project}/locations/{region}/keyRings/{ring}"
    key_path = f"{ring_path}/cryptoKeys/{key}"
    template = {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "protectionLevel": "SOFTWARE"}
    return [
        {"id": f"ring-{ring}", "kind": "rest", "service": KMS, "api": "cloudkms.v1",
         "title": f"KMS key ring {ring} in {region}", "self": ring_path,
         "create": {"method": "POST",
                    "path": f"/v1/projects/{project}/locations/{region}/keyRings?keyRingId={ring}",
                    "method_id": "cloudkms.projects.locations.keyRings.create", "body": {}},
         "compare": {}},
        {"id": f"key-{ring}-{key}", "kind": "rest", "service": KMS, "api": "cloudkms.v1",
         "title": f"KMS key {key} of {ring} in {region}", "self": key_path,
         "create": {"method": "POST", "path": f"{ring_path}/cryptoKeys?cryptoKeyId={key}",
                    "method_id": "cloudkms.projects.locations.keyRings.cryptoKeys.create",
                    "body": {"purpose": "ENCRYPT_DECRYPT", "versionTemplate": template,
                             "labels": dict(labels)}},
         "compare": {"purpose": "ENCRYPT_DECRYPT", "labels": dict(labels)},
         "immutable": ["purpose"],
         "update": {"method": "PATCH", "path": f"{key_path}?updateMask=labels",
                    "method_id": "cloudkms.projects.locations.keyRings.cryptoKeys.patch",
                    "body": {"labels": dict(labels)}},
         "outputs": {"id": "name"}},
        # IAM on the key only (never on the ring or the project).
        {"id": f"key-iam-{ring}-{key}", "kind": "iam_policy", "service": KMS,
         "title": f"KMS key {key} of {ring} in {region}", "resource": key_path, "get": "GET",
         "bindings": [{"role": r, "members": sorted(m)} for r, m in sorted(members.items())]},
    ]


def project_region_items(cfg: Mapping[str, Any], region: str) -> list[dict[str, Any]]:
    """The region's subnet, Cloud Router with NAT, and KMS keys (Vault unseal, GKE secrets)."""
    project, net = str(cfg["project"]), str(cfg["network"])
    ranges = cfg["subnet_ranges"]
    network = f"projects/{project}/global/networks/{net}"
    secondary = [{"rangeName": str(cfg["pods_range_name"]), "ipCidrRange": str(ranges["pods"])},
                 {"rangeName": str(cfg["services_range_name"]),
                  "ipCidrRange": str(ranges["services"])}]
    subnet = str(cfg["subnet"])
    items: list[dict[str, Any]] = [
        # The project number names GKE's service agent (service-<number>@container-engine-robot).
        {"id": "project", "kind": "read", "service": CRM, "title": f"project {project}",
         "self": f"/v1/projects/{project}", "outputs": {"number": "projectNumber"}},
        _compute_item(
            "subnet", f"subnet {subnet} in {region}", project, f"regions/{region}",
            "subnetworks", kind="subnetworks",
            body={"name": subnet, "description": f"TAI nodes, pods and services in {region}",
             "network": network, "ipCidrRange": str(ranges["nodes"]),
             "privateIpGoogleAccess": True, "secondaryIpRanges": secondary},
            compare={"network": network, "ipCidrRange": str(ranges["nodes"]),
                     "privateIpGoogleAccess": True, "secondaryIpRanges": secondary},
            update={"privateIpGoogleAccess": True, "secondaryIpRanges": secondary},
            immutable=["network", "ipCidrRange"]),
    ]
    nat = {"name": str(cfg["nat_name"]), "natIpAllocateOption": "AUTO_ONLY",
           "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES",
           "logConfig": {"enable": True, "filter": "ERRORS_ONLY"}}
    router = str(cfg["router_name"])
    items.append(_compute_item(
        "router", f"Cloud Router {router} (NAT {nat['name']}) in {region}", project,
        f"regions/{region}", "routers", kind="routers",
        body={"name": router, "description": f"Cloud NAT of the private TAI nodes in {region}",
         "network": network, "nats": [nat]},
        compare={"network": network, "nats": [nat]}, update={"nats": [nat]},
        immutable=["network"]))
    labels = {"app": "tai", "environment": str(cfg["environment"])}
    vault = cfg["vault_key"]
    items += _key_items(project, region, str(vault["key_ring"]), str(vault["crypto_key"]),
                        members={"roles/cloudkms.cryptoKeyEncrypterDecrypter":
                             [f"serviceAccount:{vault['member']}"],
                         # Vault's gcpckms seal also reads the key (cloudkms.cryptoKeys.get)
                         "roles/cloudkms.viewer": [f"serviceAccount:{vault['member']}"]},
                        labels=labels)
    gke = cfg["gke_key"]
    agent = ("serviceAccount:service-$(project.number)@container-engine-robot.iam."
             "gserviceaccount.com")
    items += _key_items(project, region, str(gke["key_ring"]), str(gke["crypto_key"]),
                        members={"roles/cloudkms.cryptoKeyEncrypterDecrypter": [agent]},
                        labels=labels)
    if cfg.get("backup"):
        items += _backup_items(project, region, cfg["backup"])
    return items


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"project_global_items": project_global_items,
                "project_region_items": project_region_items,
                "project_workload_identity_items": project_workload_identity_items,
                "project_chart_images": chart_images}
