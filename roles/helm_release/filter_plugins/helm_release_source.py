# Copyright: tai-deploy contributors
"""Filter helm_release_source: chart reference and repository of a planned release, from its
upstream repository or from tai_chart_mirror (module_utils/tai_deploy/chart_source.py).

Filter helm_release_unplanned: the release files a list of names needs that the plan does not
hold (the role installs only what was planned)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

_MODULE_UTILS = str(Path(__file__).resolve().parents[3] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.chart_source import chart_source  # noqa: E402


def helm_release_source(spec: Mapping[str, Any], mirror: str = "") -> dict[str, str]:
    return chart_source(spec, mirror or "")


def helm_release_mirrored(spec: Mapping[str, Any], mirror: str = "") -> dict[str, Any]:
    """The release spec with its repository replaced by the mirror, when one is set."""
    return {**spec, "repository": mirror.rstrip("/")} if mirror else dict(spec)


def helm_release_unplanned(names: Iterable[str], bundle_dir: str) -> list[str]:
    """``<bundle_dir>/releases/<name>.yaml`` of each name whose file the plan does not hold."""
    paths = [f"{bundle_dir}/releases/{name}.yaml" for name in names]
    return [path for path in paths if not Path(path).is_file()]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"helm_release_source": helm_release_source,
                "helm_release_mirrored": helm_release_mirrored,
                "helm_release_unplanned": helm_release_unplanned}
