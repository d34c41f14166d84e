# Copyright: tai-deploy contributors
"""Filters dns_bodies / dns_lb_items / dns_zone_items: the dns role's requests as data.

``dns_bodies`` returns the request bodies the plan writes to build/<region>/dns/ (compute v1
insert bodies, the dns v1 managedZones.create body and the geo item the cloud_dns_geo_item
module is asked to write). ``dns_lb_items`` and ``dns_zone_items`` wrap exactly those bodies
into gcp_resource items (read before write, operation polling), so apply sends what the plan
shows. The load balancer goes through the project's own REST converger rather than the
google.cloud modules: their URLs are fixed to Google, so they could never run against the
test double, and one code path serves every GCP object of the project.

The global address is reserved WITHOUT an ``address``: Google allocates global external
addresses (only bring-your-own-IP may choose one). The forwarding rule names the address
resource, which Google resolves; the allocated IP is read back and used by the geo DNS item.

Pure functions, no Ansible import beyond the FilterModule hook; tests import them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPUTE = "compute.googleapis.com"
_URL = "https://www.googleapis.com/compute/v1/"


def dns_bodies(cfg: Mapping[str, Any]) -> dict[str, Any]:
    project, region = str(cfg["project"]), str(cfg["region"])
    names: Mapping[str, str] = cfg["names"]
    project_url = f"{_URL}projects/{project}"
    ports = sorted({str(cfg["backend_port"]), str(cfg["health_check_port"])}, key=int)
    hc = cfg["health_check"]
    address = f"projects/{project}/global/addresses/{names['address']}"
    expected = cfg.get("expected_address") or ""
    return {
        "address.json": {
            "name": names["address"], "addressType": "EXTERNAL", "ipVersion": "IPV4",
            "description": f"External address of the TAI load balancer in {region}"},
        "firewall.json": {
            "name": names["firewall"],
            "description": f"Google proxies and health checkers to the TAI ingress gateway pods "
                           f"({region})",
            "network": f"projects/{project}/global/networks/{cfg['network']}",
            "direction": "INGRESS", "priority": 1000,
            "sourceRanges": [str(r) for r in cfg["lb_source_ranges"]],
            # the NEG endpoints are pod IPs: only the region's pods range is opened
            "destinationRanges": [str(cfg["pods_range"])],
            "allowed": [{"IPProtocol": "tcp", "ports": ports}]},
        "health-check.json": {
            "name": names["health_check"],
            "description": f"gRPC health of {cfg['health_check_grpc_service']} through the "
                           f"ingress gateway ({region})",
            # gRPC, not TCP: Envoy accepts TCP connections whether or not anything behind it
            # can serve; grpc.health.v1 Check answers SERVING only when the service does. With
            # TLS: the gateway's listener terminates TLS (compute v1 HealthCheck.type
            # GRPC_WITH_TLS, GRPCTLSHealthCheck; NEG backends supported).
            "type": "GRPC_WITH_TLS",
            "grpcTlsHealthCheck": {"port": int(cfg["health_check_port"]),
                                "portSpecification": "USE_FIXED_PORT",
                                "grpcServiceName": str(cfg["health_check_grpc_service"])},
            "checkIntervalSec": int(hc["interval"]), "timeoutSec": int(hc["timeout"]),
            "healthyThreshold": int(hc["healthy"]), "unhealthyThreshold": int(hc["unhealthy"])},
        "backend-service.json": {
            "name": names["backend_service"],
            "description": f"Istio ingress gateway NEGs of {region}",
            "protocol": "TCP", "loadBalancingScheme": str(cfg["lb_scheme"]),
            "timeoutSec": int(cfg["backend_timeout"]),
            "connectionDraining": {"drainingTimeoutSec": int(cfg["draining_timeout"])},
            "healthChecks": [f"{project_url}/global/healthChecks/{names['health_check']}"],
            "backends": [{"group": f"{project_url}/zones/{z}/networkEndpointGroups/"
                                   f"{cfg['neg_name']}",
                          "balancingMode": "CONNECTION",
                          "maxConnectionsPerEndpoint": int(cfg["max_connections"])}
                         for z in cfg["zones"]]},
        "target-tcp-proxy.json": {
            "name": names["target_proxy"],
            "description": f"TCP proxy of the TAI load balancer in {region}",
            "service": f"{project_url}/global/backendServices/{names['backend_service']}",
            "proxyHeader": "NONE"},
        "forwarding-rule.json": {
            "name": names["forwarding_rule"],
            "description": f"TAI API on {cfg['forwarding_port']} in {region}",
            # a reference to the address resource: Google resolves it to the allocated IP
            "IPAddress": address, "IPProtocol": "TCP",
            # The API stores a single port as "443-443"; the same spelling keeps reruns idempotent.
            "portRange": f"{cfg['forwarding_port']}-{cfg['forwarding_port']}",
            "target": f"{project_url}/global/targetTcpProxies/{names['target_proxy']}",
            "loadBalancingScheme": str(cfg["lb_scheme"])},
        "managed-zone.json": {
            "name": str(cfg["zone_name"]), "dnsName": str(cfg["zone_dns_name"]),
            "description": "TAI public zone", "visibility": "public"},
        "geo-item.json": {
            # What cloud_dns_geo_item is asked to do. The changes.create body depends on the
            # live record set, so apply mode computes it; `--check --diff` shows it.
            "managedZone": str(cfg["zone_name"]), "name": str(cfg["record_name"]), "type": "A",
            "ttl": int(cfg["record_ttl"]), "state": str(cfg["state"]),
            "item": {"location": str(cfg["geo_location"]),
                     "rrdatas": [expected or f"$(address.address) (allocated by Google to "
                                             f"{names['address']}, read back at apply)"]}},
    }


# compute method kind of each body, and what may change in place
_LB = (
    ("address", "address.json", "global/addresses", "globalAddresses", False),
    ("firewall", "firewall.json", "global/firewalls", "firewalls", True),
    ("health-check", "health-check.json", "global/healthChecks", "healthChecks", True),
    ("backend-service", "backend-service.json", "global/backendServices", "backendServices",
     True),
    ("target-tcp-proxy", "target-tcp-proxy.json", "global/targetTcpProxies",
     "targetTcpProxies", False),
    ("forwarding-rule", "forwarding-rule.json", "global/forwardingRules",
     "globalForwardingRules", False),
)
_TITLES = {"address": "global address", "firewall": "firewall rule",
           "health-check": "health check", "backend-service": "backend service",
           "target-tcp-proxy": "target TCP proxy", "forwarding-rule": "forwarding rule"}
_IMMUTABLE = {"address": ["addressType", "ipVersion"], "firewall": ["network", "direction"],
              "backend-service": ["loadBalancingScheme"]}


def dns_lb_items(bodies: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    project, region = str(cfg["project"]), str(cfg["region"])
    base = f"/compute/v1/projects/{project}"
    items: list[dict[str, Any]] = []
    for ident, file, coll, kind, patchable in _LB:
        body = dict(bodies[file])
        compare = {k: v for k, v in body.items() if k not in ("name", "description")}
        if ident == "forwarding-rule":
            compare["IPAddress"] = "$(address.address)"  # Google answers the resolved IP
        if ident == "backend-service":
            # the NEGs exist once GKE's NEG controller saw the annotated gateway Service
            items += [{"id": f"neg-{z}", "kind": "await", "service": COMPUTE,
                       "title": f"NEG {cfg['neg_name']} in {z}",
                       "self": f"{base}/zones/{z}/networkEndpointGroups?filter=name%20%3D%20"
                               f"{cfg['neg_name']}",
                       "timeout": int(cfg["neg_wait_seconds"])} for z in cfg["zones"]]
        item: dict[str, Any] = {
            "id": ident, "kind": "rest", "service": COMPUTE, "api": "compute.v1",
            "title": f"{_TITLES[ident]} {body['name']} ({region})",
            "self": f"{base}/{coll}/{body['name']}",
            "create": {"method": "POST", "path": f"{base}/{coll}",
                       "method_id": f"compute.{kind}.insert", "body": body},
            "compare": compare, "immutable": _IMMUTABLE.get(ident, [])}
        if patchable:
            item["update"] = {"method": "PATCH", "path": f"{base}/{coll}/{body['name']}",
                              "method_id": f"compute.{kind}.patch",
                              "body": {k: v for k, v in body.items() if k != "name"},
                              "fingerprint": True}
        if ident == "address":
            item["outputs"] = {"address": "address"}
            if cfg.get("expected_address"):
                item["expect"] = {"field": "address", "value": str(cfg["expected_address"]),
                                  "hint": f"tai_region_lb_address of {region}"}
        items.append(item)
    return items


def dns_address_items(bodies: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Only the address item: drain and restore read the allocated address, nothing else."""
    return [i for i in dns_lb_items(bodies, cfg) if i["id"] == "address"]


