"""TEST DOUBLE of the project-level Google APIs the project phase and the dns role call.

NOT Google Cloud: an in-memory store behind the real REST paths, on loopback. Served:

Service Usage (serviceusage v1)
  GET  /v1/projects/{p}/services?filter=state:ENABLED   GET /v1/projects/{p}/services/{s}
  POST /v1/projects/{p}/services:batchEnable             GET /v1/operations/{op}  (LRO: done)
Compute Engine (compute v1), each insert/patch answers a compute#operation (PENDING, RUNNING,
DONE) on /global/operations or /regions/{r}/operations
  /compute/v1/projects/{p}/global/{addresses,networks,firewalls,healthChecks,backendServices,
  targetTcpProxies,forwardingRules}[/{name}]  /regions/{r}/{subnetworks,routers}[/{name}]
  GET /compute/v1/projects/{p}/zones/{z}/networkEndpointGroups  (filter name = x)
IAM (iam v1)  /v1/projects/{p}/serviceAccounts[/{email}][:getIamPolicy|:setIamPolicy]
Cloud KMS (cloudkms v1)  /v1/projects/{p}/locations/{l}/keyRings?keyRingId=,
  .../keyRings/{k}/cryptoKeys?cryptoKeyId=, .../cryptoKeys/{c}[:getIamPolicy (GET)|:setIamPolicy]
Resource Manager (cloudresourcemanager v1)  GET /v1/projects/{p},
  POST /v1/projects/{p}:getIamPolicy | :setIamPolicy
Firestore (firestore v1)  GET/POST /v1/projects/{p}/databases[/{d}]?databaseId=  (LRO on
  /v1/projects/{p}/databases/{d}/operations/{op}: done)
Binary Authorization (binaryauthorization v1)  GET | PUT /v1/projects/{p}/policy: one policy per
  project, which always exists ("There is at most one policy per project", Policy.name in the
  discovery document); until a PUT, GET answers the default policy Google documents
  (https://cloud.google.com/binary-authorization/docs/key-concepts#default_policy: allow all
  images, globalPolicyEvaluationMode ENABLE); PUT replaces it (the request is a Policy).
Cloud Storage (storage v1)  buckets and their IAM policies: storage.py
Artifact Registry (artifactregistry v1)  GET /v1/projects/{p}/locations/{l}/repositories/{r}
  :getIamPolicy, POST ...:setIamPolicy (SetIamPolicyRequest), on repositories that exist
  (:meth:`ProjectApis.add_repository`: the registry belongs to its own project); a missing one
  answers 404 NOT_FOUND "Requested entity was not found."

Every body is checked against the discovery schema of the method it serves (schema.py), then
against the documented cross-field rules (rules.py). A service that Service Usage has not
enabled answers 403 SERVICE_DISABLED with Google's error shape. IAM policies carry an etag:
setIamPolicy with a stale etag answers 409 ABORTED; a member naming a service account that does
not exist (or was created less than ``iam_visibility_delay`` reads ago: IAM is eventually
consistent) answers 400 INVALID_ARGUMENT.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from . import rules, schema

PROJECT_NUMBER = "123456789012"
# What the console shows for each service in the SERVICE_DISABLED message.
TITLES = {"container.googleapis.com": "Kubernetes Engine API",
          "compute.googleapis.com": "Compute Engine API", "dns.googleapis.com": "Cloud DNS API",
          "iam.googleapis.com": "Identity and Access Management (IAM) API",
          "cloudkms.googleapis.com": "Cloud Key Management Service (KMS) API",
          "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
          "firestore.googleapis.com": "Cloud Firestore API",
          "binaryauthorization.googleapis.com": "Binary Authorization API",
          "storage.googleapis.com": "Cloud Storage API",
          "artifactregistry.googleapis.com": "Artifact Registry API",
          "serviceusage.googleapis.com": "Service Usage API"}


def service_disabled(service: str, project: str) -> dict[str, Any]:
    """Google's answer to a call of a disabled API (status PERMISSION_DENIED, ErrorInfo
    reason SERVICE_DISABLED with metadata.service), as documented on
    https://cloud.google.com/service-usage/docs/troubleshooting and returned by every API."""
    title = TITLES.get(service, service)
    url = (f"https://console.developers.google.com/apis/api/{service}/overview?project="
           f"{PROJECT_NUMBER}")
    return {"error": {
        "code": 403, "status": "PERMISSION_DENIED",
        "message": (f"{title} has not been used in project {PROJECT_NUMBER} before or it is "
                    f"disabled. Enable it by visiting {url} then retry. If you enabled this API "
                    "recently, wait a few minutes for the action to propagate to our systems "
                    "and retry."),
        "errors": [{"message": f"{title} has not been used in project {PROJECT_NUMBER} before "
                               "or it is disabled.", "domain": "usageLimits",
                    "reason": "accessNotConfigured", "extendedHelp": url}],
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
             "domain": "googleapis.com",
             "metadata": {"service": service, "consumer": f"projects/{PROJECT_NUMBER}",
                          "serviceTitle": title, "activationUrl": url,
                          "containerInfo": PROJECT_NUMBER}},
            {"@type": "type.googleapis.com/google.rpc.Help",
             "links": [{"description": "Google developers console API activation",
                        "url": url}]}]}}


