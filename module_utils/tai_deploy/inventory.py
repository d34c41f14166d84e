"""Every range, cross-field and cross-region rule of the project, each failure one sentence.

Shapes and choices of the roles' inputs are declared in ``roles/*/meta/argument_specs.yml``;
this module reads those declarations (``check_shapes``) so that a wrong type is reported in one
sentence per option before any role's own argument-spec task runs. Everything an argument spec
cannot say (ranges from the APIs' documented limits, rules that relate two fields, two regions
or a region and a chart) lives here, once:

* ``check_plan`` is what the validation play runs (one module call per region, before the first
  file is written): inventory variables, run options (limit, tags, build root), every role's
  inputs, the chart values and the cross-region rules;
* ``role_problems`` is what a role's own check task runs (through a lookup, in-process) when the
  role is used on its own (molecule, tests): the same rules for that role only.

Every sentence names the variable, the region (or file), what was given and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backup_bucket import PROTECTIONS, bucket_name, is_member
from .chart_source import mirror_problems
from .config_text import ConfigTextError, fluent_bit_value
from .project_checks import check_project
from .services import IMAGE_VERSION, SERVICES, SLOTS
from .vault_custody import holder_problems

TIERS = ("primary", "secondary", "tertiary")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_K8S_MINOR = re.compile(r"^1\.[0-9]{2}$")
MISSING = object()
BOOLS = ("true", "false", "yes", "no")


# ---- the limits, declared once ---------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    """An inclusive numeric range and where it comes from."""

    low: float
    high: float
    whole: bool = True

    def allowed(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} from {_num(self.low)} to {_num(self.high)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# Replica ceiling of every workload the roles size. Kubernetes takes any int32; the ceiling is
# ours: the largest node pool total (gke max_nodes, at most 1000 per zone and three zones) could
# not schedule more pods of one Deployment than this at the pod anti-affinity the charts use.
REPLICAS_MAX = 1000

LIMITS: dict[str, Limit] = {
    # GKE NodePool.maxPodsConstraint.maxPodsPerNode: 8 to 256 on VPC-native clusters
    # (https://cloud.google.com/kubernetes-engine/docs/how-to/flexible-pod-cidr).
    "gke_max_pods_per_node": Limit(8, 256),
    # NodeConfig.diskSizeGb: "The smallest allowed disk size is 10GB" (container v1 REST
    # reference); a Persistent Disk holds at most 64 TB = 65536 GB
    # (https://cloud.google.com/compute/docs/disks#pdspecs).
    "disk_size_gb": Limit(10, 65536),
    # Node pool sizes are regional totals (totalMin/MaxNodeCount); GKE allows 1000 nodes per
    # node pool and zone (https://cloud.google.com/kubernetes-engine/quotas): the upper bound is
    # multiplied by the number of zones.
    "nodes_per_zone": Limit(0, 1000),
    # Seconds to wait for GKE operations (at most a day) and between two reads of one.
    "gke_wait_timeout": Limit(1, 86400),
    "gke_poll_interval": Limit(0, 3600, whole=False),  # 0: poll at once (test doubles)
    # Cloud DNS ResourceRecordSet.ttl is an int32 of seconds (dns v1 discovery document); geo
    # failover waits for it, so a day is the ceiling we accept.
    "dns_record_ttl": Limit(1, 86400),
    # Compute HealthCheck: checkIntervalSec and timeoutSec 1-300, healthyThreshold and
    # unhealthyThreshold 1-10 (compute v1 REST reference, healthChecks).
    "dns_health_check_interval_sec": Limit(1, 300),
    "dns_health_check_timeout_sec": Limit(1, 300),
    "dns_health_check_healthy_threshold": Limit(1, 10),
    "dns_health_check_unhealthy_threshold": Limit(1, 10),
    # Compute BackendService.timeoutSec: 1 to 2147483647; connectionDraining.drainingTimeoutSec
    # 0 to 3600 (compute v1 REST reference, backendServices).
    "dns_backend_timeout_sec": Limit(1, 2147483647),
    "dns_connection_draining_sec": Limit(0, 3600),
    # TCP/UDP ports (RFC 793 / RFC 768): 1-65535; 0 is not a port a Service or LB can use.
    "port": Limit(1, 65535),
    # HPA behavior.scaleDown.stabilizationWindowSeconds: 0 to 3600 (Kubernetes API reference,
    # HPAScalingRules).
    "autoscaling_scale_down_stabilization_seconds": Limit(0, 3600),
    # KEDA ScaledObject pollingInterval, seconds (keda.sh/docs/latest/reference/scaledobject-spec):
    # any positive int32; an hour is the ceiling we accept.
    "autoscaling_keda_polling_interval": Limit(1, 3600),
    "replicas": Limit(0, REPLICAS_MAX),
    # Vault sys/init and sys/rekey: secret_shares 1-255 (Shamir over GF(2^8)), threshold between
    # 1 and the shares (https://developer.hashicorp.com/vault/api-docs/system/init).
    "vault_key_shares": Limit(1, 255),
    "vault_rotate_key_shares": Limit(1, 255),
    # Listener certificate validity: 1 day to 825 days (the CA/Browser Forum ceiling that TLS
    # clients enforce on server certificates).
    "vault_tls_validity_days": Limit(1, 825),
    "vault_pods_timeout": Limit(1, 86400),
    "vault_pods_poll_interval": Limit(1, 3600),
    # Kubernetes ResourceQuota pods: a non-negative count.
    "logging_critical_pods_quota": Limit(1, 100000),
    # Cloud Storage: a bucket's retention period is at most 100 years (3,155,760,000 s); its
    # soft-delete window 7 to 90 days; a lifecycle rule's daysSinceNoncurrentTime a day count
    # (https://cloud.google.com/storage/docs/bucket-lock, .../soft-delete, .../lifecycle).
    "tai_backup_retention_days": Limit(1, 36500),
    "tai_backup_soft_delete_days": Limit(7, 90),
    "tai_backup_noncurrent_days": Limit(1, 36500),
}

# Vault token TTLs: a Go duration; Vault's default max_lease_ttl is 768h (32 days), the ceiling
# of any token the roles request (https://developer.hashicorp.com/vault/docs/configuration).
TOKEN_TTL_MAX_SECONDS = 768 * 3600
_DURATION = re.compile(r"^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")

# Kubernetes minors the project can plan: from the chart's kubeVersion (>=1.30) to the newest
# schemas kubernetes-validate ships (1.37).
KUBERNETES_MINORS = tuple(f"1.{m}" for m in range(30, 38))

# GKE Cluster.name: "Lowercase letters, numbers, and hyphens only; must start with a letter,
# must end with a number or a letter; at most 40 characters" (container v1 REST reference,
# projects.locations.clusters#Cluster).
GKE_CLUSTER_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# Compute machine type names: family-kind[-vCPUs[-memory]][-suffix] such as n1-standard-4,
# e2-custom-4-8192, c3-highmem-22-lssd (https://cloud.google.com/compute/docs/machine-resource).
MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")
# Kubernetes DNS-1123 label (namespaces, ConfigMaps, label-like names).
GCP_REGION = re.compile(r"^([a-z]+-[a-z]+[0-9]+)?$")  # charts/tai-chart values.schema.json
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# Tags every playbook understands besides the ones written in it (Ansible's special tags).
SPECIAL_TAGS = ("all", "always", "never", "tagged", "untagged")
MOLECULE_SKIP_TAGS = ("molecule-notest", "notest", "molecule-idempotence-notest")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Variables whose values are never repeated in a sentence.
# Options whose values are secrets (a KMS crypto key option holds only the key's name).
_SECRET = re.compile(r"(password$|secret_data$|token$|private_key$)")


# ---- helpers ------------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _where(region: str, name: str) -> str:
    return f"{name} of region {region}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(name: str, value: Any) -> str:
    if _SECRET.search(name):
        return "a secret value (not shown)"
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


def as_int(value: Any) -> int | None:
    """The integer Ansible's ``int`` type reads from a value, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    return None


def as_float(value: Any) -> float | None:
    """A finite number (nan and inf are not sizes, ratios or durations), or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_range(name: str, region: str, value: Any, limit: Limit,
                where: str | None = None) -> list[str]:
    """One sentence when value is not a number of the limit's range."""
    number: float | None = as_int(value) if limit.whole else as_float(value)
    if number is None or not limit.low <= number <= limit.high:
        subject = where or f"{name} of region {region}"
        return [f"{subject} is {_shown(name, value)}; it must be {limit.allowed()}."]
    return []


