"""`helm template` of a local chart with complete values, or its refusal in one sentence.

The plan renders the TAI chart for the pinned Kubernetes minor (``--kube-version``: the chart's
kubeVersion constraint and any ``.Capabilities`` check depend on it; kubernetes.core's
helm_template has no such option). The values go to helm on its standard input as JSON (a
subset of YAML), so no values file with secrets or region data is left on disk besides the plan.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_NOISE = re.compile(r"^(Use --debug|\s*$)")


class ChartRefused(Exception):
    """helm could not render the chart with these values; the message is one sentence."""


@dataclass(frozen=True)
class ChartRender:
    """What to render: the chart folder, release, namespace and the complete values."""

    path: str
    release: str
    namespace: str
    kubernetes_version: str
    values: Mapping[str, Any]
    helm: str = "helm"


def helm_reason(stderr_lines: Iterable[str]) -> str:
    """Helm's error without its "Error: " prefixes, blank lines and the --debug hint."""
    return " ".join(re.sub(r"^Error: ", "", line) for line in stderr_lines
                    if not _NOISE.match(line))


def render(chart: ChartRender) -> str:
    """The rendered manifests (a multi-document YAML stream); ChartRefused if helm refuses."""
    argv = [chart.helm, "template", chart.release, chart.path, "--namespace", chart.namespace,
            "--kube-version", chart.kubernetes_version, "--values", "-"]
    try:
        done = subprocess.run(argv, input=json.dumps(dict(chart.values)), capture_output=True,
                              text=True, check=False)
    except OSError as exc:
        raise ChartRefused(f"cannot run {chart.helm} ({exc.strerror or exc}); make setup "
                           "installs helm under .venv/bin") from exc
    if done.returncode != 0:
        raise ChartRefused(helm_reason(done.stderr.splitlines())
                           or f"helm template exited with {done.returncode}")
    return done.stdout
