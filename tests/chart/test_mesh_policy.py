"""charts/tai-chart: who may call whom in the mesh, the health-check listener, the tokens.

The rendered AuthorizationPolicies are evaluated the way Istio's sidecars evaluate them
(https://istio.io/latest/docs/reference/config/security/authorization-policy/ and
https://istio.io/latest/docs/concepts/security/#authorization-policies: a policy in the root
namespace istio-system applies to every namespace; an unset selector selects every workload of
its namespace; DENY policies first, then, when any ALLOW policy selects the workload, one of
them must match; an ALLOW policy without rules matches nothing; a rule matches when one of its
``from`` and one of its ``to`` entries match; a field that is set must match, a ``not`` field
must not; principals and paths match exactly, by prefix ``x*`` or by suffix ``*x``). The pairs
they admit are compared with the declared graph (istio.callGraph) and with what the services
actually call: the ingress gateway calls what VirtualService tai-api routes to, and a service
can only call another it is given the address of (its environment and ConfigMap).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from helpers.chart_render import CHART, NAMESPACE, by_kind, pod_spec, render

Objects = list[dict[str, Any]]
ROOT_NAMESPACE = "istio-system"
GATEWAY_PRINCIPAL = "cluster.local/ns/istio-system/sa/istio-ingressgateway"
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
# Google's health-check ranges (https://cloud.google.com/load-balancing/docs/health-checks#fw-rule).
GOOGLE_HEALTH_CHECKERS = ("35.191.0.0/16", "130.211.0.0/22")
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
WITH_EDGE = {"istio": {"callGraph": {"coordinator": ["ingress-gateway", "governor"]}}}


@dataclass(frozen=True)
class Request:
    principal: str | None  # None: plaintext, no mTLS identity (Prometheus, outside the mesh)
    ip: str
    port: int
    method: str = "POST"
    path: str = "/"


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    return {"europe-west1": render("europe-west1").objects,
            "with-edge": render("europe-west1", WITH_EDGE).objects}


# ---- an evaluator of AuthorizationPolicy, from Istio's reference ---------------------------

def _text_matches(patterns: list[str], value: str | None) -> bool:
    if value is None:
        return False
    for p in patterns:
        if p in ("*", value) or (p.endswith("*") and value.startswith(p[:-1])) or (
                p.startswith("*") and value.endswith(p[1:])):
            return True
    return False


def _ip_matches(blocks: list[str], ip: str) -> bool:
    return any(ipaddress.ip_address(ip) in ipaddress.ip_network(b, strict=False) for b in blocks)


def _field(spec: Mapping[str, Any], name: str, check: Any) -> bool:
    """A set field must match; its not-field must not."""
    neg = "not" + name[0].upper() + name[1:]
    if name in spec and not check(spec[name]):
        return False
    return not (neg in spec and check(spec[neg]))


def _source_matches(src: Mapping[str, Any], r: Request) -> bool:
    return (_field(src, "principals", lambda v: _text_matches(v, r.principal))
            and _field(src, "ipBlocks", lambda v: _ip_matches(v, r.ip))
            and _field(src, "namespaces", lambda v: r.principal is not None and _text_matches(
                v, r.principal.split("/ns/")[1].split("/")[0])))


def _operation_matches(op: Mapping[str, Any], r: Request) -> bool:
    return (_field(op, "ports", lambda v: str(r.port) in v)
            and _field(op, "methods", lambda v: r.method in v)
            and _field(op, "paths", lambda v: _text_matches(v, r.path)))


def _rule_matches(rule: Mapping[str, Any], r: Request) -> bool:
    assert "when" not in rule, "the evaluator knows no conditions"
    froms = rule.get("from") or []
    tos = rule.get("to") or []
    return ((not froms or any(_source_matches(f["source"], r) for f in froms))
            and (not tos or any(_operation_matches(t["operation"], r) for t in tos)))


def _selects(policy: Mapping[str, Any], namespace: str, labels: Mapping[str, str]) -> bool:
    ns = policy["metadata"]["namespace"]
    if ns not in (namespace, ROOT_NAMESPACE):
        return False
    wanted = ((policy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def admitted(objects: Objects, namespace: str, labels: Mapping[str, str], r: Request) -> bool:
    policies = [p for p in objects if p["kind"] == "AuthorizationPolicy"
                and _selects(p, namespace, labels)]
    by_action: dict[str, list[Mapping[str, Any]]] = {"ALLOW": [], "DENY": []}
    for p in policies:
        spec = p.get("spec") or {}
        by_action[spec.get("action", "ALLOW")].append(spec)
    if any(_rule_matches(rule, r) for s in by_action["DENY"] for rule in s.get("rules") or []):
        return False
    if not by_action["ALLOW"]:
        return True
    return any(_rule_matches(rule, r) for s in by_action["ALLOW"] for rule in s.get("rules") or [])


def test_the_evaluator_follows_istios_rules() -> None:
    """The evaluator itself, on the examples of Istio's reference page."""
    def policy(spec: dict[str, Any], ns: str = NAMESPACE) -> dict[str, Any]:
        return {"kind": "AuthorizationPolicy", "metadata": {"name": "p", "namespace": ns},
                "spec": spec}
    r = Request("cluster.local/ns/default/sa/sleep", "10.0.0.1", 8080, "GET", "/info")
    assert admitted([], NAMESPACE, {}, r)                         # no policy: allowed
    assert not admitted([policy({})], NAMESPACE, {}, r)           # allow-nothing
    assert admitted([policy({"action": "DENY"})], NAMESPACE, {}, r)  # deny without rules
    allow = policy({"rules": [{"from": [{"source": {"principals": ["*/sa/sleep"]}}],
                               "to": [{"operation": {"methods": ["GET"], "paths": ["/info*"]}}]}]})
    assert admitted([allow], NAMESPACE, {}, r)
    assert not admitted([allow], NAMESPACE, {}, Request(r.principal, r.ip, 8080, "POST", "/info"))
    deny = policy({"action": "DENY", "rules": [{"from": [{"source": {
        "notNamespaces": ["default"]}}]}]}, ROOT_NAMESPACE)
    assert admitted([allow, deny], NAMESPACE, {}, r)
    assert not admitted([allow, deny], NAMESPACE, {}, Request(
        "cluster.local/ns/other/sa/sleep", r.ip, 8080, "GET", "/info"))
    assert not admitted([policy({"selector": {"matchLabels": {"app": "x"}}})], NAMESPACE,
                        {"app": "x"}, r)
    assert admitted([policy({"selector": {"matchLabels": {"app": "x"}}})], NAMESPACE,
                    {"app": "y"}, r)


