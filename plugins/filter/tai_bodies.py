# Copyright: tai-deploy contributors
"""Filters that build the platform roles' bodies as data (module_utils/tai_deploy/config_text.py).

Roles hand their inputs to these filters instead of templating YAML or configuration text with
values pasted in, so that no value can change the structure of what is written: a Kubernetes
object is a mapping serialised by the bundle; Vault's HCL is written with every string escaped;
fluent-bit's classic format refuses what it cannot carry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.config_text import (
    ConfigTextError,
    FluentBit,
    VaultServer,
    fluent_bit_config,
    namespace_manifests,
    vault_server_hcl,
)


def tai_namespace_manifests(definitions: Mapping[str, Any], common_labels: Mapping[str, str],
                            pss_version: str) -> list[dict[str, Any]]:
    return namespace_manifests(definitions, common_labels, pss_version)


def tai_vault_server_hcl(release: str, replicas: Any, tls_secret: str, seal_type: str,
                         gcpckms: Mapping[str, str]) -> str:
    try:
        return vault_server_hcl(VaultServer(release=release, replicas=int(replicas),
                                            tls_secret=tls_secret, seal_type=seal_type,
                                            gcpckms=gcpckms))
    except ConfigTextError as exc:
        raise AnsibleFilterError(str(exc)) from None


def tai_fluent_bit_config(excluded_namespaces: Sequence[str], mem_buf_limit: str,
                          cluster_name: str, location: str, *, elasticsearch: bool = False,
                          elasticsearch_host: str = "",
                          elasticsearch_index_prefix: str = "") -> dict[str, str]:
    try:
        return fluent_bit_config(FluentBit(
            excluded_namespaces=list(excluded_namespaces), mem_buf_limit=mem_buf_limit,
            cluster_name=cluster_name, location=location, elasticsearch=bool(elasticsearch),
            elasticsearch_host=elasticsearch_host,
            elasticsearch_index_prefix=elasticsearch_index_prefix))
    except ConfigTextError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "tai_namespace_manifests": tai_namespace_manifests,
            "tai_vault_server_hcl": tai_vault_server_hcl,
            "tai_fluent_bit_config": tai_fluent_bit_config,
        }