def combine(base: Any, over: Any) -> Any:
    """Ansible's combine(recursive=true): mappings merge, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = combine(out[key], value) if key in out else value
        return out
    return over


# ---- inventory variables of a region (the first checks ever written) ------------------------

@dataclass(frozen=True)
class RegionVars:
    """What every region must define (host_vars) or inherit (group_vars)."""

    region: str
    values: Mapping[str, Any]

    def get(self, name: str) -> Any:
        return self.values.get(name, MISSING)


def _public_ipv4(address: Any) -> bool:
    """A unicast address routable on the internet: not private, shared (100.64/10), loopback,
    link-local, multicast or reserved (``is_private`` alone misses 100.64/10 and multicast)."""
    if not isinstance(address, str):
        return False
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def check_region(rv: RegionVars) -> list[str]:
    """Return one sentence per problem; an empty list means the region is usable."""
    r = rv.region
    errors: list[str] = []

    def require(name: str) -> Any:
        value = rv.get(name)
        if value is MISSING or value is None:
            errors.append(f"Required variable {name} is not set for region {r}; define it in "
                          f"inventories/<env>/host_vars/{r}.yml or the group_vars of its group.")
            return MISSING
        return value

    if not _REGION.match(r):
        errors.append(f"Inventory host {r!r} is not a GCP region name such as europe-west1.")

    project = require("tai_gcp_project")
    if project is not MISSING and (not isinstance(project, str) or not _PROJECT.match(project)):
        errors.append(f"{_where(r, 'tai_gcp_project')} must be a GCP project id (6-30 lowercase "
                      f"letters, digits, hyphens), got {project!r}.")

    apply = require("tai_apply")
    # `-e tai_apply=true` arrives as a string; accept the spellings that `| bool` reads.
    if apply is not MISSING and not isinstance(apply, bool) and str(apply).lower() not in BOOLS:
        errors.append(f"tai_apply must be true or false, got {_type_name(apply)} {apply!r}; "
                      "pass it as -e tai_apply=true or -e '{\"tai_apply\": true}'.")

    k8s = require("tai_kubernetes_version")
    if k8s is not MISSING:
        if not isinstance(k8s, str) or not _K8S_MINOR.match(k8s):
            errors.append(f"tai_kubernetes_version must be a quoted minor version such as "
                          f"\"1.34\", got {_type_name(k8s)} {k8s!r}.")
        elif k8s not in KUBERNETES_MINORS:
            errors.append(f"tai_kubernetes_version of region {r} is {k8s!r}, which this project "
                          f"cannot plan; supported: {', '.join(KUBERNETES_MINORS)}.")

    tier = require("tai_region_tier")
    if tier is not MISSING and tier not in TIERS:
        errors.append(f"{_where(r, 'tai_region_tier')} must be one of {', '.join(TIERS)}, "
                      f"got {tier!r}.")

    zones = require("tai_region_zones")
    if zones is not MISSING:
        if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
            errors.append(f"{_where(r, 'tai_region_zones')} must be a non-empty list of zone "
                          f"names, got {_type_name(zones)} {zones!r}.")
        else:
            foreign = [z for z in zones if not re.match(rf"^{re.escape(r)}-[a-z]$", z)]
            if foreign:
                errors.append(f"{_where(r, 'tai_region_zones')} lists zones outside the region: "
                              f"{', '.join(foreign)}.")
            if len(set(zones)) != len(zones):
                errors.append(f"{_where(r, 'tai_region_zones')} lists a zone twice.")

    # Optional: Google allocates the address; a value kept here is checked against it at apply.
    address = rv.get("tai_region_lb_address")
    if address not in (MISSING, None, "") and not _public_ipv4(address):
        errors.append(f"{_where(r, 'tai_region_lb_address')} must be a public IPv4 address, "
                      f"got {address!r} (private, shared 100.64.0.0/10, loopback, link-local, "
                      "multicast and reserved addresses are not reachable from the internet).")

    geo = require("tai_region_dns_geo_location")
    if geo is not MISSING and (not isinstance(geo, str) or not _REGION.match(geo)):
        errors.append(f"{_where(r, 'tai_region_dns_geo_location')} must be a GCP region name "
                      f"(Cloud DNS geo policies route by region), got {geo!r}.")

    mirror = rv.get("tai_chart_mirror")
    if mirror is not MISSING:
        errors.extend(mirror_problems(mirror))

    errors.extend(check_node_pools(r, rv.get("gke_node_pools")))
    return errors


# IAM service account ids: "6-30 characters, lowercase letters, digits and hyphens, starting with
# a letter" (iam v1 projects.serviceAccounts.create, accountId).
_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def check_backups(region: str, values: Mapping[str, Any]) -> list[str]:
    """The backup settings (group_vars/all/backups.yml) the project phase, the snapshot jobs
    and the restores read: one sentence per problem, before the project phase builds the
    bucket from them (module_utils/tai_deploy/backup_bucket.py). Unset ones are skipped."""
    out: list[str] = []
    project = values.get("tai_gcp_project")
    bucket = values.get("tai_backup_bucket")
    if bucket is not None and isinstance(project, str) and _PROJECT.match(project):
        try:
            name = bucket_name(project, region)
        except ValueError as exc:
            out.append(f"tai_backup_bucket of region {region}: {exc}.")
        else:
            if bucket != name:
                out.append(f"tai_backup_bucket of region {region} is {bucket!r}, but the "
                           f"project phase creates {name}; leave tai_backup_bucket at its "
                           "default.")
    protection = values.get("tai_backup_protection")
    if protection is not None and protection not in PROTECTIONS:
        out.append(f"tai_backup_protection of region {region} is {_shown('', protection)}; it "
                   f"must be one of {', '.join(PROTECTIONS)}.")
    for name in ("tai_backup_retention_days", "tai_backup_soft_delete_days",
                 "tai_backup_noncurrent_days"):
        if values.get(name) is not None:
            out += check_range(name, region, values[name], LIMITS[name])
    out += _backup_identities(region, values.get("tai_backup_identities"))
    readers = values.get("tai_backup_readers")
    if readers is not None:
        if not isinstance(readers, list):
            out.append(f"tai_backup_readers of region {region} must be a list of IAM members "
                       f"such as group:sre@example.com, got {_type_name(readers)}.")
            readers = []
        for reader in readers:
            if reader in ("allUsers", "allAuthenticatedUsers"):
                out.append(f"tai_backup_readers of region {region} lists {reader!r}; the backup "
                           "bucket may not be public.")
            elif not is_member(reader):
                out.append(f"tai_backup_readers of region {region} lists {_shown('', reader)}, "
                           "which is not an IAM member such as group:sre@example.com.")
    return out


def _backup_identities(region: str, data: Any) -> list[str]:
    if data is None:
        return []
    where = f"tai_backup_identities of region {region}"
    if not isinstance(data, Mapping):
        return [f"{where} must be a mapping of the vault and redis writers, got "
                f"{_type_name(data)}."]
    out: list[str] = []
    if set(data) != {"vault", "redis"}:
        named = ", ".join(sorted(map(str, data)))
        out.append(f"{where} names {named or 'nothing'}; it must name exactly the vault and "
                   "redis writers.")
    for kind in [k for k in ("vault", "redis") if k in data]:
        writer = data[kind]
        if not isinstance(writer, Mapping):
            out.append(f"tai_backup_identities.{kind} of region {region} must be a mapping with "
                       f"account_id, namespace and kubernetes_service_account, got "
                       f"{_type_name(writer)}.")
            continue
        for key, pattern, allowed in (
                ("account_id", _ACCOUNT_ID, "a service account id (6-30 lowercase letters, "
                 "digits and hyphens, starting with a letter)"),
                ("namespace", DNS_LABEL, "a namespace name (lowercase letters, digits and "
                 "hyphens, at most 63)"),
                ("kubernetes_service_account", DNS_LABEL, "a ServiceAccount name (lowercase "
                 "letters, digits and hyphens, at most 63)")):
            value = writer.get(key)
            if not isinstance(value, str) or not pattern.match(value):
                out.append(f"tai_backup_identities.{kind}.{key} of region {region} is "
                           f"{_shown('', value)}; it must be {allowed}.")
    return out


def check_node_pools(region: str, pools: Any) -> list[str]:
    """Node pool sizes given in the inventory: integers, min <= max."""
    if pools is MISSING or pools is None:
        return []
    if not isinstance(pools, dict):
        return [f"gke_node_pools of region {region} must be a mapping of pool name to settings, "
                f"got {_type_name(pools)}."]
    errors: list[str] = []
    for name, pool in sorted(pools.items()):
        if not isinstance(pool, dict):
            errors.append(f"gke_node_pools.{name} of region {region} must be a mapping, "
                          f"got {_type_name(pool)}.")
            continue
        lo, hi = pool.get("min_nodes"), pool.get("max_nodes")
        for key, value in (("min_nodes", lo), ("max_nodes", hi)):
            if value is not None and (not _is_int(value) or value < 0):
                errors.append(f"gke_node_pools.{name}.{key} of region {region} must be a "
                              f"non-negative integer, got {value!r}.")
        if isinstance(lo, int) and isinstance(hi, int) and _is_int(lo) and _is_int(hi) \
                and lo > hi:
            errors.append(f"gke_node_pools.{name} of region {region} has min_nodes {lo} greater "
                          f"than max_nodes {hi}.")
    return errors


# ---- shapes, from the roles' argument specs -------------------------------------------------

_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "path": ("a path (a string)", lambda v: isinstance(v, str)),
    "int": ("a whole number", lambda v: as_int(v) is not None),
    "float": ("a finite number", lambda v: as_float(v) is not None),
    "bool": ("true or false", lambda v: isinstance(v, bool) or str(v).lower() in BOOLS),
    "list": ("a list", lambda v: isinstance(v, list)),
    "dict": ("a mapping", lambda v: isinstance(v, Mapping)),
    "raw": ("any value", lambda v: True),
}


def check_shapes(role: str, region: str, options: Mapping[str, Any],
                 values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One sentence per option whose value the argument spec would refuse."""
    out: list[str] = []
    for name, spec in options.items():
        if name not in values:
            continue
        value = values[name]
        full = f"{prefix}{name}"
        if value is None:
            if spec.get("required"):
                out.append(f"{full} of region {region} is not set; the {role} role needs it.")
            continue
        kind = str(spec.get("type", "str"))
        label, ok = _TYPES.get(kind, _TYPES["raw"])
        if not ok(value):
            out.append(f"{full} of region {region} must be {label} (meta/argument_specs.yml of "
                       f"role {role}), got {_type_name(value)} {_shown(full, value)}.")
            continue
        choices = spec.get("choices")
        elements = spec.get("elements")
        items = value if kind == "list" else [value]
        if kind in ("str", "path") or (kind == "list" and elements in ("str", "path")):
            # Names, paths, URLs and durations are one line: a newline or control character
            # is a paste accident, or an attempt to add lines to a body or a config file.
            broken = [v for v in items if isinstance(v, str) and _CONTROL.search(v)]
            if broken:
                out.append(f"{full} of region {region} is {_shown(full, broken[0])}; it must be "
                           "a single line without control characters.")
                continue
        if kind == "list" and elements:
            e_label, e_ok = _TYPES.get(str(elements), _TYPES["raw"])
            bad = [v for v in items if not e_ok(v)]
            if bad:
                out.append(f"{full} of region {region} must list only {e_label} values, got "
                           f"{_shown(full, bad[0])}.")
                continue
        if choices:
            wrong = [v for v in items if v not in choices]
            if wrong:
                out.append(f"{full} of region {region} is {_shown(full, wrong[0])}; it must be "
                           f"one of {', '.join(map(str, choices))}.")
        sub = spec.get("options")
        if sub and kind == "dict" and isinstance(value, Mapping):
            unknown = sorted(set(value) - set(sub))
            if unknown:
                out.append(f"{full} of region {region} has unknown keys {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(sub))}).")
            out += check_shapes(role, region, sub, value, prefix=f"{full}.")
        elif sub and kind == "list" and elements == "dict":
            for i, item in enumerate(items):
                out += check_shapes(role, region, sub, item, prefix=f"{full}[{i}].")
    return out