# ---- the graph: declared, rendered, used ---------------------------------------------------

def _workloads(objects: Objects) -> dict[str, tuple[dict[str, str], str, int]]:
    """Service name -> (pod labels of one of its Deployments, service account, gRPC port)."""
    out = {}
    for dep in by_kind(objects, "Deployment").values():
        pod = pod_spec(dep)
        grpc = next(p["containerPort"] for p in pod["containers"][0]["ports"]
                    if p["name"] == "grpc")
        out[dep["metadata"]["labels"]["app"]] = (
            dep["spec"]["template"]["metadata"]["labels"], pod["serviceAccountName"], grpc)
    return out


def _callers(objects: Objects) -> dict[str, str]:
    callers = {"ingress-gateway": GATEWAY_PRINCIPAL}
    for name, (_, account, _) in _workloads(objects).items():
        callers[name] = f"cluster.local/ns/{NAMESPACE}/sa/{account}"
    return callers


def allowed_pairs(objects: Objects) -> set[tuple[str, str]]:
    """Every (caller, service) whose gRPC call the rendered policies admit."""
    pairs = set()
    workloads = _workloads(objects)
    callers = {**_callers(objects), "stranger": "cluster.local/ns/default/sa/default"}
    for svc, (labels, _, port) in workloads.items():
        for caller, principal in callers.items():
            if admitted(objects, NAMESPACE, labels, Request(principal, "10.4.0.9", port)):
                pairs.add((caller, svc))
    return pairs


def declared_pairs(values: Mapping[str, Any]) -> set[tuple[str, str]]:
    graph = values["istio"]["callGraph"]
    return {(caller, svc) for svc, callers in graph.items() for caller in callers}


def called_pairs(objects: Objects) -> set[tuple[str, str]]:
    """What is called: the gateway calls the Services its VirtualServices route to (a Service
    reaches the pods its selector names); a service calls another only with its address, so
    every service whose environment or ConfigMap names another service's host calls it."""
    services = by_kind(objects, "Service")
    pairs = set()
    for vs in by_kind(objects, "VirtualService").values():
        for route in vs["spec"].get("http", []) + vs["spec"].get("tcp", []):
            for dest in route["route"]:
                host = dest["destination"]["host"].split(".")[0]
                pairs.add(("ingress-gateway", services[host]["spec"]["selector"]["app"]))
    config = " ".join(str(v) for v in by_kind(objects, "ConfigMap")["tai-config"]["data"].values())
    for dep in by_kind(objects, "Deployment").values():
        caller = dep["metadata"]["labels"]["app"]
        env = " ".join(str(e.get("value", "")) for e in pod_spec(dep)["containers"][0]["env"])
        for name, svc in services.items():
            callee = svc["spec"]["selector"].get("app")
            named = any(f"{name}.{NAMESPACE}" in text or f"//{name}:" in text
                        for text in (env, config))
            if callee in _workloads(objects) and callee != caller and named:
                pairs.add((caller, callee))
    return pairs


