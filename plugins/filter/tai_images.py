# Copyright: tai-deploy contributors
"""Filter tai_chart_images: the image repositories of the TAI services in the chart's values
with the inventory's overrides (module_utils/tai_deploy/image_registry.py).

It lives with the project's filters, not in the project role, because a role default that uses
it (project_images) is templated wherever the validation play checks the roles' inputs, the
blue-green playbooks included.

``values | tai_chart_images(tai_services_values)`` returns a sorted list of repositories.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")
if _MODULE_UTILS not in sys.path:
    sys.path.insert(0, _MODULE_UTILS)

from tai_deploy.image_registry import chart_images


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tai_chart_images": chart_images}