# ---- role rules -----------------------------------------------------------------------------

@dataclass
class Context:
    """What the rules know besides one role's inputs."""

    region: str
    regions: Sequence[str] = ()
    charts: Mapping[str, Any] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    project_root: str = ""


def _chart_missing(charts: Mapping[str, Any], key: str) -> list[str]:
    chart = charts.get(key)
    if not isinstance(chart, Mapping) or {"repository", "chart", "version"} - set(chart):
        return [f"tai_charts.{key} (repository, chart, version) is missing from "
                "group_vars/all/versions.yml."]
    return []


def _gke(v: Mapping[str, Any], c: Context) -> list[str]:
    r, out = c.region, []
    name = v.get("gke_cluster_name")
    if isinstance(name, str) and not GKE_CLUSTER_NAME.match(name):
        out.append(f"gke_cluster_name of region {r} is {name!r}; GKE accepts 1 to 40 lowercase "
                   "letters, digits and hyphens, starting with a letter and not ending with a "
                   "hyphen.")
    for key in ("gke_max_pods_per_node", "gke_wait_timeout", "gke_poll_interval"):
        if key in v:
            out += check_range(key, r, v[key], LIMITS[key])
    out += _gke_hardening(v, r, c)
    defaults, over = v.get("gke_default_node_pools"), v.get("gke_node_pools")
    if not isinstance(defaults, Mapping) or not isinstance(over, Mapping):
        return out
    zones = c.variables.get("tai_region_zones")
    zone_count = len(zones) if isinstance(zones, list) and zones else 1
    pools = combine(defaults, over)
    for pool_name, pool in sorted(pools.items()):
        where = f"Node pool {pool_name} of region {r}"
        if not isinstance(pool, Mapping):
            out.append(f"gke_node_pools.{pool_name} of region {r} must be a mapping, got "
                       f"{_type_name(pool)}.")
            continue
        for key in ("machine_type", "disk_size_gb", "initial_nodes", "min_nodes", "max_nodes",
                    "spot"):
            if key not in pool:
                out.append(f"{where} lacks {key}.")
        mt = pool.get("machine_type")
        if "machine_type" in pool and (not isinstance(mt, str) or not MACHINE_TYPE.match(mt)):
            out.append(f"gke_node_pools.{pool_name}.machine_type of region {r} is "
                       f"{_shown('machine_type', mt)}; it must be a Compute Engine machine type "
                       "such as n1-standard-4 or e2-custom-4-8192.")
        if "disk_size_gb" in pool:
            out += check_range("disk_size_gb", r, pool["disk_size_gb"], LIMITS["disk_size_gb"],
                               where=f"gke_node_pools.{pool_name}.disk_size_gb of region {r}")
        per_zone = LIMITS["nodes_per_zone"]
        nodes = Limit(per_zone.low, per_zone.high * zone_count)
        sizes = {}
        for key in ("initial_nodes", "min_nodes", "max_nodes"):
            if key in pool:
                problem = check_range(key, r, pool[key], nodes,
                                      where=f"gke_node_pools.{pool_name}.{key} of region {r}")
                out += problem
                if not problem:
                    sizes[key] = as_int(pool[key])
        lo, hi = sizes.get("min_nodes"), sizes.get("max_nodes")
        if lo is not None and hi is not None and lo > hi:
            out.append(f"gke_node_pools.{pool_name} of region {r} has min_nodes {lo} greater "
                       f"than max_nodes {hi}.")
        elif len(sizes) == 3 and not (sizes["min_nodes"] <= sizes["initial_nodes"]  # type: ignore[operator]
                                      <= sizes["max_nodes"]):
            out.append(f"{where} needs min_nodes <= initial_nodes <= max_nodes, got "
                       f"{pool['min_nodes']}, {pool['initial_nodes']}, {pool['max_nodes']}.")
        spot = pool.get("spot")
        if "spot" in pool and not isinstance(spot, bool):
            out.append(f"gke_node_pools.{pool_name}.spot of region {r} must be true or false, "
                       f"got {_type_name(spot)} {spot!r}.")
    return out


# The gke role's hardened-cluster inputs, as gke_checks reads them (roles/gke/vars gke_inputs).
_GKE_HARDENING = {"control_plane_access": "gke_control_plane_access",
                  "authorized_networks": "gke_authorized_networks",
                  "datapath_provider": "gke_datapath_provider",
                  "private_nodes": "gke_private_nodes", "kms_key_ring": "gke_kms_key_ring",
                  "kms_key": "gke_kms_key", "node_service_account": "gke_node_service_account",
                  "maintenance_start": "gke_maintenance_start",
                  "maintenance_hours": "gke_maintenance_hours",
                  "maintenance_recurrence": "gke_maintenance_recurrence"}


def _gke_hardening(v: Mapping[str, Any], r: str, c: Context) -> list[str]:
    """gke_checks' rules (names GKE and KMS accept, maintenance windows, control plane access)
    run here too, so that the validation play refuses them before anything is written."""
    if not all(name in v for name in _GKE_HARDENING.values()):
        return []
    from .gke_checks import problems as gke_problems
    values: dict[str, Any] = {key: v[name] for key, name in _GKE_HARDENING.items()}
    if isinstance(values["maintenance_hours"], str) and values["maintenance_hours"].isdigit():
        values["maintenance_hours"] = int(values["maintenance_hours"])  # -e key=value
    if "tai_environment" in c.variables:
        values["environment"] = c.variables["tai_environment"]
    # The network names (tai_network_name, ...) are the project phase's inputs: check_plan
    # checks them (project_checks.check_project), and the project role again when used alone.
    return [p for p in gke_problems(r, values) if not p.startswith("tai_")]


def _namespaces(v: Mapping[str, Any], c: Context) -> list[str]:
    out: list[str] = []
    defaults, over = v.get("namespaces_default_definitions"), v.get("namespaces_definitions")
    if not isinstance(defaults, Mapping) or not isinstance(over, Mapping):
        return out
    levels = ("privileged", "baseline", "restricted")
    merged = combine(defaults, over)
    effective = {name: (ns or {}) for name, ns in merged.items()
                 if not (isinstance(ns, Mapping) and ns.get("state") == "absent")}
    for name, ns in sorted(effective.items()):
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            out.append(f"namespaces_definitions: {name} is not a valid namespace name "
                       "(lower-case letters, digits and dashes, at most 63 characters).")
        if not isinstance(ns, Mapping):
            out.append(f"namespaces_definitions.{name} must be a mapping with enforce, exception "
                       "and labels.")
            continue
        unknown = sorted(set(ns) - {"enforce", "exception", "labels", "annotations", "state"})
        if unknown:
            out.append(f"namespaces_definitions.{name} has unknown keys {', '.join(unknown)} "
                       "(known: enforce, exception, labels, annotations, state).")
        enforce = ns.get("enforce")
        if enforce not in levels:
            shown = "missing" if enforce is None else str(enforce)
            out.append(f"namespaces_definitions.{name}.enforce is {shown}; it must be one of "
                       f"{', '.join(levels)}.")
        elif enforce != "restricted" and not str(ns.get("exception") or "").strip():
            out.append(f"namespace {name} enforces {enforce}, below restricted, without an "
                       f"exception: say why in namespaces_definitions.{name}.exception.")
        labels = ns.get("labels") or {}
        if isinstance(labels, Mapping):
            for key, value in labels.items():
                if not isinstance(value, str):
                    out.append(f"namespaces_definitions.{name}.labels.{key} must be a string "
                               "(quote it).")
    if "tai-system" in effective and (effective["tai-system"] or {}).get("enforce") != "restricted":
        out.append("tai-system must enforce the restricted Pod Security Standard (the "
                   "application namespace has no exception).")
    return out


_ISTIO_CHARTS = ("istio_base", "istio_cni", "istiod", "istio_gateway")