def error(code: int, message: str, status: str, reason: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        body["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return {"error": body}


def not_found(what: str) -> tuple[int, Any]:
    return 404, error(404, f"The resource '{what}' was not found", "NOT_FOUND", "notFound")


@dataclass
class Route:
    """One collection of a REST API: where it lives and how it creates and updates."""

    service: str
    api: str
    pattern: re.Pattern[str]
    insert: str | None = None    # method id of the create call (its request $ref is checked)
    patch: str | None = None     # method id of the patch call, None: no in-place update
    id_from: str = "name"        # body field, or "?param" for a query parameter
    style: str = "compute"       # compute | sync | firestore
    rules: tuple[Callable[[dict[str, Any]], str | None], ...] = ()


_C = r"/compute/v1/projects/(?P<p>[^/]+)"
_V1 = r"/v1/projects/(?P<p>[^/]+)"


def _compute(coll: str, scope: str, kind: str, *, patch: bool = True,
             extra_rules: tuple[Callable[[dict[str, Any]], str | None], ...] = ()) -> Route:
    where = "/global" if scope == "global" else r"/regions/(?P<r>[^/]+)"
    return Route("compute.googleapis.com", "compute.v1",
                 re.compile(f"{_C}{where}/{coll}"), f"compute.{kind}.insert",
                 f"compute.{kind}.patch" if patch else None, rules=extra_rules)


ROUTES = [
    _compute("addresses", "global", "globalAddresses", patch=False,
             extra_rules=(rules.global_external_address_value,)),
    _compute("networks", "global", "networks"),
    _compute("firewalls", "global", "firewalls"),
    _compute("healthChecks", "global", "healthChecks"),
    _compute("backendServices", "global", "backendServices"),
    _compute("targetTcpProxies", "global", "targetTcpProxies", patch=False),
    _compute("forwardingRules", "global", "globalForwardingRules"),
    _compute("subnetworks", "regional", "subnetworks",
             extra_rules=(rules.subnet_ranges_do_not_overlap,)),
    _compute("routers", "regional", "routers"),
    Route("iam.googleapis.com", "iam.v1", re.compile(f"{_V1}/serviceAccounts"),
          "iam.projects.serviceAccounts.create", "iam.projects.serviceAccounts.patch",
          id_from="accountId", style="sync"),
    Route("cloudkms.googleapis.com", "cloudkms.v1",
          re.compile(f"{_V1}/locations/(?P<l>[^/]+)/keyRings"),
          "cloudkms.projects.locations.keyRings.create", None, id_from="?keyRingId",
          style="sync"),
    Route("cloudkms.googleapis.com", "cloudkms.v1",
          re.compile(f"{_V1}/locations/(?P<l>[^/]+)/keyRings/(?P<k>[^/]+)/cryptoKeys"),
          "cloudkms.projects.locations.keyRings.cryptoKeys.create",
          "cloudkms.projects.locations.keyRings.cryptoKeys.patch", id_from="?cryptoKeyId",
          style="sync", rules=(rules.crypto_key_rotation,)),
    Route("firestore.googleapis.com", "firestore.v1", re.compile(f"{_V1}/databases"),
          "firestore.projects.databases.create", None, id_from="?databaseId",
          style="firestore"),
]


def _etag(policy: dict[str, Any]) -> str:
    import base64

    digest = hashlib.sha256(json.dumps(policy.get("bindings", []), sort_keys=True).encode())
    return base64.b64encode(digest.digest()[:8]).decode()


@dataclass
class ProjectApis:
    """State of the project-level APIs; :class:`GcpDouble` delegates to :meth:`handle`."""

    op_polls: int = 1
    # None: every service is enabled (a project that already runs); a set: only those.
    enabled: set[str] | None = None
    iam_visibility_delay: int = 0  # setIamPolicy calls that do not see a new service account
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    negs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # zone -> NEGs
    before_set_policy: Callable[[ProjectApis, str], None] | None = None
    # workload identity pools that exist (GcpDouble: those of its clusters)
    workload_pools: Callable[[], set[str]] = set
    storage: Any = None  # StorageApi (storage.py), made in __post_init__
    _pending: dict[str, tuple[int, Callable[[], None]]] = field(default_factory=dict)
    _unseen: dict[str, int] = field(default_factory=dict)
    _seq: int = 0
    _addr: int = 0

    def __post_init__(self) -> None:
        from .storage import StorageApi

        if self.storage is None:
            self.storage = StorageApi(account_exists=lambda email: any(
                k.endswith(f"/serviceAccounts/{email}") for k in self.resources))

    # --- fixtures -----------------------------------------------------------------------
    def is_enabled(self, service: str) -> bool:
        return self.enabled is None or service in self.enabled

    def add_global_address(self, project: str, name: str, ip: str) -> None:
        key = f"/compute/v1/projects/{project}/global/addresses/{name}"
        self.resources[key] = {"kind": "compute#address", "name": name, "address": ip,
                               "addressType": "EXTERNAL", "ipVersion": "IPV4",
                               "status": "RESERVED", "selfLink": f"https://www.googleapis.com{key}"}

    def add_repository(self, project: str, location: str, name: str) -> None:
        """An Artifact Registry repository (another project's registry: not ours to create)."""
        key = f"projects/{project}/locations/{location}/repositories/{name}"
        self.resources[key] = {"name": key, "format": "DOCKER"}

    def add_neg(self, project: str, zone: str, name: str) -> None:
        self.negs.setdefault(zone, []).append({
            "kind": "compute#networkEndpointGroup", "name": name, "zone": zone,
            "networkEndpointType": "GCE_VM_IP_PORT", "size": 1,
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/zones/"
                        f"{zone}/networkEndpointGroups/{name}"})

    def policy(self, resource: str) -> dict[str, Any]:
        return copy.deepcopy(self.policies.get(resource) or {"version": 1, "etag": "ACAB"})

    def add_binding(self, resource: str, role: str, member: str) -> None:
        """Someone else's binding (another team, the console)."""
        pol = self.policies.setdefault(resource, {"version": 1, "bindings": []})
        pol.setdefault("bindings", [])
        for b in pol["bindings"]:
            if b["role"] == role:
                b["members"] = sorted({*b["members"], member})
                break
        else:
            pol["bindings"].append({"role": role, "members": [member]})
        pol["etag"] = _etag(pol)

    # --- dispatch -----------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any] | None:
        path, _, query = raw_path.partition("?")
        path = unquote(path)
        params = {k: v[0] for k, v in parse_qs(query).items()}
        if path.startswith("/storage/v1/"):
            owner = self.storage.project_of(path, params)
            if owner and not self.is_enabled("storage.googleapis.com"):
                return 403, service_disabled("storage.googleapis.com", owner)
            return self.storage.handle(method, path, params, body)  # type: ignore[no-any-return]
        project = self._project_of(path)
        service = self._service_of(path)
        if service is None:
            return None
        if project and not self.is_enabled(service):
            return 403, service_disabled(service, project)
        if service == "serviceusage.googleapis.com":
            return self._serviceusage(method, path, body)
        if service == "cloudresourcemanager.googleapis.com" and ":" not in path:
            if method != "GET":
                return 400, error(400, "The double serves only GET on a project.",
                                  "INVALID_ARGUMENT")
            return 200, {"projectNumber": PROJECT_NUMBER, "projectId": project,
                         "lifecycleState": "ACTIVE", "name": project}
        if service == "cloudresourcemanager.googleapis.com":
            m = re.fullmatch(r"/v1/projects/([^/]+):(getIamPolicy|setIamPolicy)", path)
            assert m
            return self._iam(method, m.group(2), f"projects/{m.group(1)}", body,
                             api="cloudresourcemanager.v1",
                             method_id=f"cloudresourcemanager.projects.{m.group(2)}")
        if service == "binaryauthorization.googleapis.com":
            return self._binauthz_policy(method, path, body)
        m = re.fullmatch(r"(/compute/v1/projects/[^/]+/(?:global|regions/[^/]+))/operations/"
                         r"([^/]+)", path)
        if m or re.fullmatch(r"/v1/projects/[^/]+/databases/[^/]+/operations/[^/]+", path):
            return self._read_op(path)
        m = re.fullmatch(r"/compute/v1/projects/([^/]+)/zones/([^/]+)/networkEndpointGroups",
                         path)
        if m and method == "GET":
            name = (params.get("filter") or "").partition("=")[2].strip().strip('"')
            found = [n for n in self.negs.get(m.group(2), []) if not name or n["name"] == name]
            return 200, {"kind": "compute#networkEndpointGroupList", "items": found} \
                if found else {"kind": "compute#networkEndpointGroupList"}
        verb_m = re.fullmatch(r"(.*):(getIamPolicy|setIamPolicy)", path)
        if verb_m:
            resource = verb_m.group(1).removeprefix("/v1/")
            api, prefix = (("iam.v1", "iam.projects.serviceAccounts.")
                           if "/serviceAccounts/" in path else
                           ("artifactregistry.v1", "artifactregistry.projects.locations."
                                                   "repositories.")
                           if "/repositories/" in path else
                           ("cloudkms.v1", "cloudkms.projects.locations.keyRings.cryptoKeys."))
            mid = prefix + verb_m.group(2)
            if resource not in self.resources:
                if api == "artifactregistry.v1":
                    return 404, error(404, "Requested entity was not found.", "NOT_FOUND")
                return not_found(resource)
            return self._iam(method, verb_m.group(2), resource, body, api=api, method_id=mid)
        for route in ROUTES:
            m = route.pattern.fullmatch(path)
            if m and method == "POST":
                return self._insert(route, m, path, params, body)
            im = re.fullmatch(route.pattern.pattern + r"/([^/]+)", path)
            if im:
                return self._item(route, im, path, method, params=params, body=body)
        return 404, error(404, f"The double does not serve {method} {path}.", "NOT_FOUND")

    @staticmethod
    def _project_of(path: str) -> str | None:
        m = re.match(r"/(?:compute/v1|dns/v1|v1)/projects/([^/:]+)", path)
        return m.group(1) if m else None

    @staticmethod
    def _service_of(path: str) -> str | None:
        if path.startswith("/compute/v1/"):
            return "compute.googleapis.com"
        if path.startswith("/v1/operations/") or re.match(r"/v1/projects/[^/]+/services", path):
            return "serviceusage.googleapis.com"
        if re.fullmatch(r"/v1/projects/[^/]+(:(get|set)IamPolicy)?", path):
            return "cloudresourcemanager.googleapis.com"
        if re.match(r"/v1/projects/[^/]+/serviceAccounts", path):
            return "iam.googleapis.com"
        if re.match(r"/v1/projects/[^/]+/locations/[^/]+/keyRings", path):
            return "cloudkms.googleapis.com"
        if re.match(r"/v1/projects/[^/]+/databases", path):
            return "firestore.googleapis.com"
        if re.match(r"/v1/projects/[^/]+/locations/[^/]+/repositories/", path):
            return "artifactregistry.googleapis.com"
        if re.fullmatch(r"/v1/projects/[^/]+/policy", path):
            return "binaryauthorization.googleapis.com"
        return None

    # --- Binary Authorization: one policy per project ----------------------------------
    def _binauthz_policy(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        name = path.removeprefix("/v1/")
        if method == "PUT":
            bad = self._validate("binaryauthorization.v1",
                                 "binaryauthorization.projects.updatePolicy", body or {})
            if bad:
                return bad
            if not (body or {}).get("defaultAdmissionRule"):
                return 400, error(400, "Policy.default_admission_rule is required.",
                                  "INVALID_ARGUMENT")
            stored = {**copy.deepcopy(body), "name": name}
            stored.pop("updateTime", None)
            stored["etag"] = hashlib.sha256(json.dumps(stored, sort_keys=True).encode()
                                            ).hexdigest()[:16]
            stored["updateTime"] = "2026-01-01T00:00:00Z"
            self.resources[path] = stored
            return 200, copy.deepcopy(stored)
        if method != "GET":
            return 400, error(400, f"The double serves GET and PUT on {name}.",
                              "INVALID_ARGUMENT")
        return 200, copy.deepcopy(self.resources.get(path) or {
            "name": name, "globalPolicyEvaluationMode": "ENABLE",
            "defaultAdmissionRule": {"evaluationMode": "ALWAYS_ALLOW",
                                     "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG"}})

    # --- generic collections ------------------------------------------------------------
    def _validate(self, api: str, method_id: str, body: Any) -> tuple[int, Any] | None:
        ref = schema.request_ref(api, method_id)
        if ref is None:
            return None
        found = schema.validate(api, ref, body)
        if found.items:
            return 400, found.error()
        return None

    def _insert(self, route: Route, m: re.Match[str], path: str, params: dict[str, str],
                body: Any) -> tuple[int, Any]:
        assert route.insert
        bad = self._validate(route.api, route.insert, body or {})
        if bad:
            return bad
        body = copy.deepcopy(body or {})
        for rule in route.rules:
            message = rule(body)
            if message:
                return 400, error(400, message, "INVALID_ARGUMENT", "invalid")
        project = m.group("p")
        if route.id_from.startswith("?"):
            ident = params.get(route.id_from[1:], "")
        elif route.api == "iam.v1":
            ident = f"{body.get('accountId')}@{project}.iam.gserviceaccount.com"
        else:
            ident = str(body.get(route.id_from, ""))
        if not ident:
            return 400, error(400, f"Missing the name of the new resource ({route.id_from}).",
                              "INVALID_ARGUMENT", "required")
        key = f"{path}/{ident}".removeprefix("/v1/")
        if key in self.resources:
            return 409, error(409, f"The resource '{key}' already exists", "ALREADY_EXISTS",
                              "alreadyExists")
        if _kind(path) == "forwardingRule" and "/addresses/" in str(body.get("IPAddress", "")):
            # forwardingRules.insert reference: IPAddress may name an address resource by URL;
            # Google resolves it to the address's IP.
            ref = str(body["IPAddress"])
            ref = "projects/" + ref.split("projects/", 1)[1] if "projects/" in ref else ref
            target = self.resources.get(f"/compute/v1/{ref}")
            if target is None:
                return 400, error(400, f"Invalid value for field 'resource.IPAddress': "
                                       f"'{body['IPAddress']}'. The referenced address does not "
                                       "exist.", "INVALID_ARGUMENT", "invalid")
            body["IPAddress"] = target["address"]
        stored = self._server_fields(route, key, path, ident, body=body, m=m)
        if route.style == "sync":
            self.resources[key] = stored
            if route.api == "iam.v1" and self.iam_visibility_delay:
                self._unseen[stored["email"]] = self.iam_visibility_delay
            return 200, copy.deepcopy(stored)
        if route.style == "firestore":
            return 200, self._lro(f"projects/{project}/databases/{ident}/operations/",
                                  lambda: self.resources.__setitem__(key, stored),
                                  "type.googleapis.com/google.firestore.admin.v1."
                                  "CreateDatabaseMetadata", stored)
        self.resources[key] = stored
        return 200, self._compute_op(m, "insert", stored["selfLink"], lambda: None)

    def _server_fields(self, route: Route, key: str, path: str, ident: str, *,
                       body: dict[str, Any], m: re.Match[str]) -> dict[str, Any]:
        self._seq += 1
        if route.api == "compute.v1":
            out = copy.deepcopy(body)
            out.update({"id": str(1000 + self._seq), "kind": f"compute#{_kind(path)}",
                        "creationTimestamp": "2026-12-01T00:00:00.000-08:00",
                        "selfLink": f"https://www.googleapis.com{key}"})
            if "/regions/" in path:
                out["region"] = (f"https://www.googleapis.com/compute/v1/projects/"
                                 f"{m.group('p')}/regions/{m.group('r')}")
            if _kind(path) == "address":
                self._addr += 1
                out.update({"address": out.get("address") or f"34.120.0.{self._addr}",
                            "status": "RESERVED", "addressType": out.get("addressType",
                                                                          "EXTERNAL")})
            if _kind(path) in ("backendService", "healthCheck", "subnetwork", "network",
                               "router"):
                out["fingerprint"] = self._fingerprint()
            if _kind(path) == "network":
                out.setdefault("routingConfig", {"routingMode": "REGIONAL"})
            return out
        if route.api == "iam.v1":
            sa = copy.deepcopy(body.get("serviceAccount") or {})
            sa.update({"name": key, "projectId": m.group("p"), "email": ident,
                       "uniqueId": str(10 ** 20 + self._seq), "etag": "MDEwMjE5MjA=",
                       "oauth2ClientId": str(10 ** 20 + self._seq)})
            return sa
        out = copy.deepcopy(body)
        out["name"] = key
        out["createTime"] = "2026-12-01T00:00:00Z"
        if route.api == "cloudkms.v1" and "/cryptoKeys" in path:
            out.setdefault("versionTemplate", {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
                                               "protectionLevel": "SOFTWARE"})
            out["primary"] = {"name": f"{key}/cryptoKeyVersions/1", "state": "ENABLED"}
        if route.api == "firestore.v1":
            out.update({"uid": f"uid-{self._seq}", "concurrencyMode": "PESSIMISTIC",
                        "etag": f"e{self._seq}"})
        return out

    def _fingerprint(self) -> str:
        self._seq += 1
        return f"fp{self._seq}="

    def _item(self, route: Route, m: re.Match[str], path: str, method: str, *,
              params: dict[str, str], body: Any) -> tuple[int, Any]:
        key = path.removeprefix("/v1/")
        live = self.resources.get(key)
        if live is None:
            if route.api == "iam.v1":
                return 404, error(404, "Unknown service account", "NOT_FOUND")
            return not_found(key)
        if method == "GET":
            return 200, copy.deepcopy(live)
        if method != "PATCH" or route.patch is None:
            return 400, error(400, f"The double does not serve {method} on this resource "
                                   "(the API has no such update).", "INVALID_ARGUMENT")
        bad = self._validate(route.api, route.patch, body or {})
        if bad:
            return bad
        body = copy.deepcopy(body or {})
        if route.api == "iam.v1":
            mask = (body.get("updateMask") or "").split(",")
            for f in mask:
                if f in (body.get("serviceAccount") or {}):
                    live[f] = body["serviceAccount"][f]
            return 200, copy.deepcopy(live)
        if route.api == "cloudkms.v1":
            for f in (params.get("updateMask") or "").split(","):
                if f and f in body:
                    live[f] = body[f]
            return 200, copy.deepcopy(live)
        if "fingerprint" in live and body.get("fingerprint") not in (None, live["fingerprint"]):
            return 412, error(412, "Supplied fingerprint does not match current fingerprint.",
                              "FAILED_PRECONDITION", "conditionNotMet")
        merged = {**live, **{k: v for k, v in body.items() if k != "fingerprint"}}
        for rule in route.rules:
            message = rule(merged)
            if message:
                return 400, error(400, message, "INVALID_ARGUMENT", "invalid")

        def effect() -> None:
            live.clear()
            live.update(merged)
            if "fingerprint" in live:
                live["fingerprint"] = self._fingerprint()

        return 200, self._compute_op(m, "patch", live["selfLink"], effect)

    # --- operations ---------------------------------------------------------------------
    def _compute_op(self, m: re.Match[str], kind: str, target: str,
                    effect: Callable[[], None]) -> dict[str, Any]:
        self._seq += 1
        where = (f"regions/{m.group('r')}" if "r" in m.groupdict() and m.group("r")
                 else "global")
        name = f"operation-{self._seq}"
        link = f"https://www.googleapis.com/compute/v1/projects/{m.group('p')}/{where}/" \
               f"operations/{name}"
        op = {"kind": "compute#operation", "name": name, "operationType": kind,
              "status": "PENDING", "progress": 0, "targetLink": target, "selfLink": link,
              "insertTime": "2026-12-01T00:00:00.000-08:00"}
        if where != "global":
            op["region"] = where
        self.operations[link.split("/compute/v1/", 1)[1]] = op
        self._pending[link.split("/compute/v1/", 1)[1]] = (self.op_polls, effect)
        if self.op_polls <= 0:
            self._done(link.split("/compute/v1/", 1)[1])
        return copy.deepcopy(op)

    def _lro(self, prefix: str, effect: Callable[[], None], meta_type: str,
             response: dict[str, Any] | None = None) -> dict[str, Any]:
        self._seq += 1
        name = f"{prefix}op-{self._seq}"
        op: dict[str, Any] = {"name": name, "metadata": {"@type": meta_type}}
        if response is not None:
            op["_response"] = response
        self.operations[name] = op
        self._pending[name] = (self.op_polls, effect)
        if self.op_polls <= 0:
            self._done(name)
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _done(self, name: str) -> None:
        op = self.operations[name]
        _, effect = self._pending.pop(name)
        effect()
        if op.get("kind") == "compute#operation":
            op["status"], op["progress"] = "DONE", 100
        else:
            op["done"] = True
            if "_response" in op:
                op["response"] = op.pop("_response")

    def _read_op(self, path: str) -> tuple[int, Any]:
        name = path.removeprefix("/compute/v1/").removeprefix("/v1/")
        op = self.operations.get(name)
        if op is None:
            return not_found(name)
        if name in self._pending:
            left, effect = self._pending[name]
            if left <= 1:
                self._done(name)
            else:
                self._pending[name] = (left - 1, effect)
                if op.get("kind") == "compute#operation":
                    op["status"] = "RUNNING"
        return 200, {k: v for k, v in op.items() if not k.startswith("_")}

    # --- Service Usage ------------------------------------------------------------------
    def _serviceusage(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path.startswith("/v1/operations/"):
            return self._read_op(path)
        m = re.fullmatch(r"/v1/projects/([^/]+)/services(?:/([^/:]+))?(?::(\w+))?", path)
        if not m:
            return 404, error(404, f"The double does not serve {path}.", "NOT_FOUND")
        _project, one, verb = m.groups()
        parent = f"projects/{PROJECT_NUMBER}"
        if method == "GET" and one:
            return 200, {"name": f"{parent}/services/{one}", "parent": parent,
                         "state": "ENABLED" if self.is_enabled(one) else "DISABLED"}
        if method == "GET":
            names = sorted(self.enabled if self.enabled is not None else TITLES)
            return 200, {"services": [{"name": f"{parent}/services/{s}", "parent": parent,
                                       "state": "ENABLED"} for s in names]}
        if method == "POST" and verb == "batchEnable":
            bad = self._validate("serviceusage.v1", "serviceusage.services.batchEnable",
                                 body or {})
            if bad:
                return bad
            ids = list((body or {}).get("serviceIds") or [])
            if not ids or len(ids) > 20:
                return 400, error(400, "serviceIds must name 1 to 20 services.",
                                  "INVALID_ARGUMENT")

            def enable() -> None:
                if self.enabled is not None:
                    self.enabled.update(ids)

            return 200, self._lro("operations/acat.p2-", enable,
                                  "type.googleapis.com/google.protobuf.Empty")
        return 400, error(400, f"The double does not serve {method} {path}.", "INVALID_ARGUMENT")

    # --- IAM policies -------------------------------------------------------------------
    def _iam(self, method: str, verb: str, resource: str, body: Any, *, api: str,
             method_id: str) -> tuple[int, Any]:
        if verb == "getIamPolicy":
            return 200, self.policy(resource)
        if method != "POST":
            return 400, error(400, "setIamPolicy is a POST.", "INVALID_ARGUMENT")
        bad = self._validate(api, method_id, body or {})
        if bad:
            return bad
        if self.before_set_policy is not None:
            hook, self.before_set_policy = self.before_set_policy, None
            hook(self, resource)
        new = copy.deepcopy((body or {}).get("policy") or {})
        current = self.policies.get(resource) or {"version": 1, "etag": "ACAB"}
        if new.get("etag") and new["etag"] != current.get("etag"):
            # cloudresourcemanager setIamPolicy reference: a stale etag is refused (409 ABORTED)
            return 409, error(409, "There were concurrent policy changes. Please retry the "
                                   "whole read-modify-write with exponential backoff.",
                              "ABORTED")
        for b in new.get("bindings") or []:
            for member in b.get("members") or []:
                pool = member.split(":", 1)[-1].split("[", 1)[0]
                if ".svc.id.goog[" in member and pool not in self.workload_pools():
                    # The pool <project>.svc.id.goog appears with the first cluster that enables
                    # workload identity (https://cloud.google.com/kubernetes-engine/docs/how-to/
                    # workload-identity); IAM refuses its members before.
                    return 400, error(400, f"Identity Pool does not exist ({pool}). Please "
                                           "check that you specified a valid resource name as "
                                           "returned in the `name` attribute in the "
                                           "configuration API.", "INVALID_ARGUMENT")
        members = [m.split(":", 1)[1] for b in new.get("bindings") or []
                   for m in b.get("members") or [] if m.startswith("serviceAccount:")]
        unseen = [e for e in members if self._unseen.get(e, 0) > 0]
        if unseen:
            # IAM is eventually consistent: a new account is refused for a few calls
            for email in unseen:
                self._unseen[email] -= 1
            return 400, error(400, f"Service account {unseen[0]} does not exist.",
                              "INVALID_ARGUMENT")
        for b in new.get("bindings") or []:
            for member in b.get("members") or []:
                if member.startswith("serviceAccount:") and member.endswith(
                        ".iam.gserviceaccount.com"):
                    email = member.split(":", 1)[1]
                    # a user-managed account of this project must exist; Google's service
                    # agents (service-N@container-engine-robot...) always do
                    # (also when granted on another project's resource: the registry's)
                    owner = email.split("@", 1)[1].split(".", 1)[0]
                    known = owner == resource.split("/")[1] or any(
                        k.startswith(f"projects/{owner}/serviceAccounts/")
                        for k in self.resources)
                    if known and (
                            f"projects/{owner}/serviceAccounts/{email}" not in self.resources):
                        return 400, error(400, f"Service account {email} does not exist.",
                                          "INVALID_ARGUMENT")
        new["etag"] = _etag(new)
        new.setdefault("version", 1)
        self.policies[resource] = new
        return 200, copy.deepcopy(new)


def _kind(path: str) -> str:
    coll = path.rstrip("/").split("/")[-1]
    return {"addresses": "address", "networks": "network", "firewalls": "firewall",
            "healthChecks": "healthCheck", "backendServices": "backendService",
            "targetTcpProxies": "targetTcpProxy", "forwardingRules": "forwardingRule",
            "subnetworks": "subnetwork", "routers": "router"}.get(coll, coll)