def dns_zone_items(bodies: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    project = str(cfg["project"])
    zone = dict(bodies["managed-zone.json"])
    return [{
        "id": "zone", "kind": "rest", "service": "dns.googleapis.com", "api": "dns.v1",
        "title": f"managed zone {zone['name']} ({zone['dnsName']})",
        "self": f"/dns/v1/projects/{project}/managedZones/{zone['name']}",
        "create": {"method": "POST", "path": f"/dns/v1/projects/{project}/managedZones",
                   "method_id": "dns.managedZones.create", "body": zone},
        "compare": {"dnsName": zone["dnsName"], "visibility": zone["visibility"]},
        "immutable": ["dnsName", "visibility"],
        "outputs": {"name_servers": "nameServers"}}]


def dns_bundle_files(bodies: Mapping[str, Any], methods: Mapping[str, Any],
                     ) -> list[dict[str, Any]]:
    """tai_bundle files: each body with the discovery method it is checked against."""
    out: list[dict[str, Any]] = []
    for path, data in sorted(bodies.items()):
        entry: dict[str, Any] = {"path": path, "data": data}
        if path in methods:
            entry["gcp_schema"] = dict(methods[path])
        out.append(entry)
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"dns_bodies": dns_bodies, "dns_lb_items": dns_lb_items,
                "dns_address_items": dns_address_items, "dns_zone_items": dns_zone_items,
                "dns_bundle_files": dns_bundle_files}