def _istio(v: Mapping[str, Any], c: Context) -> list[str]:
    r, out = c.region, []
    for key in _ISTIO_CHARTS:
        out += _chart_missing(c.charts, key)
    if not out:
        versions = sorted({str(c.charts[k]["version"]) for k in _ISTIO_CHARTS})
        if len(versions) > 1:
            out.append(f"Istio charts must share one version, but tai_charts has "
                       f"{', '.join(versions)} for {', '.join(_ISTIO_CHARTS)}.")
    for name in ("istiod", "ingress", "egress"):
        lo_name, hi_name = f"istio_{name}_min_replicas", f"istio_{name}_max_replicas"
        problems = [p for key in (lo_name, hi_name) if key in v
                    for p in check_range(key, r, v[key], LIMITS["replicas"])]
        out += problems
        if problems or lo_name not in v or hi_name not in v:
            continue
        lo, hi = as_int(v[lo_name]), as_int(v[hi_name])
        assert lo is not None and hi is not None
        if lo > hi:
            out.append(f"{lo_name} ({lo}) is greater than {hi_name} ({hi}) in {r}.")
        elif lo < 2:
            out.append(f"{lo_name} is {lo} in {r}; it must be at least 2 so that the "
                       "PodDisruptionBudget (minAvailable 1) lets a node drain proceed.")
    ports = v.get("istio_ingress_ports")
    if isinstance(ports, list):
        for i, port in enumerate(ports):
            if isinstance(port, Mapping):
                for key in ("port", "targetPort"):
                    if key in port:
                        out += check_range("port", r, port[key], LIMITS["port"],
                                           where=f"istio_ingress_ports[{i}].{key} of region {r}")
    return out


_GRPC_CODES = ("Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
               "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
               "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
               "Unauthenticated")


def _monitoring(v: Mapping[str, Any], c: Context) -> list[str]:
    r, out = c.region, []
    out += _chart_missing(c.charts, "kube_prometheus_stack")
    defaults = v.get("monitoring_default_alertmanager_receivers")
    over = v.get("monitoring_alertmanager_receivers")
    receivers = {**defaults, **over} if isinstance(defaults, Mapping) and isinstance(
        over, Mapping) else {}
    known = ", ".join(sorted(map(str, receivers)))
    for name, receiver in sorted(receivers.items()):
        if not isinstance(receiver, Mapping):
            out.append(f"Alertmanager receiver {name} must be a mapping of *_configs (an empty "
                       "mapping drops alerts).")
    default_receiver = v.get("monitoring_alertmanager_default_receiver")
    if "monitoring_alertmanager_default_receiver" in v and default_receiver not in receivers:
        out.append(f"monitoring_alertmanager_default_receiver is {default_receiver}, which is "
                   f"not a receiver (known: {known}).")

    def routes(items: Any, where: str) -> None:
        for i, route in enumerate(items if isinstance(items, list) else []):
            at = f"{where}[{i}]"
            if not isinstance(route, Mapping):
                out.append(f"{at} must be a mapping with receiver and matchers.")
                continue
            if "receiver" in route and route["receiver"] not in receivers:
                out.append(f"{at} in {r} sends to receiver {route['receiver']}, which is not "
                           f"defined (known: {known}); add it to "
                           "monitoring_alertmanager_receivers.")
            if "match" in route or "match_re" in route:
                out.append(f"{at} uses match/match_re, which Alertmanager deprecated; write "
                           "matchers such as severity = \"critical\".")
            matchers = route.get("matchers", [])
            if not isinstance(matchers, list):
                out.append(f"{at}.matchers must be a list of strings such as "
                           "severity = \"critical\".")
            routes(route.get("routes", []), f"{at}.routes")

    own = v.get("monitoring_alertmanager_routes")
    if "monitoring_alertmanager_routes" in v and not isinstance(own, list):
        out.append("monitoring_alertmanager_routes must be a list of routes.")
    elif isinstance(own, list):
        routes(own + list(v.get("monitoring_default_alertmanager_routes") or []),
               "Alertmanager route")
    if "monitoring_grpc_error_ratio_threshold" in v:
        ratio = as_float(v["monitoring_grpc_error_ratio_threshold"])
        if ratio is None or not 0 < ratio < 1:
            out.append(f"monitoring_grpc_error_ratio_threshold is "
                       f"{v['monitoring_grpc_error_ratio_threshold']}; it must be a ratio "
                       "between 0 and 1 (0.05 = 5 %).")
    for key in ("monitoring_grpc_error_min_rps", "monitoring_grpc_latency_p99_seconds"):
        if key in v:
            value = as_float(v[key])
            if value is None or value <= 0:
                out.append(f"{key} of region {r} is {_shown(key, v[key])}; it must be a finite "
                           "number above 0.")
    for key in ("monitoring_prometheus_replicas", "monitoring_alertmanager_replicas",
                "monitoring_grafana_replicas"):
        if key in v:
            out += check_range(key, r, v[key], Limit(1, REPLICAS_MAX))
    codes = v.get("monitoring_grpc_error_codes")
    if isinstance(codes, list):
        for code in codes:
            if code not in _GRPC_CODES and code != "OK":
                out.append(f"monitoring_grpc_error_codes lists {code}, which is not a gRPC "
                           "status code name as go-grpc-prometheus writes it (for example "
                           "Unavailable).")
        if "OK" in codes:
            out.append("monitoring_grpc_error_codes must not list OK.")
    for name in v.get("monitoring_tai_services") or []:
        # Written into PromQL label matchers and rule names: a Service name, nothing more.
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            out.append(f"monitoring_tai_services of region {r} lists {name!r}, which is not a "
                       "Service name (lowercase letters, digits and hyphens, at most 63).")
    for name in v.get("monitoring_dashboards") or []:
        if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name):
            out.append(f"monitoring_dashboards lists {name}, which is not a valid ConfigMap "
                       "name.")
    return out


def _true(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "yes", "1")


