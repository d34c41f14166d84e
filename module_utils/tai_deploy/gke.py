"""Converge a regional GKE cluster and its node pools through the GKE REST API (v1).

google.cloud.gcp_container_cluster creates clusters but never applies a change to an existing
one (google.cloud issue #197) and cannot express Spot VMs, release channels or workload
identity. This core reads the live cluster, compares it with the desired Cluster object (the
body rendered in build/<region>/gke/cluster.json) and calls the specific update methods:

- missing cluster: ``clusters.create`` with every node pool;
- cluster fields: ``clusters.update`` with one ``desiredXxx`` field per call (the API accepts
  exactly one), ``setAddons``, ``setNetworkPolicy``, ``setResourceLabels``;
- missing node pools: ``nodePools.create``; node pool fields: ``setAutoscaling``,
  ``setManagement`` and ``nodePools.update`` (labels, taints, machine type, disk size,
  workload metadata, locations).

GKE runs one operation per cluster at a time, so each call waits for its long-running
operation (``operations.get``) before the next, within one deadline. Fields GKE cannot change
in place (Spot, OAuth scopes, service account, shielded instance settings of a pool) fail with
a sentence naming the pool and the field instead of being silently ignored; create-only fields
(description, initial version, IP allocation, initial node counts) are only set on creation.

Comparison follows the API's JSON rules: proto3 omits false, 0, "" and empty collections, so a
desired ``disabled: false`` matches a missing key; labels and taints are compared exactly;
other lists ignore order.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .gcp_rest import GcpApiError, RestClient, path_segment
from .poll import Deadline, poll

# Cluster fields that clusters.update changes, one desiredXxx per call, in this order
# (ClusterUpdate in the container v1 discovery document).
UPDATE_FIELDS: tuple[tuple[str, str], ...] = (
    ("locations", "desiredLocations"),
    ("releaseChannel", "desiredReleaseChannel"),
    ("workloadIdentityConfig", "desiredWorkloadIdentityConfig"),
    ("loggingConfig", "desiredLoggingConfig"),
    ("monitoringConfig", "desiredMonitoringConfig"),
    ("shieldedNodes", "desiredShieldedNodes"),
    ("binaryAuthorization", "desiredBinaryAuthorization"),
    ("databaseEncryption", "desiredDatabaseEncryption"),
    ("controlPlaneEndpointsConfig", "desiredControlPlaneEndpointsConfig"),
)
# networkConfig fields clusters.update changes, and how the desiredXxx value is shaped.
NETWORK_UPDATES: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("defaultEnablePrivateNodes", "desiredDefaultEnablePrivateNodes", bool),
    ("enableIntraNodeVisibility", "desiredIntraNodeVisibilityConfig",
     lambda value: {"enabled": bool(value)}),
)
# Only a new cluster can take another value (what the operator must do is said once).
RECREATE_FIELDS = ("network", "subnetwork", "ipAllocationPolicy", "masterAuth")
RECREATE_NETWORK_FIELDS = ("datapathProvider",)
RECREATE_ADVICE = ("drain the region (playbooks/drain-region.yml), delete the cluster and rerun "
                   "the play to create it anew, or revert the setting")
# Set at creation only and harmless to leave (drift is reported, not fought).
CLUSTER_CREATE_ONLY = ("name", "description", "initialClusterVersion",
                       "defaultMaxPodsConstraint", "nodePools")
EXACT_MAPS = frozenset({"resourceLabels", "labels"})
# NodeConfig fields nodePools.update changes in place; the rest of the config is immutable.
POOL_CONFIG_UPDATABLE = ("machineType", "diskSizeGb", "labels", "taints",
                         "workloadMetadataConfig")
POOL_CREATE_ONLY = ("name", "initialNodeCount", "maxPodsConstraint", "upgradeSettings")
BUSY_STATUSES = ("PROVISIONING", "RECONCILING")


class GkeError(RuntimeError):
    """A cluster that cannot be converged; the message is one sentence."""


# Google's answer for an API that is not enabled: HTTP 403 whose error details carry
# {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
#  "metadata": {"service": "container.googleapis.com", ...}}
# (https://cloud.google.com/apis/design/errors#error_info), with the message "Kubernetes Engine
# API has not been used in project ... before or it is disabled. Enable it by visiting
# https://console.developers.google.com/apis/api/container.googleapis.com/overview?project=...".
_DISABLED_MESSAGE = re.compile(r"has not been used in project \S+ before or it is disabled")
_SERVICE_IN_TEXT = re.compile(r"apis/api/([a-z0-9.-]+\.googleapis\.com)")


def service_disabled(exc: GcpApiError) -> str:
    """The service (container.googleapis.com) when the error says it is not enabled, else ""."""
    if exc.status != 403:
        return ""
    # gcp_rest keeps the ErrorInfo's reason and metadata; the message is the fallback.
    reason = str(getattr(exc, "reason", "") or "")
    if not (reason == "SERVICE_DISABLED" or _DISABLED_MESSAGE.search(exc.message)):
        return ""
    service = str((getattr(exc, "metadata", None) or {}).get("service") or "")
    if service:
        return service
    found = _SERVICE_IN_TEXT.search(exc.message)
    return found.group(1) if found else "container.googleapis.com"


def disabled_sentence(service: str, ref: ClusterRef) -> str:
    return (f"The API {service} is not enabled in project {ref.project}: run the project phase "
            f"(`ansible-playbook playbooks/project.yml -l {ref.location} -e tai_apply=true`) or "
            f"enable {service} in the project.")


# ---------------------------------------------------------------------------------------------
# Comparison with proto3 JSON semantics


def is_default(value: Any) -> bool:
    return value is None or value is False or value == 0 or value in ("", [], {})


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _scalar_equal(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return bool(want) == bool(have) if have is not None else not want
    if isinstance(want, int) and isinstance(have, str):  # int64 travels as a JSON string
        return str(want) == have
    if isinstance(want, str) and isinstance(have, int):
        return want == str(have)
    return bool(want == have)


def covers(want: Any, have: Any, key: str = "") -> bool:
    """True when the live value ``have`` already has everything ``want`` asks for."""
    if have is None:
        return is_default(want) or (isinstance(want, dict) and all(
            covers(v, None, k) for k, v in want.items()))
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        if key in EXACT_MAPS:
            return {k: str(v) for k, v in want.items()} == {k: str(v) for k, v in have.items()}
        return all(covers(v, have.get(k), k) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        unmatched = list(have)
        for item in sorted(want, key=_canon):
            hit = next((h for h in unmatched if covers(item, h)), _MISSING)
            if hit is _MISSING:
                return False
            unmatched.remove(hit)
        return True
    return _scalar_equal(want, have)


_MISSING = object()


def project(want: Any, have: Any) -> Any:
    """The live value cut to the shape of the desired one, for a readable diff."""
    if isinstance(want, dict) and isinstance(have, dict):
        # A key the API omitted because it holds the default shows as the desired default.
        return {k: project(v, have[k]) if k in have else copy.deepcopy(v)
                for k, v in want.items() if k in have or covers(v, None, k)}
    if (isinstance(want, list) and isinstance(have, list)
            and all(isinstance(w, dict) and "name" in w for w in want)):
        live = _pool_by_name(have)
        return [project(w, live[w["name"]]) for w in want if w["name"] in live]
    return copy.deepcopy(have)


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass
class Action:
    """One API call of the plan."""

    kind: str
    target: str
    method: str
    path: str
    body: dict[str, Any]
    fields: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "method": self.method,
                "path": self.path, "fields": self.fields, "body": self.body}


@dataclass
class ClusterRef:
    project: str
    location: str
    name: str

    @property
    def parent(self) -> str:
        return f"/v1/projects/{path_segment(self.project)}/locations/{path_segment(self.location)}"

    @property
    def path(self) -> str:
        return f"{self.parent}/clusters/{path_segment(self.name)}"

    def pool_path(self, pool: str) -> str:
        return f"{self.path}/nodePools/{path_segment(pool)}"

    def describe(self) -> str:
        return f"cluster {self.name} in {self.location} (project {self.project})"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    immutable: list[str] = field(default_factory=list)
    recreate: list[str] = field(default_factory=list)


def _pool_by_name(pools: Any) -> dict[str, dict[str, Any]]:
    return {str(p["name"]): p for p in pools or [] if isinstance(p, dict) and "name" in p}


def plan_cluster(ref: ClusterRef, desired: Mapping[str, Any],
                 live: Mapping[str, Any] | None) -> Plan:
    """Every call needed to bring ``live`` (None: no cluster) to ``desired``."""
    plan = Plan()
    if live is None:
        plan.actions.append(Action("create_cluster", ref.name, "POST", f"{ref.parent}/clusters",
                                   {"cluster": dict(desired)}, ["*"]))
        return plan
    _plan_cluster_fields(ref, desired, live, plan)
    live_pools = _pool_by_name(live.get("nodePools"))
    for pool in desired.get("nodePools") or []:
        name = str(pool["name"])
        if name not in live_pools:
            plan.actions.append(Action("create_node_pool", name, "POST",
                                       f"{ref.path}/nodePools", {"nodePool": dict(pool)}, ["*"]))
        else:
            _plan_pool(ref, pool, live_pools[name], plan)
    wanted = {str(p["name"]) for p in desired.get("nodePools") or []}
    extra = sorted(set(live_pools) - wanted)
    if extra:
        plan.warnings.append(f"Node pool(s) {', '.join(extra)} of {ref.describe()} are not in "
                             "the desired state; they are left as they are.")
    _version_warning(ref, desired, live, plan)
    return plan


def _basename(value: Any) -> str:
    return str(value or "").rstrip("/").rsplit("/", 1)[-1]


def _plan_cluster_fields(ref: ClusterRef, desired: Mapping[str, Any],
                         live: Mapping[str, Any], plan: Plan) -> None:
    def differs(key: str) -> bool:
        return key in desired and not covers(desired[key], live.get(key), key)

    _plan_recreate(desired, live, plan)
    # Network policy enforcement needs its add-on first: addons, then the policy.
    if differs("addonsConfig"):
        plan.actions.append(Action("set_addons", ref.name, "POST", f"{ref.path}:setAddons",
                                   {"addonsConfig": desired["addonsConfig"]}, ["addonsConfig"]))
    if differs("networkPolicy"):
        plan.actions.append(Action("set_network_policy", ref.name, "POST",
                                   f"{ref.path}:setNetworkPolicy",
                                   {"networkPolicy": desired["networkPolicy"]},
                                   ["networkPolicy"]))
    if differs("legacyAbac"):
        plan.actions.append(Action("set_legacy_abac", ref.name, "POST",
                                   f"{ref.path}:setLegacyAbac",
                                   {"enabled": bool((desired["legacyAbac"] or {}).get("enabled"))},
                                   ["legacyAbac"]))
    for key, update_key in UPDATE_FIELDS:
        if differs(key):
            plan.actions.append(Action("update_cluster", ref.name, "PUT", ref.path,
                                       {"update": {update_key: desired[key]}}, [key]))
    want_net = desired.get("networkConfig") or {}
    have_net = live.get("networkConfig") or {}
    for key, update_key, shape in NETWORK_UPDATES:
        if key == "defaultEnablePrivateNodes" and _peered(live):
            continue  # only recreation changes it (see _plan_recreate)
        if key in want_net and not covers(want_net[key], have_net.get(key), key):
            plan.actions.append(Action("update_cluster", ref.name, "PUT", ref.path,
                                       {"update": {update_key: shape(want_net[key])}},
                                       [f"networkConfig.{key}"]))
    if differs("maintenancePolicy"):
        policy = dict(desired["maintenancePolicy"])
        # The policy's resourceVersion guards against overwriting a concurrent change.
        version = (live.get("maintenancePolicy") or {}).get("resourceVersion")
        if version:
            policy["resourceVersion"] = version
        plan.actions.append(Action("set_maintenance_policy", ref.name, "POST",
                                   f"{ref.path}:setMaintenancePolicy",
                                   {"maintenancePolicy": policy}, ["maintenancePolicy"]))
    if differs("resourceLabels"):
        plan.actions.append(Action(
            "set_resource_labels", ref.name, "POST", f"{ref.path}:setResourceLabels",
            {"resourceLabels": desired["resourceLabels"],
             "labelFingerprint": str(live.get("labelFingerprint", ""))}, ["resourceLabels"]))
    handled = ({k for k, _ in UPDATE_FIELDS} | set(RECREATE_FIELDS)
               | {"addonsConfig", "networkPolicy", "resourceLabels", "legacyAbac",
                  "networkConfig", "maintenancePolicy"})
    for key in sorted(set(desired) - handled - set(CLUSTER_CREATE_ONLY)):
        if differs(key):
            plan.immutable.append(f"{key} of {ref.describe()}")
    for key in sorted(set(want_net) - {k for k, _, _ in NETWORK_UPDATES}
                      - set(RECREATE_NETWORK_FIELDS)):
        if not covers(want_net[key], have_net.get(key), key):
            plan.immutable.append(f"networkConfig.{key} of {ref.describe()}")
    drift = [k for k in CLUSTER_CREATE_ONLY
             if k not in ("name", "nodePools") and k in desired
             and not covers(desired[k], live.get(k), k) and k != "initialClusterVersion"]
    if drift:
        plan.warnings.append(f"{', '.join(drift)} of {ref.describe()} differ from the desired "
                             "state but can only be set when the cluster is created.")


def _plan_recreate(desired: Mapping[str, Any], live: Mapping[str, Any], plan: Plan) -> None:
    """Fields only a new cluster can change: listed with live and desired values."""
    for key in RECREATE_FIELDS:
        if key not in desired:
            continue
        want, have = desired[key], live.get(key)
        if key in ("network", "subnetwork"):
            # The API returns the short name (tai-vpc); the body names the full path.
            same = _basename(want) == _basename(have) or (not have and key == "network"
                                                          and _basename(want) == "default")
        else:
            same = covers(want, have, key)
        if not same:
            plan.recreate.append(f"{key} (live {_short(have)}, desired {_short(want)})")
    want_net = desired.get("networkConfig") or {}
    have_net = live.get("networkConfig") or {}
    for key in RECREATE_NETWORK_FIELDS:
        have_value = have_net.get(key)
        if key == "datapathProvider" and have_value in (None, "DATAPATH_PROVIDER_UNSPECIFIED"):
            have_value = "LEGACY_DATAPATH"  # unset is kube-proxy, the legacy datapath
        if key in want_net and not covers(want_net[key], have_value, key):
            plan.recreate.append(f"networkConfig.{key} (live {_short(have_value)}, "
                                 f"desired {_short(want_net[key])})")
    # Private nodes of a cluster made with VPC peering (privateClusterConfig, older clusters)
    # cannot be switched; clusters.update changes defaultEnablePrivateNodes on the others.
    if _peered(live) and "defaultEnablePrivateNodes" in want_net:
        have_private = bool((live.get("privateClusterConfig") or {}).get("enablePrivateNodes"))
        if bool(want_net["defaultEnablePrivateNodes"]) != have_private:
            plan.recreate.append(
                f"private nodes of a VPC-peering private cluster (live {_short(have_private)}, "
                f"desired {_short(bool(want_net['defaultEnablePrivateNodes']))})")


def _peered(live: Mapping[str, Any]) -> bool:
    return bool((live.get("privateClusterConfig") or {}).get("peeringName"))


def _plan_pool(ref: ClusterRef, want: Mapping[str, Any], have: Mapping[str, Any],
               plan: Plan) -> None:
    name = str(want["name"])
    path = ref.pool_path(name)
    if "autoscaling" in want and not covers(want["autoscaling"], have.get("autoscaling")):
        plan.actions.append(Action("set_node_pool_autoscaling", name, "POST",
                                   f"{path}:setAutoscaling",
                                   {"autoscaling": want["autoscaling"]}, ["autoscaling"]))
    if "management" in want and not covers(want["management"], have.get("management")):
        plan.actions.append(Action("set_node_pool_management", name, "POST",
                                   f"{path}:setManagement",
                                   {"management": want["management"]}, ["management"]))
    # nodePools.update requires nodeVersion and imageType: the live ones, so nothing upgrades.
    base = {"nodeVersion": have.get("version") or "-",
            "imageType": (have.get("config") or {}).get("imageType", "")}
    want_cfg = want.get("config") or {}
    have_cfg = have.get("config") or {}
    if "locations" in want and not covers(want["locations"], have.get("locations")):
        plan.actions.append(Action("update_node_pool", name, "PUT", path,
                                   {**base, "locations": want["locations"]}, ["locations"]))
    for key in POOL_CONFIG_UPDATABLE:
        if key not in want_cfg or covers(want_cfg[key], have_cfg.get(key), key):
            continue
        value = want_cfg[key]
        if key == "labels":
            value = {"labels": value}
        elif key == "taints":
            value = {"taints": value}
        plan.actions.append(Action("update_node_pool", name, "PUT", path,
                                   {**base, key: value}, [f"config.{key}"]))
    for key in sorted(set(want_cfg) - set(POOL_CONFIG_UPDATABLE)):
        if not covers(want_cfg[key], have_cfg.get(key), key):
            plan.immutable.append(
                f"config.{key} of node pool {name} (live {_short(have_cfg.get(key))}, desired "
                f"{_short(want_cfg[key])})")
    for key in sorted(set(want) - {"config", "autoscaling", "management", "locations"}
                      - set(POOL_CREATE_ONLY)):
        if not covers(want[key], have.get(key), key):
            plan.immutable.append(f"{key} of node pool {name}")


def _short(value: Any) -> str:
    text = _canon(value) if value is not None else "unset"
    return text if len(text) <= 80 else text[:77] + "..."


def _minor(version: Any) -> tuple[int, int] | None:
    m = re.match(r"^(\d+)\.(\d+)", str(version or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _version_warning(ref: ClusterRef, desired: Mapping[str, Any], live: Mapping[str, Any],
                     plan: Plan) -> None:
    want, have = _minor(desired.get("initialClusterVersion")), _minor(
        live.get("currentMasterVersion"))
    if want and have and have < want:
        plan.warnings.append(
            f"The control plane of {ref.describe()} runs {live.get('currentMasterVersion')}, "
            f"older than the desired {desired.get('initialClusterVersion')}; its release "
            "channel upgrades it, or upgrade it explicitly.")


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Result:
    changed: bool
    actions: list[Action]
    warnings: list[str]
    cluster: dict[str, Any] | None
    before: dict[str, Any]
    after: dict[str, Any]
    operations: list[str] = field(default_factory=list)

    def cluster_facts(self) -> dict[str, Any]:
        c = self.cluster or {}
        return {
            "name": c.get("name"),
            "status": c.get("status"),
            "endpoint": c.get("endpoint"),
            "current_master_version": c.get("currentMasterVersion"),
            "self_link": c.get("selfLink"),
            "cluster_ca_certificate": (c.get("masterAuth") or {}).get("clusterCaCertificate"),
            "dns_endpoint": ((c.get("controlPlaneEndpointsConfig") or {}).get(
                "dnsEndpointConfig") or {}).get("endpoint"),
            "node_pools": sorted(p.get("name", "") for p in c.get("nodePools") or []),
        }


class Converger:
    """Reads, plans and applies; ``sleep``/``clock`` are injectable for the tests."""

    def __init__(self, client: RestClient, ref: ClusterRef, *, wait_timeout: float = 2700.0,
                 poll_interval: float = 10.0, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        import time

        self.client = client
        self.ref = ref
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        # Told one line per read of a running operation (what runs, for how long).
        self.progress = progress or (lambda line: None)

    def read(self) -> dict[str, Any] | None:
        try:
            return self.client.call("GET", self.ref.path, action=f"read {self.ref.describe()}")
        except GcpApiError as exc:
            if exc.status == 404:
                return None
            raise

    def converge(self, desired: Mapping[str, Any], *, check_mode: bool) -> Result:
        if desired.get("name") != self.ref.name:
            raise GkeError(f"The cluster body is named {desired.get('name')!r} but the module "
                           f"was asked for cluster {self.ref.name!r}; they must match.")
        try:
            return self._converge(desired, check_mode=check_mode)
        except GcpApiError as exc:
            disabled = service_disabled(exc)
            if disabled:
                raise GkeError(disabled_sentence(disabled, self.ref)) from exc
            raise

    def _converge(self, desired: Mapping[str, Any], *, check_mode: bool) -> Result:
        live = self.read()
        plan = plan_cluster(self.ref, desired, live)
        if plan.recreate:
            raise GkeError(
                f"GKE sets {'; '.join(plan.recreate)} of {self.ref.describe()} only when the "
                f"cluster is created: {RECREATE_ADVICE}.")
        if plan.immutable:
            raise GkeError(
                f"GKE cannot change in place: {'; '.join(plan.immutable)}; recreate the node "
                "pool (or cluster) with the new setting, or revert the setting.")
        if live is not None and live.get("status") in ("ERROR", "STOPPING"):
            raise GkeError(f"The {self.ref.describe()} is in status {live.get('status')}"
                           f" ({live.get('statusMessage') or 'no message'}); fix or delete it "
                           "before converging.")
        before = project(dict(desired), live) if live is not None else {}
        result = Result(bool(plan.actions), plan.actions, plan.warnings, live, before,
                        dict(desired))
        if check_mode or not plan.actions:
            return result
        deadline = Deadline(self.wait_timeout, self.clock)
        if live is not None and live.get("status") in BUSY_STATUSES:
            self._wait_running(deadline)
        for action in plan.actions:
            op = self.client.call(action.method, action.path, action.body,
                                  action=self.describe(action))
            result.operations.append(str(op.get("name", "")))
            self.wait_operation(op, action, deadline)
        result.cluster = self.read()
        return result

    def describe(self, action: Action) -> str:
        """What the call does, to complete "Cannot ..." and "GKE operation ... to ..."."""
        target = (f"node pool {action.target} of {self.ref.describe()}"
                  if "node_pool" in action.kind else self.ref.describe())
        if action.kind.startswith("create_"):
            return f"create {target}"
        return f"update {', '.join(action.fields)} of {target}"

    def wait_operation(self, op: Mapping[str, Any], action: Action, deadline: Deadline) -> None:
        name = str(op.get("name", ""))
        started = self.clock()

        def done(current: Mapping[str, Any]) -> bool:
            if current.get("status") == "DONE":
                return True
            self.progress(
                f"GKE operation {name} ({current.get('operationType') or action.kind}) to "
                f"{self.describe(action)}: {current.get('status') or 'RUNNING'}, "
                f"{_elapsed(self.clock() - started)} elapsed")
            return False

        def unfinished(_: Mapping[str, Any]) -> Mapping[str, Any]:
            raise GkeError(
                f"GKE operation {name} to {self.describe(action)} did not finish within "
                f"{self.wait_timeout:g} s; "
                "it goes on in GCP: rerun the play once `gcloud container operations "
                f"describe {name} --location {self.ref.location}` shows DONE.")

        current = poll(lambda: self.client.call(
                           "GET", f"{self.ref.parent}/operations/{path_segment(name)}",
                           action=f"read GKE operation {name} of {self.ref.describe()}"),
                       done, first=op, timeout=deadline, interval=self.poll_interval,
                       on_timeout=unfinished, sleep=self.sleep)
        error = current.get("error") or {}
        if error:
            raise GkeError(f"GKE operation {name} to {self.describe(action)} failed: "
                           f"{str(error.get('message') or error).rstrip('.')}.")

    def _wait_running(self, deadline: Deadline) -> None:
        started = self.clock()

        def idle(live: Mapping[str, Any]) -> bool:
            if live.get("status") not in BUSY_STATUSES:
                return True
            self.progress(f"The {self.ref.describe()} is {live.get('status')} (an operation "
                          f"started elsewhere), {_elapsed(self.clock() - started)} waited")
            return False

        def busy(live: Mapping[str, Any]) -> Mapping[str, Any]:
            raise GkeError(f"The {self.ref.describe()} stayed {live.get('status')} for "
                           f"{self.wait_timeout:g} s; rerun the play when its current "
                           "operation is done.")

        poll(lambda: self.read() or {}, idle, timeout=deadline, interval=self.poll_interval,
             on_timeout=busy, sleep=self.sleep)


def _elapsed(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60}m{whole % 60:02d}s"
