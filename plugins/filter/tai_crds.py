# Copyright: tai-deploy contributors
"""Filters tai_chart_crds / tai_show_crds_argv: a chart's crds/ folder, applied explicitly
because Helm never upgrades it (module_utils/tai_deploy/chart_crds.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.chart_crds import ChartCrdError, chart_crds, show_crds_argv


def tai_chart_crds(text: str, release: str, kubernetes_version: str) -> list[dict[str, Any]]:
    try:
        return chart_crds(text, release, str(kubernetes_version))
    except ChartCrdError as exc:
        raise AnsibleFilterError(str(exc)) from None


def tai_show_crds_argv(spec: Mapping[str, Any], helm: str) -> list[str]:
    return show_crds_argv(helm, spec)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_chart_crds": tai_chart_crds, "tai_show_crds_argv": tai_show_crds_argv}
