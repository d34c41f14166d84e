"""charts/tai-chart: lint, render per region, schema validation, checkov, properties, contracts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.chart_render import (
    CHART,
    NAMESPACE,
    REGIONS,
    by_kind,
    checkov,
    containers,
    helm,
    pod_spec,
    render,
    selector_matches,
    workloads,
    write_manifests,
)
from tai_deploy.manifests import validate_objects

SERVICES = {"governor": 50051, "coordinator": 50052, "scheduler": 50053}
CRD_KINDS = {"Gateway", "VirtualService", "DestinationRule", "PeerAuthentication",
             "AuthorizationPolicy", "ServiceEntry", "ServiceMonitor",
             "Certificate", "Issuer"}  # cert-manager: the Redis CA and node certificate
# Objects of the ingress gateway, which live in istio-system with its pods.
GATEWAY_OBJECTS = {("Gateway", "tai-gateway"), ("AuthorizationPolicy", "tai-lb-health")}
# Both slots deployed, green active: the other shape the chart must render correctly.
BLUE_GREEN = {"services": {
    svc: {"activeSlot": "green", "slots": {"blue": {"tag": "v1.0.0"},
                                            "green": {"tag": "v1.1.0",
                                                      "digest": "sha256:" + "1" * 64,
                                                      "replicas": 2}}}
    for svc in SERVICES}}
VARIANTS: dict[str, tuple[str | None, dict[str, Any] | None]] = {
    **{region: (region, None) for region in REGIONS},
    "defaults": (None, None),
    "blue-green": ("europe-west1", BLUE_GREEN),
}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    """Every variant rendered once for the whole module (helm template ~0.1 s each)."""
    return {name: render(region, values).objects for name, (region, values) in VARIANTS.items()}


@pytest.fixture(params=list(VARIANTS))
def objects(request: pytest.FixtureRequest, rendered: dict[str, Objects]) -> Objects:
    return rendered[request.param]


# ---- lint, schema validation, checkov ---------------------------------------------------

@pytest.mark.parametrize("region", [None, *REGIONS])
def test_helm_lint_strict(region: str | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if region:
        args += ["-f", str(CHART / f"values-{region}.yaml")]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_every_object_passes_strict_kubernetes_validation(objects: Objects) -> None:
    report = validate_objects(objects, "1.34")
    assert report.ok, [str(p) for p in report.problems]
    # Istio and Prometheus Operator kinds: validated against their CRD schemas, not only
    # structurally (crd_schemas.py).
    assert report.structural_only == []
    assert {ref.split("/")[0] for ref in report.crd_validated} == CRD_KINDS
    assert report.schema_validated == len(objects)


def test_every_object_has_a_namespace(objects: Objects) -> None:
    for obj in objects:
        gateway = (obj["kind"], obj["metadata"]["name"]) in GATEWAY_OBJECTS
        expected = "istio-system" if gateway else NAMESPACE
        assert obj["metadata"].get("namespace") == expected, obj["metadata"]["name"]


@pytest.fixture(scope="module")
def checkov_report(rendered: dict[str, Objects],
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over every variant (one sub-folder each)."""
    root = tmp_path_factory.mktemp("checkov")
    for name, objs in rendered.items():
        write_manifests(objs, root / name)
    return checkov(root)


def test_checkov_finds_nothing(checkov_report: dict[str, Any]) -> None:
    failed = [(c["check_id"], c["resource"], c["file_path"])
              for c in checkov_report["results"]["failed_checks"]]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 100


def test_every_checkov_skip_has_a_written_reason(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason.split()) >= 8, (check["check_id"], check["resource"], reason)
    assert {c["check_id"] for c in skipped} <= {"CKV_K8S_15", "CKV_K8S_40"}


# ---- properties of the rendered objects -------------------------------------------------

