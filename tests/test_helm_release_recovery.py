"""An apply killed while Helm installs or upgrades a release converges on the next run.

Helm keeps the state of a release in a Secret per revision (``sh.helm.release.v1.<name>.v<n>``,
label ``status``). A ``helm upgrade --install`` that is killed leaves the last revision
``pending-install`` or ``pending-upgrade``, and every later Helm operation on the release is
refused with "another operation (install/upgrade/rollback) is in progress". The helm_release
role finds that state before installing: a pending first install is uninstalled (it never
served), a pending upgrade is rolled back to the last deployed revision, then the planned
install or upgrade runs.

The real helm binary and the helm_release role (through ansible-playbook) against the
Kubernetes API TEST DOUBLE, with the stand-in Vault chart (a test double) from a loopback chart
repository; the double makes the chart's injector pods slow to become ready so that the run
can be killed while Helm waits for them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers.ansible_run import BIN, REPO, ansible_env, run_playbook
from helpers.chart_repo import chart_repo
from helpers.k8s_double import Behaviour, KubeApiDouble

RELEASE, NAMESPACE, VERSION = "vault", "vault", "0.31.0"


class Slow:
    """The pods' behaviour: ready after ``delay`` seconds (the double reads it per rollout)."""

    def __init__(self) -> None:
        self.delay = 0.2

    def __call__(self, image: str) -> Behaviour:
        return Behaviour(ready_delay=self.delay)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[KubeApiDouble, Slow, Path]]:
    slow = Slow()
    with (KubeApiDouble(namespaces=("default", "kube-system", NAMESPACE), behaviour=slow)
          as double, chart_repo(str(BIN / "helm"), tmp_path / "charts") as repo):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "double",
            "clusters": [{"name": "double", "cluster": {"server": double.url}}],
            "users": [{"name": "tester", "user": {"token": "t"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double",
                                                        "user": "tester"}}]}))
        bundle = tmp_path / "bundle"
        (bundle / "releases").mkdir(parents=True)
        (bundle / "values").mkdir()
        (bundle / "values" / f"{RELEASE}.yaml").write_text("{}\n")
        release = {"chart": "vault", "name": RELEASE, "namespace": NAMESPACE,
                   "repository": "https://helm.releases.hashicorp.com",
                   "values_file": f"values/{RELEASE}.yaml", "version": VERSION}
        (bundle / "releases" / f"{RELEASE}.yaml").write_text(yaml.safe_dump(release))
        book = tmp_path / "install.yml"
        book.write_text(yaml.safe_dump([{
            "name": "Install the planned release", "hosts": "localhost", "gather_facts": False,
            "roles": [{"role": "helm_release", "vars": {
                "tai_apply": True, "helm_release_bundle_dir": str(bundle),
                "helm_release_names": [RELEASE], "helm_release_timeout": "2m",
                "helm_release_kube_context": "double", "helm_release_chart_mirror": repo.url,
                "tai_helm_binary": str(BIN / "helm"), "tai_kubernetes_version": "1.34"}}]}]))
        yield double, slow, tmp_path


def _args(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "install.yml"), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={BIN / 'python'}"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {"KUBECONFIG": str(tmp_path / "kubeconfig")}


def _revisions(double: KubeApiDouble) -> dict[str, str]:
    """Helm's release records in the cluster: Secret name -> status label."""
    return {s["metadata"]["name"]: s["metadata"]["labels"]["status"]
            for s in double.objects("secrets", NAMESPACE)
            if (s["metadata"].get("labels") or {}).get("owner") == "helm"}


def _killed_while(double: KubeApiDouble, tmp_path: Path, status: str) -> None:
    """Run the role and kill ansible-playbook and everything it started, helm included
    (SIGKILL, as when the machine running the apply goes away), once the release's last
    revision has ``status``."""
    proc = subprocess.Popen(
        [str(BIN / "ansible-playbook"), *_args(tmp_path)], cwd=REPO,
        env=ansible_env(_env(tmp_path)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        while status not in _revisions(double).values():
            assert proc.poll() is None, f"the run ended before the release was {status}"
            assert time.monotonic() < deadline, f"the release never became {status}"
            time.sleep(0.05)
    finally:
        for pid in _descendants(proc.pid):  # Ansible runs each module in its own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def _descendants(root: int) -> list[int]:
    """root and every process below it (read from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


@pytest.mark.playbook
def test_a_first_install_killed_halfway_is_installed_by_the_next_run(
        lab: tuple[KubeApiDouble, Slow, Path]) -> None:
    double, slow, tmp_path = lab
    slow.delay = 8.0
    _killed_while(double, tmp_path, "pending-install")
    assert _revisions(double) == {f"sh.helm.release.v1.{RELEASE}.v1": "pending-install"}

    slow.delay = 0.2
    run = run_playbook(*_args(tmp_path), env=_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.output[-3000:]
    assert "deployed" in _revisions(double).values(), _revisions(double)
    assert list(_revisions(double).values())[-1] == "deployed"
    assert "pending-install" in run.stdout  # the run says what it found and did
    # a run after that changes nothing
    again = run_playbook(*_args(tmp_path), env=_env(tmp_path), timeout=300)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap("localhost")["changed"] == 0, again.stdout[-3000:]


@pytest.mark.playbook
def test_an_upgrade_killed_halfway_is_rolled_back_then_upgraded_by_the_next_run(
        lab: tuple[KubeApiDouble, Slow, Path]) -> None:
    double, slow, tmp_path = lab
    first = run_playbook(*_args(tmp_path), env=_env(tmp_path), timeout=300)
    assert first.returncode == 0, first.output[-3000:]
    # a new planned value: the next run upgrades the release
    values = tmp_path / "bundle" / "values" / f"{RELEASE}.yaml"
    values.write_text("injector: {replicas: 2}\n")
    slow.delay = 8.0
    _killed_while(double, tmp_path, "pending-upgrade")

    slow.delay = 0.2
    run = run_playbook(*_args(tmp_path), env=_env(tmp_path), timeout=300)
    assert run.returncode == 0, run.output[-3000:]
    statuses = _revisions(double)
    assert statuses[max(statuses, key=lambda n: int(n.rsplit(".v", 1)[1]))] == "deployed", statuses
    assert "pending-upgrade" in run.stdout
    injector = double.get("Deployment", NAMESPACE, f"{RELEASE}-agent-injector")
    assert injector["spec"]["replicas"] == 2
    assert injector["status"]["readyReplicas"] == 2
