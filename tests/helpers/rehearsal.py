"""The rehearsal: the complete first apply of one region, then the same command again.

``site.yml -l <region> -e tai_apply=true`` runs from an empty Google Cloud project and an empty
cluster against loopback stand-ins of everything it talks to, so that the real playbooks, the
real helm and kubernetes.core go through every task of the apply path:

- Google Cloud: the GCP TEST DOUBLE (tests/helpers/gcp_double), a new project where only
  Service Usage is enabled; the cluster it creates reports the Kubernetes double as its
  control plane. GKE's NEG controller is not played: the ingress NEGs the load balancer
  attaches are created in the double up front, as GKE would from the gateway's annotation;
- Kubernetes: the Kubernetes API TEST DOUBLE (tests/helpers/k8s_double/) over HTTPS with a
  test CA, reached through the kubeconfig the gke role writes and a stand-in credential plugin
  (tests/helpers/static_credential.py);
- third-party charts: stand-in charts (test doubles, tests/helpers/standin_charts) served by a
  loopback chart repository, selected with ``tai_chart_mirror`` like an operator's mirror;
- Vault: a REAL OpenBao server (tests/helpers/vault_server.py) with the ``static`` seal standing
  in for Cloud KMS auto-unseal, reached with ``vault_access: direct`` (kubectl port-forward to
  pods needs a kubelet, which the Kubernetes double does not have).

    python tests/helpers/rehearsal.py --region europe-west1     # what `make rehearsal` runs
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "module_utils"))
    from helpers.ansible_run import BIN, PlaybookRun, run_playbook
    from helpers.chart_repo import chart_repo
    from helpers.gcp_double import GcpDouble, serve
    from helpers.k8s_double import Behaviour, KubeApiDouble
    from helpers.static_credential import TOKEN
    from helpers.vault_server import BaoServer
else:
    from .ansible_run import BIN, PlaybookRun, run_playbook
    from .chart_repo import chart_repo
    from .gcp_double import GcpDouble, serve
    from .k8s_double import Behaviour, KubeApiDouble
    from .static_credential import TOKEN
    from .vault_server import BaoServer
from tai_deploy.services import SERVICES as TAI_SERVICES

PROJECT = "tai-production"
SERVICES = ("serviceusage.googleapis.com", "compute.googleapis.com", "iam.googleapis.com",
            "cloudkms.googleapis.com", "cloudresourcemanager.googleapis.com",
            "firestore.googleapis.com", "dns.googleapis.com", "container.googleapis.com",
            "storage.googleapis.com", "binaryauthorization.googleapis.com",
            "artifactregistry.googleapis.com")


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(f"rehearsal stand-in image {name}".encode()).hexdigest()


@dataclass
class RunReport:
    run: PlaybookRun
    region: str
    seconds: float
    # Google API calls of the run, counted by the GCP double: reads (GET, and getIamPolicy,
    # a POST that only reads) and writes (every other call).
    gcp_reads: int = 0
    gcp_writes: int = 0

    @property
    def recap(self) -> dict[str, int]:
        return self.run.recap(self.region)

    @property
    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported changed (the default callback's output)."""
        out: list[str] = []
        task = ""
        for line in self.run.stdout.splitlines():
            m = re.match(r"^TASK \[(.*)\] \*+$", line)
            if m:
                task = m.group(1)
            elif line.startswith("changed: ") and task and (not out or out[-1] != task):
                out.append(task)
        return out

    def summary(self, label: str) -> str:
        recap = self.recap if self.run.returncode == 0 or "PLAY RECAP" in self.run.stdout \
            else {}
        return (f"{label}: {'ok' if self.run.returncode == 0 else 'FAILED'}, "
                f"{recap.get('changed', '?')} tasks changed, {recap.get('ok', '?')} ok, "
                f"{self.seconds:.0f} s, {self.gcp_reads + self.gcp_writes} Google API calls "
                f"({self.gcp_writes} writes)")