def test_every_container_has_requests_limits_and_runs_as_non_root(objects: Objects) -> None:
    for workload in workloads(objects):
        pod = pod_spec(workload)
        pod_ctx = pod.get("securityContext", {})
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c in containers(workload):
            where = f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}"
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) >= {"cpu", "memory"}, where
            ctx = {**pod_ctx, **c["securityContext"]}
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["runAsUser"] > 0, where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in c["securityContext"]["capabilities"], where


def test_every_long_running_container_has_probes(objects: Objects) -> None:
    # Jobs are exempt: probes decide traffic and restarts of servers; the cluster-forming Job
    # is bounded by activeDeadlineSeconds and backoffLimit instead.
    for workload in workloads(objects):
        if workload["kind"] == "Job":
            assert workload["spec"]["activeDeadlineSeconds"] > 0
            continue
        for c in containers(workload):
            assert "livenessProbe" in c, c["name"]
            assert "readinessProbe" in c, c["name"]


def test_every_workload_has_a_pdb_with_its_own_selector(objects: Objects) -> None:
    pdbs = by_kind(objects, "PodDisruptionBudget")
    for workload in workloads(objects):
        if workload["kind"] == "Job":
            continue
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs.values()
                    if selector_matches(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching) == 1, workload["metadata"]["name"]
        assert matching[0]["spec"]["selector"]["matchLabels"] == selector
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) <= set(pdbs)


def test_every_service_selects_pods_and_its_ports_exist(objects: Objects) -> None:
    pods = [(w["spec"]["template"]["metadata"]["labels"], list(containers(w)))
            for w in workloads(objects) if w["kind"] != "Job"]
    services = by_kind(objects, "Service")
    for name, svc in services.items():
        selected = [cs for labels, cs in pods if selector_matches(svc["spec"]["selector"], labels)]
        if not selected and name.endswith("-preview"):
            # The preview Service is rendered also while the other slot is not deployed (the
            # first upgrade needs its ingress path before any helm upgrade). It then selects
            # no pod by construction: {app: <svc>, slot: <other>}. The slot is created from the
            # active slot's template (by the chart or the swap module), so its ports are
            # those of the pods the active Service selects.
            app = name.removesuffix("-preview")
            active = services[app]["spec"]["selector"]
            assert svc["spec"]["selector"] == {"app": app, "slot": other_slot(active["slot"])}
            selected = [cs for labels, cs in pods if selector_matches(active, labels)]
        assert selected, f"Service {name} selects no pod"
        for cs in selected:
            ports = {p["name"]: p for c in cs for p in c.get("ports", [])}
            for port in svc["spec"]["ports"]:
                target = port["targetPort"]
                assert target in ports, f"Service {name} port {port['name']} -> {target}"
                assert ports[target]["containerPort"] == port["port"], name
                assert ports[target]["protocol"] == port["protocol"], name


def test_no_secret_carries_data(objects: Objects) -> None:
    assert [o for o in objects if o["kind"] == "Secret" and (o.get("data") or
                                                              o.get("stringData"))] == []
    for workload in workloads(objects):
        for c in containers(workload):
            for env in c.get("env", []):
                if any(w in env["name"] for w in ("PASSWORD", "TOKEN", "SECRET", "KEY")):
                    # Where a secret file is (REDIS_PASSWORD_FILE=/vault/secrets/...) is no secret.
                    is_path = env["name"].endswith(("_FILE", "_DIR")) and str(
                        env.get("value", "")).startswith("/")
                    assert "value" not in env or is_path, env["name"]


def test_no_values_file_holds_a_secret() -> None:
    words = ("password", "passwd", "token", "secretkey", "apikey", "privatekey")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if any(w in str(k).lower().replace("_", "") for w in words):
                    raise AssertionError(f"{path}.{k} looks like a secret")
                walk(v, f"{path}.{k}")

    for values in CHART.glob("values*.yaml"):
        walk(yaml.safe_load(values.read_text()), values.name)