def test_the_policies_admit_exactly_the_declared_graph(rendered: dict[str, Objects]) -> None:
    objs = rendered["europe-west1"]
    declared = declared_pairs(DEFAULTS)
    assert declared == {("ingress-gateway", s) for s in ("governor", "coordinator", "scheduler")}
    assert allowed_pairs(objs) == declared


def test_the_declared_graph_is_what_the_services_call(rendered: dict[str, Objects]) -> None:
    assert called_pairs(rendered["europe-west1"]) == declared_pairs(DEFAULTS)


def test_an_edge_added_to_the_graph_is_admitted_and_only_it(rendered: dict[str, Objects]) -> None:
    objs = rendered["with-edge"]
    assert allowed_pairs(objs) == declared_pairs(DEFAULTS) | {("governor", "coordinator")}
    # The caller's principal admits it on the callee's gRPC port only.
    labels, _, port = _workloads(objs)["coordinator"]
    governor = _callers(objs)["governor"]
    assert admitted(objs, NAMESPACE, labels, Request(governor, "10.4.0.9", port))
    assert not admitted(objs, NAMESPACE, labels, Request(governor, "10.4.0.9", 8080))


def test_an_unknown_caller_is_refused_in_one_sentence() -> None:
    proc = render("europe-west1", {"istio": {"callGraph": {"governor": ["billing"]}}})
    assert proc.returncode != 0
    assert ("istio.callGraph.governor names billing, which is neither ingress-gateway nor a "
            "service (coordinator, governor, scheduler)") in proc.stderr


def test_plaintext_reaches_only_the_metrics_path(rendered: dict[str, Objects]) -> None:
    objs = rendered["europe-west1"]
    for svc, (labels, _, port) in _workloads(objs).items():
        scrape = Request(None, "10.8.0.3", 8080, "GET", "/metrics")
        assert admitted(objs, NAMESPACE, labels, scrape), svc
        for r in (Request(None, "10.8.0.3", port),
                  Request(None, "10.8.0.3", 8080, "POST", "/metrics"),
                  Request(None, "10.8.0.3", 8080, "GET", "/debug/pprof")):
            assert not admitted(objs, NAMESPACE, labels, r), (svc, r)
    # Every workload with a sidecar in the namespace is under the default deny.
    assert (by_kind(objs, "AuthorizationPolicy")["allow-nothing"]["spec"] or {}) == {}


# ---- NetworkPolicies follow the same graph ---------------------------------------------------

