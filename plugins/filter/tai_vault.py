# Copyright: tai-deploy contributors
"""Filters of the vault role: its desired state as data (module_utils/tai_deploy/vault_plan.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy import vault_plan
from tai_deploy.config_text import ConfigTextError


def _wrap(func: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigTextError as exc:
            raise AnsibleFilterError(str(exc)) from None
    call.__name__ = func.__name__
    return call


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "tai_vault_service_policies": _wrap(vault_plan.service_policies),
            "tai_vault_service_roles": _wrap(vault_plan.service_roles),
            "tai_vault_role_endpoints": _wrap(vault_plan.role_endpoints),
            "tai_vault_kv_secrets": _wrap(vault_plan.kv_secrets),
            "tai_vault_secret_values": _wrap(vault_plan.secret_values),
            "tai_vault_redis_passwords": _wrap(vault_plan.redis_passwords),
            "tai_vault_audit_hcl": _wrap(vault_plan.audit_hcl),
            "tai_vault_tls_names": _wrap(vault_plan.tls_names),
            "tai_vault_tls_secrets": _wrap(vault_plan.tls_secrets),
        }