# ---- the contracts other roles and issues rely on ---------------------------------------

def test_single_blue_slot_is_the_default(rendered: dict[str, Objects]) -> None:
    for name in (*REGIONS, "defaults"):
        objs = rendered[name]
        assert sorted(by_kind(objs, "Deployment")) == sorted(f"{s}-blue" for s in SERVICES)
        # The preview Services exist from the first install (selecting the idle green slot).
        assert sorted(by_kind(objs, "Service")) == sorted(
            [*SERVICES, *(f"{s}-preview" for s in SERVICES), "redis"])
        for svc in SERVICES:
            preview = by_kind(objs, "Service")[f"{svc}-preview"]
            assert preview["spec"]["selector"] == {"app": svc, "slot": "green"}
            assert preview["metadata"]["labels"]["slot"] == "green"
            assert preview["metadata"]["labels"]["tai.example.com/route"] == "preview"
        assert sorted(by_kind(objs, "DestinationRule")) == sorted(
            [*SERVICES, *(f"{s}-preview" for s in SERVICES), "redis"])


def test_deployments_follow_the_blue_green_contract(rendered: dict[str, Objects]) -> None:
    objs = rendered["blue-green"]
    deployments = by_kind(objs, "Deployment")
    services = by_kind(objs, "Service")
    for svc, port in SERVICES.items():
        for slot, tag in (("blue", "v1.0.0@sha256:" + "0" * 64),
                          ("green", "v1.1.0@sha256:" + "1" * 64)):
            dep = deployments[f"{svc}-{slot}"]
            assert dep["spec"]["selector"]["matchLabels"] == {"app": svc, "slot": slot}
            labels = dep["spec"]["template"]["metadata"]["labels"]
            assert labels["app"] == svc
            assert labels["slot"] == slot
            assert labels["app.kubernetes.io/name"] == svc
            container = pod_spec(dep)["containers"][0]
            assert container["image"] == f"gcr.io/ggen-project/{svc}:{tag}"
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["TAI_SLOT"] == slot
        assert deployments[f"{svc}-green"]["spec"]["replicas"] == 2
        assert deployments[f"{svc}-blue"]["spec"]["replicas"] == 3
        active, preview = services[svc], services[f"{svc}-preview"]
        assert active["spec"]["selector"] == {"app": svc, "slot": "green"}
        assert active["metadata"]["labels"]["slot"] == "green"
        assert preview["spec"]["selector"] == {"app": svc, "slot": "blue"}
        for s in (active, preview):
            assert s["spec"]["type"] == "ClusterIP"
            assert s["spec"]["ports"] == [
                {"name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP",
                 "appProtocol": "grpc"},
                {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics",
                 "protocol": "TCP", "appProtocol": "http"},
            ]


