"""Project-phase inputs as the role's defaults build them (for tests of the cores)."""

from __future__ import annotations

from typing import Any

PROJECT = "tai-production"
REGIONS = {
    "us-central1": {"nodes": "10.0.0.0/20", "pods": "10.4.0.0/14", "services": "10.8.0.0/20"},
    "europe-west1": {"nodes": "10.16.0.0/20", "pods": "10.20.0.0/14",
                     "services": "10.24.0.0/20"},
}


def _account(name: str, display: str, roles: list[str], workload: str = "") -> dict[str, Any]:
    return {"name": name, "display_name": display, "description": f"TAI {display}",
            "project_roles": roles, "workload": workload}


def global_cfg() -> dict[str, Any]:
    return {
        "project": PROJECT, "network": "tai-vpc", "routing_mode": "GLOBAL",
        "network_description": "TAI platform VPC",
        "services": ["container.googleapis.com", "compute.googleapis.com", "dns.googleapis.com",
                     "cloudkms.googleapis.com", "iam.googleapis.com",
                     "cloudresourcemanager.googleapis.com", "firestore.googleapis.com",
                     "serviceusage.googleapis.com"],
        "service_accounts": [
            _account("tai-gke-nodes", "GKE nodes", ["roles/container.defaultNodeServiceAccount",
                                                    "roles/artifactregistry.reader"]),
            _account("tai-governor", "governor", ["roles/datastore.user"],
                     "tai-system/governor"),
            _account("fluent-bit", "fluent-bit", ["roles/logging.logWriter"],
                     "logging/fluent-bit"),
            _account("vault-server", "Vault", [], "vault/vault"),
        ],
        "firestore": {"name": "tai-firestore", "type": "FIRESTORE_NATIVE", "location": "nam5"},
    }


def region_cfg(region: str) -> dict[str, Any]:
    return {
        "project": PROJECT, "network": "tai-vpc", "subnet": f"tai-{region}",
        "subnet_ranges": REGIONS[region], "pods_range_name": "pods",
        "services_range_name": "services", "router_name": f"tai-{region}-router",
        "nat_name": f"tai-{region}-nat", "environment": "production",
        "vault_key": {"key_ring": "vault-production", "crypto_key": "vault-unseal",
                      "member": f"vault-server@{PROJECT}.iam.gserviceaccount.com"},
        "gke_key": {"key_ring": "tai-gke", "crypto_key": "gke-secrets"},
    }
