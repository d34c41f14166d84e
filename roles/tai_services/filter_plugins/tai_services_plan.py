# Copyright: tai-deploy contributors
"""Filters of the tai_services plan: the files it writes and the chart's refusal in one sentence.

``values | tai_services_plan_files(live, apply)`` lists the files of build/<region>/tai-services/
besides the manifests: values.yaml always, live.yaml (what the live cluster keeps, and why) in
apply mode only, where the live cluster was read.

``stderr_lines | tai_helm_refusal`` is Helm's error without its "Error: " prefixes, blank lines
and the "Use --debug" hint, joined into one sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_NOISE = re.compile(r"^(Use --debug|\s*$)")


def tai_services_plan_files(values: Mapping[str, Any], live: Mapping[str, Any],
                            apply: Any) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = [{"path": "values.yaml", "data": values}]
    if _true(apply):
        files.append({"path": "live.yaml", "data": live})
    return files


def tai_helm_refusal(stderr_lines: Iterable[str]) -> str:
    return " ".join(re.sub(r"^Error: ", "", line) for line in stderr_lines
                    if not _NOISE.match(line))


def _true(value: Any) -> bool:
    """Ansible's `| bool` of a switch given as a bool or as a string (-e tai_apply=true)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1", "y", "t")
    return bool(value)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tai_services_plan_files": tai_services_plan_files,
                "tai_helm_refusal": tai_helm_refusal}