def test_service_pods_match_the_architecture_and_production(rendered: dict[str, Objects]) -> None:
    objs = rendered["europe-west1"]
    config = by_kind(objs, "ConfigMap")["tai-config"]["data"]
    assert config["VAULT_ADDR"] == "https://vault.vault.svc:8200"
    assert "VAULT_ROLE" not in config  # per service, below
    assert config["TAI_REGION"] == "europe-west1"
    assert config["GRPC_MAX_CONNECTION_AGE_SECONDS"] == "30"
    for svc, port in SERVICES.items():
        dep = by_kind(objs, "Deployment")[f"{svc}-blue"]
        pod = pod_spec(dep)
        c = pod["containers"][0]
        assert dep["spec"]["replicas"] == 3
        assert pod["serviceAccountName"] == svc
        assert [p["containerPort"] for p in c["ports"]] == [port, 8080]
        env = {e["name"] for e in c["env"]}
        assert {"name": "VAULT_ROLE", "value": f"tai-{svc}"} in c["env"]
        assert env >= {"RUST_LOG", "FIRESTORE_DATABASE", "REDIS_URL", "VAULT_ADDR", "VAULT_ROLE",
                       "GRPC_MAX_CONNECTION_AGE_SECONDS"}
        assert c["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"},
                                  "limits": {"cpu": "1000m", "memory": "1Gi"}}
        grpc_service = f"tai.{svc.capitalize()}"
        assert c["livenessProbe"] == {"grpc": {"port": port, "service": grpc_service},
                                      "initialDelaySeconds": 30, "periodSeconds": 10,
                                      "timeoutSeconds": 5, "failureThreshold": 3}
        assert c["readinessProbe"] == {"grpc": {"port": port, "service": grpc_service},
                                       "initialDelaySeconds": 5, "periodSeconds": 5,
                                       "timeoutSeconds": 3, "failureThreshold": 2}
        assert c["securityContext"]["runAsUser"] == 1000
        term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        spread = pod["topologySpreadConstraints"][0]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["vault.hashicorp.com/agent-inject"] == "true"
        assert annotations["vault.hashicorp.com/role"] == f"tai-{svc}"
        assert annotations["vault.hashicorp.com/agent-inject-secret-config"] == (
            f"tai/data/{svc}/config")
        # The pod outlives MAX_CONNECTION_AGE + grace, so draining finishes before SIGKILL.
        age = int(config["GRPC_MAX_CONNECTION_AGE_SECONDS"])
        grace = int(config["GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS"])
        assert pod["terminationGracePeriodSeconds"] >= age + grace
        # The swap's default scale-down delay (60 s) exceeds MAX_CONNECTION_AGE + grace.
        assert age + grace < 60
    coordinator = pod_spec(by_kind(objs, "Deployment")["coordinator-blue"])
    assert coordinator["nodeSelector"] == {"workload-type": "memory-intensive"}
    assert "nodeSelector" not in pod_spec(by_kind(objs, "Deployment")["governor-blue"])


def test_service_accounts_carry_workload_identity() -> None:
    objs = render("us-central1", {"serviceAccounts": {"gcpProject": "tai-production"}}).objects
    accounts = by_kind(objs, "ServiceAccount")
    for svc in SERVICES:
        assert accounts[svc]["metadata"]["annotations"] == {
            "iam.gke.io/gcp-service-account": f"tai-{svc}@tai-production.iam.gserviceaccount.com"}
    assert "annotations" not in accounts["redis"]["metadata"]