def _logging(v: Mapping[str, Any], c: Context) -> list[str]:
    r, out = c.region, []
    es, kibana = _true(v.get("logging_elasticsearch_enabled")), _true(
        v.get("logging_kibana_enabled"))
    for key in ["fluent_bit"] + (["elasticsearch"] if es else []) + (["kibana"] if kibana else []):
        out += _chart_missing(c.charts, key)
    if kibana and not es:
        out.append(f"logging_kibana_enabled is true in {r} but logging_elasticsearch_enabled is "
                   "false: Kibana needs the in-cluster Elasticsearch, enable both or neither.")
    if es and "logging_elasticsearch_replicas" in v:
        replicas = as_int(v["logging_elasticsearch_replicas"])
        if replicas is None or replicas < 3:
            out.append(f"logging_elasticsearch_replicas is {v['logging_elasticsearch_replicas']}; "
                       "Elasticsearch needs at least 3 master-eligible nodes to keep a quorum "
                       "through the loss of one.")
        else:
            out += check_range("logging_elasticsearch_replicas", r, replicas, LIMITS["replicas"])
    if "logging_critical_pods_quota" in v:
        out += check_range("logging_critical_pods_quota", r, v["logging_critical_pods_quota"],
                           LIMITS["logging_critical_pods_quota"])
    for key in ("logging_fluent_bit_mem_buf_limit", "logging_cluster_name",
                "logging_elasticsearch_index_prefix"):
        if isinstance(v.get(key), str):
            try:
                fluent_bit_value(f"{key} of region {r}", v[key])
            except ConfigTextError as exc:
                out.append(str(exc))
    for ns in v.get("logging_fluent_bit_excluded_namespaces") or []:
        if not isinstance(ns, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", ns):
            out.append(f"logging_fluent_bit_excluded_namespaces lists {ns}, which is not a "
                       "namespace name.")
    return out


def duration_seconds(value: Any) -> int | None:
    """Seconds of a Go duration such as 15m or 1h30m (None when not one)."""
    if not isinstance(value, str) or not value:
        return None
    match = _DURATION.match(value)
    if not match:
        return None
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


def _ttl(name: str, region: str, value: Any) -> list[str]:
    seconds = duration_seconds(value)
    if seconds is None or not 1 <= seconds <= TOKEN_TTL_MAX_SECONDS:
        return [f"{name} of region {region} is {_shown(name, value)}; it must be a duration such "
                "as 15m or 1h, from 1s to 768h (Vault's default max_lease_ttl)."]
    return []


def _vault(v: Mapping[str, Any], c: Context) -> list[str]:  # noqa: PLR0915
    r, out = c.region, []
    out += _chart_missing(c.charts, "vault")
    replicas = as_int(v.get("vault_replicas"))
    if "vault_replicas" in v and (replicas is None or replicas < 1 or replicas % 2 == 0
                                  or replicas > 9):
        out.append(f"vault_replicas is {v['vault_replicas']} in {r}; raft needs an odd number "
                   "of servers from 1 to 9 (3 keep a quorum when one is lost).")
    if "vault_injector_replicas" in v:
        out += check_range("vault_injector_replicas", r, v["vault_injector_replicas"],
                           Limit(1, REPLICAS_MAX))
    for shares_key, threshold_key in (("vault_key_shares", "vault_key_threshold"),
                                      ("vault_rotate_key_shares", "vault_rotate_key_threshold")):
        if shares_key not in v:
            continue
        problem = check_range(shares_key, r, v[shares_key], LIMITS[shares_key])
        out += problem
        shares, threshold = as_int(v[shares_key]), as_int(v.get(threshold_key))
        if problem or shares is None:
            continue
        if threshold is None or not 1 <= threshold <= shares:
            out.append(f"{threshold_key} ({v.get(threshold_key)}) must be between 1 and "
                       f"{shares_key} ({shares}).")
        elif shares > 1 and threshold == 1:
            out.append(f"{threshold_key} 1 with {shares} shares is refused by Vault (any single "
                       "shard would unseal it); use at least 2.")
    if v.get("vault_seal_type") == "gcpckms":
        kms_value = v.get("vault_gcpckms")
        kms: Mapping[str, Any] = kms_value if isinstance(kms_value, Mapping) else {}
        missing = [k for k in ("project", "region", "key_ring", "crypto_key") if not kms.get(k)]
        if missing:
            out.append(f"vault_seal_type is gcpckms but vault_gcpckms lacks "
                       f"{', '.join(missing)}.")
    if v.get("vault_access") == "direct" and not v.get("vault_api_addr"):
        out.append("vault_access is direct but vault_api_addr is empty; set it to the URL of "
                   "Vault (for example an internal load balancer).")
    if "vault_injector_namespaces" in v and not v["vault_injector_namespaces"]:
        out.append("vault_injector_namespaces is empty; the agent injector would serve no "
                   "namespace.")
    days, renew = as_int(v.get("vault_tls_validity_days")), as_int(
        v.get("vault_tls_renew_before_days"))
    if "vault_tls_validity_days" in v:
        problem = check_range("vault_tls_validity_days", r, v["vault_tls_validity_days"],
                              LIMITS["vault_tls_validity_days"])
        out += problem
        if not problem and days is not None and (renew is None or not 0 <= renew < days):
            out.append(f"vault_tls_renew_before_days of region {r} is "
                       f"{v.get('vault_tls_renew_before_days')}; it must be a whole number from "
                       f"0 to vault_tls_validity_days - 1 ({days - 1}).")
    for key in ("vault_pods_timeout", "vault_pods_poll_interval"):
        if key in v:
            out += check_range(key, r, v[key], LIMITS[key])
    if "vault_token_ttl" in v:
        out += _ttl("vault_token_ttl", r, v["vault_token_ttl"])
    out += _vault_custody(v, c)
    services = v.get("vault_services") or []
    services = [str(s) for s in services] if isinstance(services, list) else []
    service_policies = {f"tai-{s}": "" for s in services}
    policies = {**service_policies, **(v.get("vault_default_policies") or {}),
                **(v.get("vault_policies") or {})} \
        if isinstance(v.get("vault_default_policies") or {}, Mapping) and isinstance(
            v.get("vault_policies") or {}, Mapping) else {}
    controller_policy = str(v.get("vault_controller_policy") or "tai-deploy-controller")
    if controller_policy in policies:
        out.append(f"vault_policies defines {controller_policy}, the controller's own policy; "
                   "the configuration may not write it (the controller would grant itself "
                   "anything).")
    for name in policies:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", str(name)) or name == "root":
            out.append(f"policy name {json.dumps(name)} is not allowed (letters, digits, _ . -; "
                       "not root).")
    service_roles = {f"tai-{s}": {"bound_service_account_names": [s],
                                  "bound_service_account_namespaces": ["-"],
                                  "token_policies": [f"tai-{s}"]} for s in services}
    roles = combine(combine(service_roles, v.get("vault_default_kubernetes_roles") or {}),
                    v.get("vault_kubernetes_roles") or {})
    for name, role in sorted(roles.items() if isinstance(roles, Mapping) else []):
        if not isinstance(role, Mapping):
            out.append(f"Kubernetes auth role {name} must be a mapping.")
            continue
        for policy in role.get("token_policies") or []:
            if policy not in policies and policy != "default":
                out.append(f"Kubernetes auth role {name} grants policy {policy}, which neither "
                           "vault_default_policies nor vault_policies defines.")
        if not role.get("bound_service_account_names") or not role.get(
                "bound_service_account_namespaces"):
            out.append(f"Kubernetes auth role {name} must bind bound_service_account_names and "
                       "bound_service_account_namespaces.")
        for key in ("token_ttl", "token_max_ttl"):
            if key in role:
                out += _ttl(f"vault_kubernetes_roles.{name}.{key}", r, role[key])
    return out


_REDIS_USER = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def _vault_redis_users(v: Mapping[str, Any], c: Context) -> list[str]:
    """The Redis users whose passwords apply generates, and the length of one."""
    r, out = c.region, list[str]()
    users = v.get("vault_redis_users")
    if users is not None:
        if isinstance(users, (str, Mapping)) or not isinstance(users, Sequence):
            out.append(f"vault_redis_users of {r} must be a list of Redis user names, got "
                       f"{_json(users)}.")
        else:
            bad = [u for u in users if not isinstance(u, str) or not _REDIS_USER.match(u)]
            if bad:
                out.append(f"vault_redis_users of {r} holds {_json(bad)}; each Redis user name "
                           "is a DNS label (a-z, 0-9, -), as in the chart's redis.auth.users.")
            elif v.get("vault_redis_secrets_path"):
                missing = [s for s in v.get("vault_services") or [] if s not in users]
                if missing:
                    out.append(f"vault_redis_users of {r} lacks {', '.join(map(str, missing))}; "
                               "each service logs in to Redis as the user of its name, and its "
                               "pods do not start without that user's password.")
    length = v.get("vault_redis_password_length")
    number = as_int(length)
    if length is not None and (number is None or not 24 <= number <= 256):
        shown = number if number is not None else _json(length)
        out.append(f"vault_redis_password_length of {r} is {shown}; it must be a whole "
                   "number from 24 to 256.")
    return out


def _vault_custody(v: Mapping[str, Any], c: Context) -> list[str]:
    """The shard holders against the share count and threshold, and the service secrets."""
    r, out = c.region, list[str]()
    holders = v.get("vault_key_holders")
    if holders:
        out += holder_problems(holders, v.get("vault_key_shares"), v.get("vault_key_threshold"),
                               where=r)
        rotate = v.get("vault_rotate_key_shares")
        if rotate is not None and as_int(rotate) != len(holders):
            out.append(f"vault_rotate_key_shares of {r} is {rotate} but vault_key_holders "
                       f"lists {len(holders)} holders; a rotation encrypts one shard to each "
                       "holder (change the holders and the shares together).")
    out += _vault_redis_users(v, c)
    secrets = v.get("vault_service_secrets")
    services = v.get("vault_services") or []
    if secrets is not None and not isinstance(secrets, Mapping):
        out.append(f"vault_service_secrets of {r} must map each service to its secrets.")
    elif secrets:
        for name, data in sorted(secrets.items()):
            if name not in services:
                out.append(f"vault_service_secrets of {r} has secrets for {name}, which is not "
                           f"one of vault_services ({', '.join(map(str, services))}).")
            elif not isinstance(data, Mapping) or not data:
                out.append(f"vault_service_secrets.{name} of {r} must be a non-empty mapping "
                           "of secret names to values.")
    return out


_SERVICES = SERVICES
_SLOTS = SLOTS
_HPA_KEYS = ("enabled", "min_replicas", "max_replicas", "cpu_utilization", "slots", "regions")
_KEDA_KEYS = (*_HPA_KEYS, "grpc_rps_per_replica", "redis_list_name", "redis_list_length")
_REGION_KEYS = ("min_replicas", "max_replicas", "cpu_utilization", "grpc_rps_per_replica",
                "redis_list_length")


def _autoscaling(v: Mapping[str, Any], c: Context) -> list[str]:  # noqa: PLR0915
    r, out = c.region, list[str]()
    auth = v.get("autoscaling_keda_redis_auth")
    if isinstance(auth, Mapping) and "vault_audience" in auth and not str(
            auth.get("vault_audience") or "").strip():
        # The TriggerAuthentication names the projected token's file; without an audience the
        # KEDA release mounts none, and KEDA's login would have no token to send.
        out.append(f"autoscaling_keda_redis_auth.vault_audience of region {r} is empty; KEDA's "
                   "operator logs in to Vault with a projected token of that audience, the "
                   "audience of the Vault role it names (vault_role; the vault role's keda-redis "
                   "is bound to vault).")
    regions = sorted(c.regions or [r])
    names = {"hpa": "autoscaling_hpa", "keda": "autoscaling_keda"}
    allowed = {"hpa": _HPA_KEYS, "keda": _KEDA_KEYS}
    merged: dict[str, Mapping[str, Any]] = {}
    for kind in ("hpa", "keda"):
        base, over = v.get(f"autoscaling_default_{kind}"), v.get(f"autoscaling_{kind}")
        if not isinstance(base, Mapping) or not isinstance(over, Mapping):
            return out
        merged[kind] = combine(base, over)
    for kind in ("hpa", "keda"):
        for service, entry in sorted(merged[kind].items()):
            where = f"{names[kind]}.{service}"
            if service not in _SERVICES:
                out.append(f"{where}: {service} is not a TAI service (known: "
                           f"{', '.join(_SERVICES)}).")
            elif not isinstance(entry, Mapping):
                out.append(f"{where} must be a mapping (min_replicas, max_replicas, ...).")
            else:
                unknown = sorted(set(entry) - set(allowed[kind]))
                if unknown:
                    out.append(f"{where} has unknown keys {', '.join(unknown)} (known: "
                               f"{', '.join(allowed[kind])}).")
                region_map = entry.get("regions") or {}
                if not isinstance(region_map, Mapping):
                    out.append(f"{where}.regions must map region names to values.")
                    continue
                for region, values in sorted(region_map.items()):
                    if region not in regions:
                        out.append(f"{where}.regions.{region} is not a region of the inventory "
                                   f"({', '.join(regions)}).")
                    elif not isinstance(values, Mapping) or set(values) - set(_REGION_KEYS):
                        out.append(f"{where}.regions.{region} may only set "
                                   f"{', '.join(_REGION_KEYS)}.")
    if out:
        return out
    effective: dict[str, dict[str, dict[str, Any]]] = {"hpa": {}, "keda": {}}
    for kind in ("hpa", "keda"):
        for service, entry in sorted(merged[kind].items()):
            if not _true(entry.get("enabled", True)):
                continue
            flat = {**entry, **((entry.get("regions") or {}).get(r) or {})}
            effective[kind][service] = {
                "min_replicas": flat.get("min_replicas"), "max_replicas": flat.get("max_replicas"),
                "cpu_utilization": flat.get("cpu_utilization", 0),
                "grpc_rps_per_replica": flat.get("grpc_rps_per_replica", 0),
                "redis_list_name": flat.get("redis_list_name", ""),
                "redis_list_length": flat.get("redis_list_length", 0),
                "slots": flat.get("slots", v.get("autoscaling_slots")),
            }
    for kind in ("hpa", "keda"):
        for service, cfg in sorted(effective[kind].items()):
            where = f"{service} ({names[kind]}) in {r}"
            lo, hi = as_int(cfg["min_replicas"]), as_int(cfg["max_replicas"])
            if lo is None or hi is None or lo < 0 or hi < 0:
                out.append(f"{where} needs whole numbers min_replicas and max_replicas (got "
                           f"{cfg['min_replicas']} and {cfg['max_replicas']}).")
            elif lo < 1:
                out.append(f"{where} has min_replicas {lo}; it must be at least 1 (a slot scaled "
                           "to 0 is the blue-green swap's business, not the autoscaler's).")
            elif lo > hi:
                out.append(f"{where} has min_replicas {lo} greater than max_replicas {hi}.")
            elif hi > REPLICAS_MAX:
                out.append(f"{where} has max_replicas {hi}; it must be at most {REPLICAS_MAX}.")
            slots = cfg["slots"]
            if not isinstance(slots, list) or not slots or set(slots) - set(_SLOTS):
                out.append(f"{where} lists slots {slots}; they must be a non-empty subset of "
                           f"{', '.join(_SLOTS)}.")
            for key in ("cpu_utilization", "grpc_rps_per_replica", "redis_list_length"):
                number = as_int(cfg[key])
                if number is None or number < 0:
                    out.append(f"{where} has {key} {cfg[key]}; it must be a whole number (0 = "
                               "off).")
            if kind == "hpa" and (as_int(cfg["cpu_utilization"]) or 0) < 1:
                out.append(f"{where} needs cpu_utilization above 0 (an HPA without a metric "
                           "never scales).")
            if kind == "keda" and (as_int(cfg["cpu_utilization"]) or 0) < 1 and (
                    as_int(cfg["grpc_rps_per_replica"]) or 0) < 1 and not cfg["redis_list_name"]:
                out.append(f"{where} has no trigger: set cpu_utilization, grpc_rps_per_replica "
                           "or redis_list_name.")
    for service in sorted(set(effective["hpa"]) & set(effective["keda"])):
        out.append(f"{service} is autoscaled by both an HPA (autoscaling_hpa) and KEDA "
                   f"(autoscaling_keda) in {r}: KEDA drives an HPA of its own, and two HPAs on "
                   "one Deployment fight over its replicas; set enabled: false on one of them.")
    for key in ("autoscaling_scale_down_stabilization_seconds",
                "autoscaling_keda_polling_interval"):
        if key in v:
            out += check_range(key, r, v[key], LIMITS[key])
    return out


def _dns(v: Mapping[str, Any], c: Context) -> list[str]:
    r, out = c.region, []
    for key, limit in LIMITS.items():
        if key.startswith("dns_") and key in v:
            out += check_range(key, r, v[key], limit)
    for key in ("dns_health_check_port", "dns_forwarding_port", "dns_backend_port"):
        if key in v:
            out += check_range(key, r, v[key], LIMITS["port"])
    service = v.get("dns_health_check_grpc_service")
    if isinstance(service, str) and not (service.isascii() and service.isprintable()):
        out.append(f"dns_health_check_grpc_service of region {r} is {service!r}; Compute "
                   "Engine accepts only printable ASCII in grpcServiceName.")
    interval = as_int(v.get("dns_health_check_interval_sec"))
    timeout = as_int(v.get("dns_health_check_timeout_sec"))
    if interval is not None and timeout is not None and 1 <= interval <= 300 and \
            1 <= timeout <= 300 and timeout > interval:
        out.append(f"dns_health_check_timeout_sec of region {r} is {timeout}; Compute Engine "
                   f"refuses a timeout above dns_health_check_interval_sec ({interval}).")
    return out


def _chart_values_problems(v: Mapping[str, Any], c: Context) -> list[str]:
    """The merged values the tai_services role renders the chart with, against
    charts/tai-chart/values.schema.json and the replica ceiling, before Helm sees them (Helm
    reads JSON numbers as floats and answers 1000000 with "'1e+06' is not of type 'integer'")."""
    named = v.get("tai_services_region")
    if isinstance(named, str) and not GCP_REGION.match(named):
        # said first: the checks below stop at an unreadable chart
        return [f"tai_services_region of region {c.region} is {named!r}; it must be a Google "
                "Cloud region name such as europe-west1 (the chart's values.schema.json).",
                *_chart_values_problems({**v, "tai_services_region": c.region}, c)]
    env = v.get("tai_services_environment")
    if env is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", str(env)):
        # said first, and the checks below still run (as for the production environment)
        return [f"tai_services_environment of region {c.region} is {_shown('env', env)}; it must "
                "be an environment name such as production or development.",
                *_chart_values_problems({**v, "tai_services_environment": "production"}, c)]
    ca_problems = _vault_ca_problems(v, c)
    chart = v.get("tai_services_chart_path")
    over = v.get("tai_services_values")
    if not isinstance(chart, str) or not isinstance(over, Mapping):
        return ca_problems
    import yaml  # the controller's Python (Ansible's own dependency)
    chart_dir = Path(chart)
    try:
        values = _yaml((chart_dir / "values.yaml").read_text()) or {}
        schema = json.loads((chart_dir / "values.schema.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"tai_services_chart_path of region {c.region} is {chart!r}, which holds no "
                f"readable values.yaml and values.schema.json ({exc.__class__.__name__})."]
    region_file = v.get("tai_services_region_values_file")
    if isinstance(region_file, str) and Path(region_file).is_file():
        try:
            values = combine(values, _yaml(Path(region_file).read_text()) or {})
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            return [f"{region_file}{line} is not valid YAML (tai_services_region_values_file of "
                    f"region {c.region})."]
    values = combine(values, {"region": c.region, "serviceAccounts": {
        "gcpProject": c.variables.get("tai_gcp_project") or ""}})
    values = combine(values, dict(over))
    out: list[str] = [*ca_problems, *digest_problems(
        values, c.region, environment=str(v.get("tai_services_environment") or "production"),
        allow_undigested=_true(v.get("tai_services_allow_undigested_images")))]
    for path, number in _replica_fields(values, ""):
        if as_int(number) is None or not 0 <= as_int(number) <= REPLICAS_MAX:  # type: ignore[operator]
            out.append(f"tai_services_values{path} of region {c.region} is "
                       f"{_shown('replicas', number)}; it must be a whole number from 0 to "
                       f"{REPLICAS_MAX}.")
    out += redis_auth_problems(values, c.region)
    if out or not over:
        # The chart's own values and region files are checked by the chart's tests; importing
        # jsonschema costs about a second, spent only when the inventory overrides values.
        return out
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the project's virtualenv has it
        return out
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        out.append(f"tai_services_values{where} of region {c.region} is refused by "
                   f"{chart_dir.name}/values.schema.json: {error.message}.")
    return out


_VAULT_CA_WHY = ("is empty; the Vault agents of the TAI pods verify Vault's private CA from "
                 "that Secret (the vault role's vault_tls_ca_secret_name, "
                 "tai_vault_ca_secret_name), and without it they never start.")


def _vault_ca_problems(v: Mapping[str, Any], c: Context) -> list[str]:
    """The chart's vault.caSecret: the agents' tls-secret and ca-cert annotations need it."""
    out: list[str] = []
    if "tai_services_vault_ca_secret" in v and not str(v["tai_services_vault_ca_secret"] or ""):
        out.append(f"tai_services_vault_ca_secret of region {c.region} {_VAULT_CA_WHY}")
    over = v.get("tai_services_values")
    vault = over.get("vault") if isinstance(over, Mapping) else None
    if isinstance(vault, Mapping) and "caSecret" in vault and not str(vault["caSecret"] or ""):
        out.append(f"tai_services_values.vault.caSecret of region {c.region} {_VAULT_CA_WHY}")
    return out


# The digest the chart's defaults carry where the registry's digest is not recorded yet: the
# plan renders with it; the tai_services role refuses to install it in production
# (placeholder_digest_problems), where a pull by it would fail anyway.
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def chart_images(values: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """(values path, image mapping holding tag and digest, repository) of every image the chart
    deploys with these values: each service slot that has a tag, Redis, its exporter and, when
    enabled, the snapshot job."""
    def mapping(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    out: list[tuple[str, Mapping[str, Any], str]] = []
    for name, svc in sorted(mapping(values.get("services")).items()):
        if not isinstance(svc, Mapping):
            continue
        repo = str(mapping(svc.get("image")).get("repository") or name)
        for slot, spec in sorted(mapping(svc.get("slots")).items()):
            if isinstance(spec, Mapping) and spec.get("tag"):
                out.append((f"services.{name}.slots.{slot}", spec, repo))
    redis = mapping(values.get("redis"))
    images = [("redis.image", redis.get("image")),
              ("redis.exporter.image", mapping(redis.get("exporter")).get("image"))]
    backup = mapping(redis.get("backup"))
    if _true(backup.get("enabled")):
        images.append(("redis.backup.image", backup.get("image")))
    for path, image in images:
        if isinstance(image, Mapping) and image.get("tag"):
            out.append((path, image, str(image.get("repository") or "")))
    return out


# The development override of the digest rule, named once: the plan and the rolling upgrade
# read the same variable.
ALLOW_UNDIGESTED = "tai_services_allow_undigested_images"


def override_problems(region: str, *, environment: str, allow_undigested: bool) -> list[str]:
    """The development override set where it must not be: in production."""
    if allow_undigested and environment == "production":
        return [f"{ALLOW_UNDIGESTED} of region {region} is true in environment production; it "
                "is meant for development environments only, and production images must be "
                "pinned by digest."]
    return []


def undigested_problem(subject: str, region: str, *, pin: str, environment: str,
                       allow_undigested: bool) -> str | None:
    """The digest rule of every image the project deploys, for one image without a digest:
    refused in production; elsewhere refused unless the development override is set.
    ``subject`` names the image and the variable carrying it, ``pin`` says how to pin it."""
    if environment == "production":
        return (f"{subject} of region {region} has no image digest; production images must "
                f"be pinned as tag@sha256: {pin}.")
    if not allow_undigested:
        return (f"{subject} of region {region} has no image digest; pin it as tag@sha256 "
                f"({pin}), or set {ALLOW_UNDIGESTED}: true in this {environment} environment.")
    return None


def digest_problems(values: Mapping[str, Any], region: str, *, environment: str,
                    allow_undigested: bool) -> list[str]:
    """Images by digest: a production image without one is refused; outside production
    tai_services_allow_undigested_images lets tags alone through (development)."""
    out = override_problems(region, environment=environment, allow_undigested=allow_undigested)
    for path, image, repo in chart_images(values):
        if image.get("digest"):
            continue
        problem = undigested_problem(
            f"{path} ({repo}:{image.get('tag')})", region,
            pin=f"set {path}.digest (tai_services_values)", environment=environment,
            allow_undigested=allow_undigested)
        if problem:
            out.append(problem)
    return out


def placeholder_digest_problems(values: Mapping[str, Any], region: str) -> list[str]:
    """Images that still carry PLACEHOLDER_DIGEST: a production install refuses them."""
    return [f"{path} ({repo}:{image.get('tag')}) of region {region} carries the placeholder "
            f"digest sha256:000…; set {path}.digest to the registry's digest of "
            f"{repo}:{image.get('tag')} before applying."
            for path, image, repo in chart_images(values)
            if image.get("digest") == PLACEHOLDER_DIGEST]


# ACL rules that would give a service's Redis user more than its own keys and data commands.
_REDIS_BROAD_RULES = frozenset({"+@all", "allcommands", "+@admin", "+@dangerous", "allkeys",
                                "~*", "%RW~*", "%R~*", "%W~*", "allchannels", "&*"})


def _duration_hours(text: Any) -> float | None:
    """A cert-manager (Go) duration such as 2160h or 1h30m, in hours."""
    units = {"h": 1.0, "m": 1 / 60, "s": 1 / 3600}
    total, number = 0.0, ""
    for char in str(text):
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            return None
    return total if not number else None


def redis_auth_problems(values: Mapping[str, Any], region: str) -> list[str]:
    """Cross-field rules of the chart's Redis ACL users and TLS settings (shapes are the
    schema's): every service has a Redis user of its name, confined to its own keys (no rule
    that opens every key, command or channel), and the node certificate is renewed before it
    expires."""
    def sub(node: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = node.get(key)
        return value if isinstance(value, Mapping) else {}

    redis = sub(values, "redis")
    users = sub(sub(redis, "auth"), "users")
    services = sub(values, "services")
    out: list[str] = []
    where = f"tai_services_values.redis.auth.users of region {region}"
    for name in sorted(services):
        user = users.get(name)
        if not isinstance(user, Mapping):
            out.append(f"{where} has no user {name!r}: every service logs in to Redis as the "
                       "user named after it.")
            continue
        rules = [str(r) for r in user.get("rules") or []]
        broad = sorted({r for r in rules if r.lower() in {b.lower() for b in _REDIS_BROAD_RULES}})
        if broad:
            out.append(f"{where}.{name}.rules holds {', '.join(broad)}, which opens more than the "
                       f"service's own keys and data commands; grant key patterns (keys) and "
                       "command categories such as +@read and +@write instead.")
        keys = [str(k) for k in user.get("keys") or []]
        if "*" in keys:
            out.append(f"{where}.{name}.keys holds '*', every key of every service; give "
                       f"{name} its own prefix such as '{name}:*'.")
    tls = sub(redis, "tls")
    duration, renew = _duration_hours(tls.get("duration")), _duration_hours(tls.get("renewBefore"))
    if duration is not None and renew is not None and renew >= duration:
        out.append(f"tai_services_values.redis.tls.renewBefore of region {region} "
                   f"({tls.get('renewBefore')}) is not shorter than redis.tls.duration "
                   f"({tls.get('duration')}); cert-manager would renew the certificate forever.")
    return out


def _replica_fields(data: Any, path: str) -> Iterable[tuple[str, Any]]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key == "replicas" and not isinstance(value, (Mapping, list)):
                yield f"{path}.{key}", value
            else:
                yield from _replica_fields(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _replica_fields(value, f"{path}[{i}]")


ROLE_RULES: dict[str, Callable[[Mapping[str, Any], Context], list[str]]] = {
    "gke": _gke,
    "namespaces": _namespaces,
    "istio": _istio,
    "monitoring": _monitoring,
    "logging": _logging,
    "vault": _vault,
    "tai_services": _chart_values_problems,
    "autoscaling": _autoscaling,
    "dns": _dns,
}


def _yaml(text: str) -> Any:
    """YAML through libyaml when the controller has it (ten times faster than pure Python;
    every role's argument spec is read on every run)."""
    import yaml
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_argument_specs(roles_dir: str | Path, role: str,
                        entry_point: str = "main") -> Mapping[str, Any]:
    """Options of a role's entry point, from its meta/argument_specs.yml."""
    path = Path(roles_dir) / role / "meta" / "argument_specs.yml"
    data = _yaml(path.read_text()) or {}
    spec = (data.get("argument_specs") or {}).get(entry_point) or {}
    return dict(spec.get("options") or {})


def role_problems(role: str, inputs: Mapping[str, Any], context: Context,
                  options: Mapping[str, Any] | None = None) -> list[str]:
    """Shapes (when the options are given), then the role's ranges and cross-field rules."""
    shapes = check_shapes(role, context.region, options, inputs) if options else []
    if shapes and options:
        # The rules below never see a value of the wrong shape (its sentence is said above);
        # every other input is still checked, so that one run reports every problem.
        bad = {n for n in options if n in inputs and check_shapes(
            role, context.region, {n: options[n]}, {n: inputs[n]})}
        inputs = {n: v for n, v in inputs.items() if n not in bad}
    rules = ROLE_RULES.get(role)
    return shapes + _namespace_names(inputs, context.region) + \
        _object_names(inputs, context.region) + (
        rules(inputs, context) if rules else [])


# Inputs that become the name of a Kubernetes object (DNS-1123: lowercase letters, digits and
# hyphens, at most 63) or of a Helm release (at most 53), outside a *_namespace input.
OBJECT_NAMES = {"vault_backup_service_account": ("a ServiceAccount", 63),
                "vault_tls_secret_name": ("a Secret", 63),
                "vault_tls_ca_secret_name": ("a Secret", 63),
                "monitoring_alertmanager_secret_name": ("a Secret", 63),
                "istio_tls_issuer_name": ("a ClusterIssuer", 63),
                "istio_tls_secret_name": ("a Certificate and its Secret", 63),
                "tai_services_release": ("a Helm release", 53)}


def _object_names(inputs: Mapping[str, Any], region: str) -> list[str]:
    out: list[str] = []
    for name, (what, most) in OBJECT_NAMES.items():
        value = inputs.get(name)
        if isinstance(value, str) and not (DNS_LABEL.match(value) and len(value) <= most):
            out.append(f"{name} of region {region} is {value!r}, which is not a name of {what} "
                       f"(lowercase letters, digits and hyphens, at most {most}).")
    return out


def _namespace_names(inputs: Mapping[str, Any], region: str) -> list[str]:
    """Every *_namespace input is a Kubernetes namespace name (DNS-1123 label)."""
    out: list[str] = []
    for name, value in sorted(inputs.items()):
        values = value if name.endswith("_namespaces") and isinstance(value, list) else [value]
        if not name.endswith(("_namespace", "_namespaces")) or \
                name == "logging_fluent_bit_excluded_namespaces":  # the logging rules say it
            continue
        verb = "lists" if name.endswith("s") else "is"
        for item in values:
            if isinstance(item, str) and not DNS_LABEL.match(item):
                out.append(f"{name} of region {region} {verb} {item!r}, which is not a namespace "
                           "name (lowercase letters, digits and hyphens, at most 63).")
    return out


# ---- across regions, and the run itself -----------------------------------------------------

def check_across_regions(region: str, regions: Mapping[str, Mapping[str, Any]],
                         tier_groups: Mapping[str, Sequence[str]]) -> list[str]:
    """Rules that relate this region to the others of the inventory."""
    out: list[str] = []
    mine = regions.get(region) or {}
    for key, what in (("tai_region_dns_geo_location", "geo location"),
                      ("tai_region_lb_address", "load balancer address")):
        value = mine.get(key)
        if value in (None, ""):
            continue
        others = sorted(o for o, vals in regions.items()
                        if o != region and (vals or {}).get(key) == value)
        if others:
            out.append(f"{key} of region {region} is {value!r}, the same {what} as region "
                       f"{', '.join(others)}; every region needs its own.")
    groups = sorted(f"tai_{tier}" for tier, hosts in tier_groups.items() if region in hosts)
    allowed = ", ".join(f"tai_{t}" for t in TIERS)
    if len(groups) > 1:
        out.append(f"Region {region} is in the tier groups {', '.join(groups)} of the "
                   f"inventory; put it in exactly one of {allowed}.")
    elif not groups:
        out.append(f"Region {region} is in no tier group of the inventory; put it in exactly "
                   f"one of {allowed}.")
    return out


def defined_tags(project_root: str | Path) -> set[str]:
    """Every tag written in the project's playbooks and roles."""
    import yaml
    root = Path(project_root)
    tags: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            value = node.get("tags")
            if isinstance(value, str):
                tags.update(t.strip() for t in value.split(","))
            elif isinstance(value, list):
                tags.update(str(t) for t in value)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    files = [root / "site.yml", *root.glob("playbooks/*.yml"), *root.glob("roles/*/tasks/*.yml")]
    for path in files:
        try:
            walk(_yaml(path.read_text()))
        except (OSError, yaml.YAMLError):
            continue
    return tags


def check_run(region: str, *, limit: Any = None, run_tags: Sequence[str] = ("all",),
              skip_tags: Sequence[str] = (), known_tags: Iterable[str] = (),
              build_root: Any = "", all_regions: Sequence[str] = ()) -> list[str]:
    """Options of the ansible-playbook run: limit, tags and where the plan is written."""
    out: list[str] = []
    if isinstance(limit, str) and not limit.strip(" ,:"):
        out.append(f"--limit {limit!r} selects no region explicitly (an empty limit would plan "
                   f"every region); give one or more of: {', '.join(sorted(all_regions))}.")
    valid = sorted(set(known_tags) | set(SPECIAL_TAGS))
    # molecule passes --skip-tags molecule-notest,notest on every converge (and
    # molecule-idempotence-notest on the idempotence run): skipping those is
    # its convention, not an operator's typo.
    skippable = set(valid) | set(MOLECULE_SKIP_TAGS)
    for option, tags, allowed in (("--tags", run_tags, set(valid)),
                                  ("--skip-tags", skip_tags, skippable)):
        unknown = sorted(set(tags) - allowed)
        if unknown:
            out.append(f"{option} {', '.join(unknown)}: no task of this project has "
                       f"{'this tag' if len(unknown) == 1 else 'these tags'}; valid tags: "
                       f"{', '.join(valid)}.")
    if not isinstance(build_root, str) or not build_root.strip():
        out.append("tai_build_root (from the TAI_BUILD_ROOT environment variable) is empty; set "
                   "TAI_BUILD_ROOT to a folder such as /tmp/plan, or unset it to plan under the "
                   "repository's build/.")
    elif not build_root.startswith("/"):
        out.append(f"tai_build_root (from the TAI_BUILD_ROOT environment variable) is "
                   f"{build_root!r}, a relative path; give an absolute folder such as /tmp/plan.")
    return out


@dataclass
class PlanInputs:
    """Everything the validation play hands over for one region."""

    region: str
    variables: Mapping[str, Any]
    inputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    specs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    regions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tier_groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    charts: Mapping[str, Any] = field(default_factory=dict)
    project_root: str = ""


# Chart versions: exact releases only (Helm's SemVer 2), so that plan and apply install the same.
_SEMVER = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def check_chart_pins(charts: Mapping[str, Any]) -> list[str]:
    """Every tai_charts entry pinned to an exact version."""
    out: list[str] = []
    for key, chart in sorted(charts.items()):
        if isinstance(chart, Mapping) and "version" in chart and not _SEMVER.match(
                str(chart["version"])):
            out.append(f"tai_charts.{key}.version is {str(chart['version'])!r}; it must be an "
                       "exact chart version such as 1.28.0 (group_vars/all/versions.yml), not a "
                       "range or latest.")
    return out


def check_plan(p: PlanInputs) -> list[str]:
    """Every problem of one region's plan, before anything is written."""
    variables = p.variables
    if "gke" in p.inputs:
        # The gke rules check the merged node pools; the inventory's alone would say it twice.
        variables = {k: v for k, v in variables.items() if k != "gke_node_pools"}
    errors = check_region(RegionVars(p.region, variables))
    errors += check_backups(p.region, p.variables)
    if "tai_network_name" in p.variables:
        # The project phase's network names and subnet ranges, against every region's ranges.
        errors += check_project(p.region, {**p.variables, "all_subnet_ranges": {
            r: (vals or {}).get("tai_region_subnet_ranges") for r, vals in p.regions.items()}})
    errors += check_across_regions(p.region, p.regions, p.tier_groups)
    errors += check_chart_pins(p.charts)
    context = Context(region=p.region, regions=sorted(p.regions), charts=p.charts,
                      variables=p.variables, project_root=p.project_root)
    for role, values in p.inputs.items():
        for problem in role_problems(role, values, context, p.specs.get(role)):
            if problem not in errors:
                errors.append(problem)
    return errors


# ---- blue-green operations: the run's own inputs ---------------------------------------------

def _json(value: Any) -> str:
    """``value`` as Ansible's to_json writes it (the sentences quote what was given)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def check_upgrade_inputs(versions: Any, *, known_services: Sequence[str], inventory: Sequence[str],
                         selected: Sequence[str], canary: Any = MISSING,
                         region_order: Any = MISSING) -> list[str]:
    """The rolling upgrade's -e inputs (roles/bluegreen, playbooks/rolling-upgrade.yml).

    ``versions`` is tai_upgrade_versions (None when not given); ``canary`` and
    ``region_order`` are MISSING (or None) when not given. The version rule is the swap's
    (services.IMAGE_VERSION: a tag, optionally tag@sha256:...), so a version the swap would
    refuse stops the run before any write; whether a region needs the digest is
    check_upgrade_digests'.
    """
    out: list[str] = []
    if versions is None:
        out.append("tai_upgrade_versions is required: give the new version per service, e.g. "
                   "-e '{\"tai_upgrade_versions\": {\"governor\": \"v1.1.0\"}}'")
    elif not isinstance(versions, Mapping) or not versions:
        out.append("tai_upgrade_versions must map service names to versions, e.g. "
                   f"{{\"governor\": \"v1.1.0\"}}, got {_json(versions)}")
    else:
        for name, version in versions.items():
            if name not in known_services:
                out.append(f"tai_upgrade_versions names an unknown service {name} "
                           f"(known: {', '.join(known_services)})")
            elif not isinstance(version, str) or not IMAGE_VERSION.match(version):
                out.append(f"tai_upgrade_versions.{name} must be an image tag such as v1.1.0 "
                           "(quoted), optionally with its digest (v1.1.0@sha256:<64 hex "
                           f"digits>), got {_json(version)}")
    if canary is not MISSING and canary is not None and canary not in inventory:
        out.append(f"tai_upgrade_canary_region {_json(canary)} is not a region of the inventory "
                   f"({', '.join(inventory)})")
    if region_order is not MISSING and region_order is not None and (
            isinstance(region_order, (str, Mapping)) or not isinstance(region_order, Sequence)
            or set(map(str, region_order)) - set(inventory)
            or set(selected) - set(map(str, region_order))):
        out.append(f"tai_upgrade_region_order must list every selected region "
                   f"({', '.join(selected)}) and only regions of the inventory, got "
                   f"{_json(region_order)}")
    return out


def check_upgrade_digests(versions: Any, region: str, *, environment: str,
                          allow_undigested: bool) -> list[str]:
    """The digest rule of the plan (undigested_problem) for the versions the rolling upgrade
    deploys to ``region``: in production each must be tag@sha256:... and not the chart's
    placeholder digest; elsewhere a tag alone needs tai_services_allow_undigested_images.
    Versions check_upgrade_inputs refuses are left to it."""
    out = override_problems(region, environment=environment, allow_undigested=allow_undigested)
    if not isinstance(versions, Mapping):
        return out
    for name, version in sorted(versions.items(), key=lambda item: str(item[0])):
        match = IMAGE_VERSION.match(version) if isinstance(version, str) else None
        if match is None:
            continue
        subject = f"tai_upgrade_versions.{name} ({_json(version)})"
        if match["digest"] is None:
            problem = undigested_problem(
                subject, region, environment=environment, allow_undigested=allow_undigested,
                pin=f"give it as {version}@sha256:<the registry's digest of {version}>")
            if problem:
                out.append(problem)
        elif match["digest"] == PLACEHOLDER_DIGEST and environment == "production":
            out.append(f"{subject} of region {region} carries the placeholder digest "
                       f"sha256:000…; give the registry's digest of {match['tag']}.")
    return out


def check_rollback_inputs(services: Any, *, known_services: Sequence[str], limited: bool,
                          all_regions: bool) -> list[str]:
    """The rollback's inputs (roles/bluegreen, playbooks/rollback.yml)."""
    out: list[str] = []
    if not limited and not all_regions:
        out.append("choose the regions to roll back: -l <region> for one, or "
                   "-e tai_rollback_all_regions=true for all of them")
    if (isinstance(services, (str, Mapping)) or not isinstance(services, Sequence) or not services
            or any(not isinstance(s, str) or s not in known_services for s in services)):
        out.append(f"tai_rollback_services must be a list of services among "
                   f"{', '.join(known_services)}, got {_json(services)}")
    return out