def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (https://kubernetes.io/docs/concepts/overview/working-with-objects/
    labels/#resources-that-support-set-based-requirements): matchLabels and In/NotIn/Exists."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, op = labels.get(e["key"]), e["operator"]
        if (op == "In" and value not in e["values"]) or (
                op == "NotIn" and value in e["values"]) or (op == "Exists" and value is None):
            return False
    return True


def _peer_matches(peer: Mapping[str, Any], ns_labels: Mapping[str, str],
                  labels: Mapping[str, str], same_namespace: bool) -> bool:
    """A NetworkPolicy peer: podSelector alone means the policy's namespace; with a
    namespaceSelector, pods of the matching namespaces (networking.k8s.io/v1 NetworkPolicyPeer)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not _selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif not same_namespace:
        return False
    return _selector_matches(peer.get("podSelector") or {}, labels)


def l3_admitted(objects: Objects, src: tuple[str, Mapping[str, str]],
                dst: Mapping[str, str], port: int) -> bool:
    """Under default deny both ways: some policy selecting the destination admits the source on
    the port (ingress) and, for a source in the namespace, some policy selecting the source lets
    it out to the destination (egress)."""
    src_ns, src_labels = src
    ns_labels = {"kubernetes.io/metadata.name": src_ns}
    own = {"kubernetes.io/metadata.name": NAMESPACE}

    def allows(rules: list[Mapping[str, Any]], key: str, peer_ns: Mapping[str, str],
               peer: Mapping[str, str], same: bool) -> bool:
        return any(any(_peer_matches(x, peer_ns, peer, same) for x in r.get(key) or [])
                   and any(q.get("port") == port for q in r.get("ports") or [])
                   for r in rules)
    policies = [o["spec"] for o in objects if o["kind"] == "NetworkPolicy"]
    ingress = any(allows(s.get("ingress") or [], "from", ns_labels, src_labels,
                         src_ns == NAMESPACE)
                  for s in policies if "Ingress" in s["policyTypes"]
                  and _selector_matches(s["podSelector"], dst))
    if src_ns != NAMESPACE:
        return ingress
    egress = any(allows(s.get("egress") or [], "to", own, dst, True)
                 for s in policies if "Egress" in s["policyTypes"]
                 and _selector_matches(s["podSelector"], src_labels))
    return ingress and egress


def l3_pairs(objects: Objects) -> set[tuple[str, str]]:
    workloads = _workloads(objects)
    sources = {"ingress-gateway": ("istio-system", GATEWAY_LABELS),
               **{n: (NAMESPACE, w[0]) for n, w in workloads.items()}}
    return {(caller, svc) for svc, (labels, _, port) in workloads.items()
            for caller, src in sources.items() if l3_admitted(objects, src, labels, port)}


@pytest.mark.parametrize("variant", ["europe-west1", "with-edge"])
def test_network_policies_admit_the_same_graph(rendered: dict[str, Objects],
                                               variant: str) -> None:
    objs = rendered[variant]
    assert l3_pairs(objs) == allowed_pairs(objs)


# ---- the ingress gateway: TLS only, the health port for Google's checkers only -------------

def test_the_health_check_listener_is_tls_and_routes_only_the_health_check(
        rendered: dict[str, Objects]) -> None:
    objs = rendered["europe-west1"]
    gateway = by_kind(objs, "Gateway")["tai-gateway"]
    servers = gateway["spec"]["servers"]
    assert {s["port"]["protocol"] for s in servers} == {"HTTPS"}
    for s in servers:
        assert s["tls"]["mode"] == "SIMPLE"
        assert s["tls"]["credentialName"] == "tai-tls-cert"
    health = next(s for s in servers if s["port"]["number"] == 50051)
    # Google's gRPC-with-TLS probers send no SNI: the listener answers every host.
    assert health["hosts"] == ["*"]
    gw_ref = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
    on_health_port = []
    for vs in by_kind(objs, "VirtualService").values():
        if gw_ref not in vs["spec"].get("gateways", []):
            continue
        assert "tcp" not in vs["spec"] and "tls" not in vs["spec"]
        for route in vs["spec"]["http"]:
            for match in route["match"]:
                # Istio's HTTPMatchRequest.port: a match without one applies to every listener.
                assert "port" in match, (vs["metadata"]["name"], route["name"])
                if match["port"] == 50051:
                    on_health_port.append((match, route["route"]))
    # One route on 50051: exactly the gRPC health Check, to governor's gRPC port.
    assert on_health_port == [({"port": 50051, "uri": {"exact": "/grpc.health.v1.Health/Check"}},
                               [{"destination": {"host": f"governor.{NAMESPACE}.svc.cluster.local",
                                                 "port": {"number": 50051}}}])]


@pytest.mark.parametrize(("ip", "port", "ok"), [
    ("35.191.12.7", 50051, True), ("130.211.3.200", 50051, True),
    ("130.211.4.1", 50051, False), ("203.0.113.9", 50051, False), ("10.0.0.5", 50051, False),
    ("203.0.113.9", 8443, True),
])
def test_the_health_port_admits_only_googles_checkers(rendered: dict[str, Objects], ip: str,
                                                      port: int, ok: bool) -> None:
    objs = rendered["europe-west1"]
    assert admitted(objs, ROOT_NAMESPACE, GATEWAY_LABELS, Request(None, ip, port)) is ok
    policy = by_kind(objs, "AuthorizationPolicy")["tai-lb-health"]
    assert policy["spec"]["rules"][0]["from"][0]["source"]["notIpBlocks"] == list(
        GOOGLE_HEALTH_CHECKERS)


def test_outbound_destinations_are_declared(rendered: dict[str, Objects]) -> None:
    entries = by_kind(rendered["europe-west1"], "ServiceEntry")
    assert sorted(entries) == ["gke-metadata-server", "google-apis"]
    assert entries["google-apis"]["spec"]["hosts"] == ["firestore.googleapis.com"]
    for entry in entries.values():
        assert entry["spec"]["exportTo"] == ["."]
        assert entry["spec"]["location"] == "MESH_EXTERNAL"


# ---- tokens --------------------------------------------------------------------------------

def test_only_the_vault_agent_gets_a_token_with_its_own_audience(
        rendered: dict[str, Objects]) -> None:
    for dep in by_kind(rendered["europe-west1"], "Deployment").values():
        pod = pod_spec(dep)
        assert pod["automountServiceAccountToken"] is False
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        volume = annotations["vault.hashicorp.com/agent-service-account-token-volume-name"]
        projected = next(v for v in pod["volumes"] if v["name"] == volume)["projected"]
        token = projected["sources"][0]["serviceAccountToken"]
        assert token["audience"] == "vault"
        assert 600 <= token["expirationSeconds"] <= 86400
        for c in pod["containers"]:
            assert volume not in {m["name"] for m in c.get("volumeMounts", [])}