def test_redis_is_a_cluster_with_replicas_aof_and_a_volume_each(rendered: dict[str, Objects],
                                                                ) -> None:
    objs = rendered["europe-west1"]
    sts = by_kind(objs, "StatefulSet")["redis"]
    assert sts["spec"]["replicas"] == 6
    assert sts["spec"]["serviceName"] == "redis"
    args = pod_spec(sts)["containers"][0]["args"]
    for flag, value in (("--cluster-enabled", "yes"), ("--appendonly", "yes"),
                        ("--cluster-config-file", "/data/nodes.conf")):
        assert args[args.index(flag) + 1] == value
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    exporter = pod_spec(sts)["containers"][1]
    assert exporter["image"].startswith("oliver006/redis_exporter:v")
    assert exporter["ports"] == [{"name": "http-metrics", "containerPort": 9121,
                                  "protocol": "TCP"}]
    headless = by_kind(objs, "Service")["redis"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["ports"][0]["port"] == 6379
    job = by_kind(objs, "Job")["redis-cluster-init"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = {e["name"]: e["value"] for e in pod_spec(job)["containers"][0]["env"]}
    assert env["REDIS_NODES"].split() == [
        f"redis-{i}.redis.tai-system.svc.cluster.local:6379" for i in range(6)]
    assert env["REDIS_CLUSTER_REPLICAS"] == "1"
    scripts = by_kind(objs, "ConfigMap")["redis-scripts"]["data"]
    shipped = sorted(p.name for p in (CHART / "scripts").glob("*.sh"))
    assert sorted(scripts) == shipped
    assert {"redis-cluster-init.sh", "redis-lib.sh", "redis-start.sh"} <= set(shipped)
    for name in shipped:
        assert scripts[name] == (CHART / "scripts" / name).read_text()


def test_redis_without_replicas_can_be_chosen() -> None:
    objs = render("europe-west1", {"redis": {"replicasPerMaster": 0}}).objects
    assert by_kind(objs, "StatefulSet")["redis"]["spec"]["replicas"] == 3


def test_istio_routing_of_the_api(rendered: dict[str, Objects]) -> None:
    objs = rendered["blue-green"]
    gateway = by_kind(objs, "Gateway")["tai-gateway"]
    assert gateway["metadata"]["namespace"] == "istio-system"
    server = gateway["spec"]["servers"][0]
    assert server["port"]["number"] == 443
    assert server["tls"]["mode"] == "SIMPLE"
    assert server["tls"]["credentialName"] == "tai-tls-cert"
    assert server["hosts"] == ["api.tai.example.com", "*.tai.example.com"]
    vs = by_kind(objs, "VirtualService")["tai-api"]
    assert vs["spec"]["gateways"] == ["istio-system/tai-gateway"]
    assert vs["spec"]["hosts"] == ["api.tai.example.com", "europe-west1.tai.example.com"]
    routes = vs["spec"]["http"]
    for svc, port in SERVICES.items():
        prefix = f"/tai.{svc.capitalize()}"
        names = [r["name"] for r in routes]
        # The header route must come first: Istio takes the first match.
        assert names.index(f"{svc}-preview") < names.index(svc)
        preview = routes[names.index(f"{svc}-preview")]
        # port 443: the API is not routed on the health-check listener (50051)
        assert preview["match"] == [{"port": 443, "uri": {"prefix": prefix},
                                     "headers": {"x-tai-slot": {"exact": "preview"}}}]
        assert preview["route"][0]["destination"] == {
            "host": f"{svc}-preview.tai-system.svc.cluster.local", "port": {"number": port}}
        main = routes[names.index(svc)]
        assert main["match"] == [{"port": 443, "uri": {"prefix": prefix}}]
        assert main["route"][0]["destination"]["host"] == f"{svc}.tai-system.svc.cluster.local"
        rule = by_kind(objs, "DestinationRule")[svc]
        assert [s["name"] for s in rule["spec"]["subsets"]] == ["blue", "green"]
        assert rule["spec"]["subsets"][1]["labels"] == {"app": svc, "slot": "green"}
        pool = rule["spec"]["trafficPolicy"]["connectionPool"]["http"]
        assert pool["maxRequestsPerConnection"] > 0
        assert pool["idleTimeout"]
    single = by_kind(rendered["europe-west1"], "VirtualService")["tai-api"]
    # The same routes with a single slot deployed: the preview path exists from the start.
    assert [r["name"] for r in single["spec"]["http"]] == [r["name"] for r in routes]


def other_slot(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


def first_route(http: list[dict[str, Any]], path: str, headers: dict[str, str]) -> str | None:
    """The destination host of the first HTTP route that matches, as Istio picks it.

    Only the match kinds the chart uses: uri prefix and exact header values (all of one
    match block must hold; any block of a route may match).
    """
    for route in http:
        for match in route.get("match", [{}]):
            prefix = match.get("uri", {}).get("prefix", "")
            wanted = {k: v["exact"] for k, v in match.get("headers", {}).items()}
            if path.startswith(prefix) and all(headers.get(k) == v for k, v in wanted.items()):
                host: str = route["route"][0]["destination"]["host"]
                return host.removesuffix(f".{NAMESPACE}.svc.cluster.local")
    return None


HEALTH_CALLS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


@pytest.mark.parametrize("variant", ["europe-west1", "blue-green"])
def test_health_checks_through_the_ingress_reach_each_service_and_slot(
        rendered: dict[str, Objects], variant: str) -> None:
    """What the rolling upgrade sends (docs/bluegreen.md, playbooks/rolling-upgrade.yml).

    Header x-tai-service: <svc> picks the service of a health call, x-tai-slot: preview the
    preview Service; the API prefixes keep working with and without the preview header.
    """
    objs = rendered[variant]
    http = by_kind(objs, "VirtualService")["tai-api"]["spec"]["http"]
    services = by_kind(objs, "Service")
    rules = by_kind(objs, "DestinationRule")
    for svc, port in SERVICES.items():
        for call in HEALTH_CALLS:
            assert first_route(http, call, {"x-tai-service": svc}) == svc
            assert first_route(http, call, {"x-tai-service": svc,
                                            "x-tai-slot": "preview"}) == f"{svc}-preview"
        api = f"/tai.{svc.capitalize()}/Anything"
        assert first_route(http, api, {}) == svc
        assert first_route(http, api, {"x-tai-slot": "preview"}) == f"{svc}-preview"
        # A health call for one service never lands on another one.
        assert first_route(http, HEALTH_CALLS[0], {"x-tai-service": f"{svc}x"}) is None
        for host in (svc, f"{svc}-preview"):
            assert host in services and host in rules
            assert rules[host]["spec"]["host"] == f"{host}.{NAMESPACE}.svc.cluster.local"
            assert {str(r["route"][0]["destination"]["port"]) for r in http
                    if r["route"][0]["destination"]["host"].startswith(f"{host}.")} == {
                str({"number": port})}
        active = services[svc]["spec"]["selector"]["slot"]
        assert services[f"{svc}-preview"]["spec"]["selector"] == {
            "app": svc, "slot": other_slot(active)}
    assert first_route(http, HEALTH_CALLS[0], {}) is None
    # First match wins in Istio: no preview route may follow a route of an active Service.
    kinds = ["preview" if any("x-tai-slot" in m.get("headers", {}) for m in r["match"])
             else "active" for r in http]
    assert kinds == sorted(kinds, key=lambda k: k != "preview")
    assert len(http) == 4 * len(SERVICES)


def test_the_service_header_can_be_renamed() -> None:
    objs = render("europe-west1", {"istio": {"serviceHeader": "x-health-for"}}).objects
    http = by_kind(objs, "VirtualService")["tai-api"]["spec"]["http"]
    assert first_route(http, HEALTH_CALLS[0], {"x-health-for": "scheduler"}) == "scheduler"
    assert first_route(http, HEALTH_CALLS[0], {"x-tai-service": "scheduler"}) is None


def test_service_monitors_follow_the_metrics_contract(rendered: dict[str, Objects]) -> None:
    monitors = by_kind(rendered["europe-west1"], "ServiceMonitor")
    tai = monitors["tai-services"]
    assert tai["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoint = tai["spec"]["endpoints"][0]
    assert endpoint["port"] == "http-metrics"
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel["service"] == ["__meta_kubernetes_pod_label_app"]
    assert relabel["slot"] == ["__meta_kubernetes_pod_label_slot"]
    services = by_kind(rendered["blue-green"], "Service")
    selected = [n for n, s in services.items()
                if selector_matches(tai["spec"]["selector"]["matchLabels"],
                                    s["metadata"]["labels"])]
    assert sorted(selected) == sorted([*SERVICES, *(f"{s}-preview" for s in SERVICES)])
    redis = monitors["redis"]
    assert redis["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert selector_matches(redis["spec"]["selector"]["matchLabels"],
                            services["redis"]["metadata"]["labels"])


def test_network_policies_deny_by_default_then_allow(rendered: dict[str, Objects]) -> None:
    policies = by_kind(rendered["europe-west1"], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns-egress"]["spec"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    ingress = policies["tai-services-ingress"]["spec"]["ingress"]
    gateway_rule = ingress[0]
    assert gateway_rule["from"][0]["podSelector"]["matchLabels"] == {"istio": "ingressgateway"}
    assert sorted(p["port"] for p in gateway_rule["ports"]) == sorted(SERVICES.values())
    assert {p["port"] for p in ingress[1]["ports"]} >= {8080}
    egress_ports = {p["port"] for rule in policies["tai-services-egress"]["spec"]["egress"]
                    for p in rule["ports"]}
    assert egress_ports >= {6379, 8200, 15012, 443}
    redis_in = policies["redis"]["spec"]["ingress"]
    assert {p["port"] for rule in redis_in for p in rule["ports"]} == {6379, 16379, 9121}


# ---- bad values -------------------------------------------------------------------------

@pytest.mark.parametrize(("set_args", "message"), [
    (("services.governor.replicas=-1",),
     "at '/services/governor/replicas': minimum: got -1, want 0"),
    (("services.governor.slots.blue.tag=null",),
     "at '/services/governor/slots/blue': missing property 'tag'"),
    (("services.scheduler.slots.blue.tag=latest",),
     "at '/services/scheduler/slots/blue/tag': 'latest' does not match pattern"),
    (("redis.image.tag=latest",), "at '/redis/image/tag': 'latest' does not match pattern"),
    (("replicas=3",), "at '': additional properties 'replicas' not allowed"),
    (("services.governor.replica=3",),
     "at '/services/governor': additional properties 'replica' not allowed"),
    (("services.coordinator.activeSlot=green",),
     "at '/services/coordinator/slots/green': missing property 'tag'"),
    (("services.coordinator.activeSlot=purple",), "at '/services/coordinator/activeSlot'"),
    (("redis.masters=2",), "at '/redis/masters': minimum: got 2, want 3"),
    (("services.governor.resources.limits=null",),
     "at '/services/governor/resources': missing property 'limits'"),
])
def test_bad_values_fail_with_the_schema_message(set_args: tuple[str, ...], message: str) -> None:
    result = render("europe-west1", set_args=set_args)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr
    assert "panic" not in result.stderr


@pytest.mark.parametrize(("values", "message"), [
    ({"services": {"governor": {"replicas": "three"}}},
     "at '/services/governor/replicas': got string, want integer"),
    ({"redis": {"persistence": {"size": 10}}},
     "at '/redis/persistence/size': got number, want string"),
    ({"istio": {"enabled": "yes"}}, "at '/istio/enabled': got string, want boolean"),
])
def test_wrong_types_fail_with_the_schema_message(values: dict[str, Any], message: str) -> None:
    result = render("europe-west1", values)
    assert result.returncode != 0
    assert message in result.stderr


def test_template_guards_hold_without_the_schema(tmp_path: Path) -> None:
    proc = helm("template", "tai", str(CHART), "--skip-schema-validation",
                "--set", "services.governor.slots.blue.tag=latest")
    assert proc.returncode != 0
    assert ("services.governor.slots.blue: the image tag 'latest' is refused; pin an exact tag "
            "such as v1.0.0") in proc.stderr


def test_the_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    generic = {"governor": "<svc>", "coordinator": "<svc>", "scheduler": "<svc>",
               "blue": "<slot>", "green": "<slot>"}

    def leaves(node: Any, path: list[str]) -> list[list[str]]:
        if isinstance(node, dict) and node:
            return [p for k, v in node.items()
                    for p in leaves(v, [*path, generic.get(str(k), str(k))])]
        return [path]

    missing = set()
    for path in leaves(values, []):
        # The key itself or one of its parents (a group documented as a whole).
        candidates = [".".join(path[:i]) for i in range(len(path), 0, -1)]
        if not any(f"`{c}`" in readme or f"`{c}.*`" in readme for c in candidates):
            missing.add(".".join(path))
    assert sorted(missing) == []