@dataclass
class Rehearsal:
    region: str
    root: Path
    gcp: GcpDouble
    gcp_url: str
    kube: KubeApiDouble
    chart_url: str
    vault: BaoServer
    chart_requests: list[str]

    def variables(self) -> dict[str, Any]:
        endpoints = dict.fromkeys(SERVICES, self.gcp_url)
        secrets = self.root / "secrets"
        return {
            "tai_apply": True, "tai_build_root": str(self.root / "build"),
            "ansible_python_interpreter": sys.executable,
            # Google Cloud: the GCP double, without credentials (loopback only)
            "project_api_endpoints": endpoints, "project_auth_kind": "none",
            "project_poll_interval": 0, "dns_api_endpoints": endpoints,
            "dns_api_endpoint": self.gcp_url, "dns_auth_kind": "none",
            "dns_change_poll_interval": 0, "gke_api_endpoint": self.gcp_url,
            "gke_auth_kind": "none", "gke_poll_interval": 0, "gke_progress_interval": 0,
            "tai_region_lb_address": "",
            # the cluster: the kubeconfig the gke role writes, with the stand-in plugin
            "gke_kubeconfig_path": str(self.root / "kubeconfig"),
            "gke_token_command": sys.executable,
            "gke_token_args": [str(Path(__file__).with_name("static_credential.py"))],
            # charts: the loopback repository of stand-ins, as an operator's mirror
            "tai_chart_mirror": self.chart_url,
            # the receivers' credentials an operator keeps in an ansible-vault file
            "monitoring_alertmanager_secret_data": {
                "slack-webhook-url": "https://hooks.slack.invalid/rehearsal",
                "pagerduty-routing-key": "rehearsal-routing-key"},
            # Vault: the real OpenBao server, reached directly
            "vault_access": "direct", "vault_api_addr": self.vault.addr,
            "vault_secrets_dir": str(secrets),
            "vault_audit_file_path": str(self.vault.audit_file),
            # Outside a pod, OpenBao cannot read the service-account CA file: it is given the
            # cluster's (the Kubernetes double's) address and CA, as vault_lab does.
            "vault_kubernetes_auth_config": {"kubernetes_host": self.kube.url,
                                             "kubernetes_ca_cert": self.kube.ca_pem.decode()},
            "vault_secrets_password_file": str(self.root / "vault-password"),
            # the secrets the agents pre-populate, from the operator's ansible-vault file
            "vault_service_secrets": {s: {"api-key": f"rehearsal-{s}"} for s in TAI_SERVICES},
            # the digests an operator records for the images (the chart carries placeholders
            # that a production apply refuses); stand-in digests, the images are never pulled
            "tai_services_values": {
                "services": {s: {"slots": {"blue": {"digest": _digest(s)}}} for s in TAI_SERVICES},
                "redis": {"exporter": {"image": {"digest": _digest("redis-exporter")}},
                          "backup": {"image": {"digest": _digest("redis-backup")}}}},
        }

    def apply(self, *extra: str) -> RunReport:
        vars_file = self.root / "rehearsal-vars.json"
        vars_file.write_text(json.dumps(self.variables()))
        env = {"KUBECONFIG": str(self.root / "kubeconfig"),
               "ANSIBLE_VAULT_PASSWORD_FILE": str(self.root / "vault-password"),
               "TAI_BUILD_ROOT": str(self.root / "build")}
        start, first_call = time.monotonic(), len(self.gcp.requests)
        run = run_playbook("site.yml", "-l", self.region, "-e", f"@{vars_file}", *extra,
                           env=env, timeout=1800)
        calls = [(m, p) for m, p, _ in self.gcp.requests[first_call:]]
        reads = sum(1 for m, p in calls if m == "GET" or p.endswith(":getIamPolicy"))
        return RunReport(run, self.region, time.monotonic() - start, reads, len(calls) - reads)


@contextmanager
def rehearsal(region: str, root: Path | None = None,
              behaviour: Callable[[str], Behaviour] | None = None) -> Iterator[Rehearsal]:
    """The doubles and OpenBao of one rehearsal; ``behaviour`` chooses how the pods of each
    image behave in the Kubernetes double (a fault: an image whose pods never become ready)."""
    with ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rehearsal-")))
        root.mkdir(parents=True, exist_ok=True)
        (root / "vault-password").write_text("rehearsal-password\n")
        kube = KubeApiDouble(name=region, tls=True, token=TOKEN,
                             namespaces=("default", "kube-system", "kube-public"))
        if behaviour is not None:
            kube.behaviour = behaviour
        stack.enter_context(kube)
        gcp = GcpDouble.empty_project(op_polls=1)
        gcp.cluster_endpoint = f"127.0.0.1:{kube.port}"
        gcp.cluster_ca = base64.b64encode(kube.ca_pem).decode()
        zones = [f"{region}-{z}" for z in ("a", "b", "c", "d")]
        for zone in zones:  # GKE's NEG controller, from the gateway Service's annotation
            gcp.apis.add_neg(PROJECT, zone, "tai-istio-ingress-443")
        # the TAI images' registry (gcr.io/ggen-project): another project's repository
        gcp.apis.add_repository("ggen-project", "us", "gcr.io")
        _, gcp_url = stack.enter_context(serve(gcp))
        repo = stack.enter_context(chart_repo(str(BIN / "helm"), root / "charts"))
        # the audit device declared in the server's configuration, as the role renders it
        # for the cluster (OpenBao refuses audit devices through its API)
        vault = BaoServer(root / "openbao", seal="static", lifetime=1800,
                          audit_file=root / "openbao-audit.log")
        vault.start()
        stack.callback(vault.stop)
        yield Rehearsal(region, root, gcp, gcp_url, kube, repo.url, vault, repo.requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument("--keep", type=Path, help="keep the work folder (build/, logs) here")
    parser.add_argument("--serve", action="store_true",
                        help="only start the doubles and write rehearsal-vars.json (debugging)")
    args = parser.parse_args(argv)
    with rehearsal(args.region, args.keep) as lab:
        if args.serve:
            (lab.root / "rehearsal-vars.json").write_text(json.dumps(lab.variables()))
            print(f"serving; vars in {lab.root}/rehearsal-vars.json", flush=True)
            time.sleep(3600)
            return 0
        print(f"Rehearsal of {args.region}: site.yml -l {args.region} -e tai_apply=true, "
              "from an empty project and an empty cluster (test doubles), twice", flush=True)
        first = lab.apply()
        print(first.summary("first apply "), flush=True)
        (lab.root / "first-apply.log").write_text(first.run.output)
        if first.run.returncode != 0:
            print(first.run.output[-6000:])
            return 1
        second = lab.apply()
        (lab.root / "second-apply.log").write_text(second.run.output)
        print(second.summary("second apply"), flush=True)
        if second.run.returncode != 0:
            print(second.run.output[-6000:])
            return 1
        if second.recap["changed"] != 0:
            print("the second apply changed: " + ", ".join(second.changed_tasks))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
