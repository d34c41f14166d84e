"""A loopback chart repository serving STAND-IN charts (test doubles) for the rehearsal.

NOT the upstream charts. Each stand-in under ``tests/helpers/standin_charts/<chart>/`` has the
name and pinned version of a third-party chart of ``group_vars/all/versions.yml`` and creates
only what the apply waits for or builds on: the CRDs (in ``crds/``, as Helm installs them),
the workloads helm waits for and the objects the roles look up afterwards (the Vault server
pods, the injector webhook). Every object carries the label ``tai.test/double: stand-in``.

The repository is what Helm documents as a chart repository
(https://helm.sh/docs/topics/chart_repository/): an ``index.yaml`` (written by the real
``helm repo index``) and the packaged ``.tgz`` files (``helm package``), served over HTTP.
Point ``tai_chart_mirror`` at :attr:`ChartRepo.url` and every release comes from here.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STANDINS = Path(__file__).resolve().parent / "standin_charts"


@dataclass
class ChartRepo:
    url: str
    root: Path
    requests: list[str]


def package(helm: str, dest: Path) -> list[Path]:
    """``helm package`` every stand-in, then ``helm repo index`` (no URL: relative links)."""
    dest.mkdir(parents=True, exist_ok=True)
    charts = sorted(p for p in STANDINS.iterdir() if (p / "Chart.yaml").is_file())
    subprocess.run([helm, "package", *map(str, charts), "--destination", str(dest)],
                   check=True, capture_output=True, text=True)
    subprocess.run([helm, "repo", "index", str(dest)], check=True, capture_output=True,
                   text=True)
    return sorted(dest.glob("*.tgz"))


@contextmanager
def chart_repo(helm: str, root: Path) -> Iterator[ChartRepo]:
    package(helm, root)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler,
                                                                     directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield ChartRepo(f"http://127.0.0.1:{server.server_address[1]}", root, requests)
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)
