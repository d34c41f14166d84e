"""Fidelity of the exec subresource of the Kubernetes API double (helpers/k8s_double/pod_exec.py).

The clients are the real ones: the Kubernetes Python client's ``kubernetes.stream.stream`` (what
kubernetes.core uses), websocket-client for the v4 subprotocol, a raw socket for RFC 6455's
handshake and masking rules, and kubernetes.core's k8s_exec and k8s_cp modules through
ansible-playbook.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from helpers.ansible_run import run_playbook
from helpers.k8s_double import KubeApiDouble
from helpers.k8s_double.pod_exec import V4, V5, ExecCall, ExecResult, pod_running_status
from helpers.pod_shell import PodShell
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

NS = "tai-system"


def pod(name: str, containers: tuple[str, ...] = ("redis",)) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "redis"}},
            "spec": {"containers": [{"name": c, "image": "redis:7.4"} for c in containers]}}


def tools(call: ExecCall) -> ExecResult:
    """A tiny 'container': echo, fail N, rev (stdin reversed)."""
    argv = call.command
    if argv[0] == "echo":
        return ExecResult(stdout=(" ".join(argv[1:]) + "\n").encode())
    if argv[0] == "fail":
        return ExecResult(stdout=b"partial\n", stderr=b"it broke\n", exit_code=int(argv[1]))
    if argv[0] == "rev":
        return ExecResult(stdout=call.stdin.read()[::-1])
    return ExecResult(stderr=f"{argv[0]}: not found\n".encode(), exit_code=127)


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tls=True) as d:
        d.seed(pod("redis-0", ("redis", "vault-agent")), pod("single"))
        yield d


@pytest.fixture
def api(double: KubeApiDouble, tmp_path: Path) -> Iterator[k8s.CoreV1Api]:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(double.ca_pem)
    config = k8s.Configuration()
    config.host = double.url
    config.ssl_ca_cert = str(ca)
    with k8s.ApiClient(config) as api_client:
        core = k8s.CoreV1Api(api_client)
        for name in ("redis-0", "single"):  # the kubelet's part: the pod runs
            core.patch_namespaced_pod_status(name, NS, pod_running_status(
                double.get("Pod", NS, name), "10.4.0.10"))
        yield core


def run(api: k8s.CoreV1Api, name: str, command: list[str], **kw: Any) -> Any:
    return stream(api.connect_get_namespaced_pod_exec, name, NS, command=command,
                  stdout=True, stderr=True, stdin=kw.pop("stdin", False), tty=False,
                  _preload_content=False, **kw)


def test_stdout_stderr_and_exit_codes_as_the_python_client_reports_them(
        double: KubeApiDouble, api: k8s.CoreV1Api) -> None:
    double.exec.register(NS, "redis-0", tools)
    ok = run(api, "redis-0", ["echo", "hello", "world"], container="redis")
    ok.run_forever(timeout=10)
    assert ok.subprotocol == V5  # the client offers v5 first, the double takes it
    assert ok.read_stdout() == "hello world\n" and ok.read_stderr() == ""
    assert ok.returncode == 0
    failed = run(api, "redis-0", ["fail", "3"], container="redis")
    failed.run_forever(timeout=10)
    assert failed.read_stdout() == "partial\n" and failed.read_stderr() == "it broke\n"
    assert failed.returncode == 3
    failed_status = run(api, "redis-0", ["fail", "42"], container="redis")
    failed_status.run_forever(timeout=10)
    status = json.loads(failed_status.read_channel(3))
    assert status == {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": "command terminated with non-zero exit code: exit status 42",
                      "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}
    # the preloading form (what stream() returns by default): stdout and stderr as one text
    assert stream(api.connect_get_namespaced_pod_exec, "redis-0", NS, command=["echo", "x"],
                  container="redis", stdout=True, stderr=True, stdin=False,
                  tty=False) == "x\n"
    assert [(c.pod, c.container, c.command, c.exit_code) for c in double.exec.calls] == [
        ("redis-0", "redis", ["echo", "hello", "world"], 0), ("redis-0", "redis", ["fail", "3"], 3),
        ("redis-0", "redis", ["fail", "42"], 42), ("redis-0", "redis", ["echo", "x"], 0)]
    assert double.requests[-1].status == 101 and "command=echo" in double.requests[-1].query


def test_stdin_ends_with_the_v5_close_signal(double: KubeApiDouble,
                                             api: k8s.CoreV1Api) -> None:
    double.exec.register(NS, "single", tools)
    resp = run(api, "single", ["rev"], stdin=True)
    resp.write_stdin("abc")
    resp.write_stdin(b"def" * 30000)  # several frames, one longer than 64 KiB
    resp.close_channel(0)
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == ("fed" * 30000) + "cba"
    assert resp.returncode == 0
    assert double.exec.calls[-1].container == "redis"  # the only container


def test_v4_is_spoken_when_the_client_offers_only_v4(double: KubeApiDouble,
                                                     tmp_path: Path) -> None:
    double.exec.register(NS, "single", tools)
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{double.port}/api/v1/namespaces/{NS}/pods/single/exec"
        "?command=fail&command=1&stdout=true&stderr=true",
        subprotocols=[V4], sslopt={"ca_certs": str(_ca(double, tmp_path))})
    assert ws.subprotocol == V4
    messages = []
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            assert struct.unpack("!H", data[:2])[0] == 1000
            break
        messages.append(data)
    # the empty message on the lowest writable stream comes first, the status last
    assert messages[0] == b"\x01"
    assert messages[1:3] == [b"\x01partial\n", b"\x02it broke\n"]
    assert messages[3][0] == 3 and json.loads(messages[3][1:])["details"]["causes"] == [
        {"reason": "ExitCode", "message": "1"}]


def _ca(double: KubeApiDouble, tmp_path: Path) -> Path:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(double.ca_pem)
    return ca


def test_refusals_come_before_the_upgrade_with_a_status(double: KubeApiDouble,
                                                        api: k8s.CoreV1Api) -> None:
    double.exec.register(NS, "redis-0", tools)
    cases = {
        ("nobody", "redis"): "Handshake status 404",
        ("redis-0", "sidecar"): "Handshake status 400",
        ("redis-0", ""): "Handshake status 400",  # two containers, none named
    }
    for (name, container), expected in cases.items():
        kwargs = {"container": container} if container else {}
        with pytest.raises(ApiException, match=expected):
            run(api, name, ["echo"], **kwargs)
    with pytest.raises(ApiException, match="Handshake status 500"):
        run(api, "single", ["echo"])  # no handler: the double runs nothing by itself
    messages = {r.path.rsplit("/", 2)[-2]: r.status for r in double.requests
                if r.path.endswith("/exec")}
    assert messages == {"nobody": 404, "redis-0": 400, "single": 500}


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, however TCP splits them into segments."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def recv_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes (the answer says Connection: close)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_rfc6455_handshake_and_an_unmasked_client_frame() -> None:
    # the double without TLS, to speak raw HTTP/1.1 to it
    with KubeApiDouble() as plain:
        plain.seed(pod("single"))
        plain.exec.register(NS, "single", tools)
        sock = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
        # RFC 6455 section 1.3's example key and the accept value it gives
        sock.sendall(
            f"GET /api/v1/namespaces/{NS}/pods/single/exec?command=rev&stdin=true&stdout=true "
            "HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {V5}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
        assert f"Sec-WebSocket-Protocol: {V5}".encode() in head
        assert recv_exactly(sock, 3) == b"\x82\x01\x01"  # unmasked server frame: stdout, empty
        sock.sendall(b"\x82\x04\x00abc")  # an UNMASKED client frame
        frame = recv_exactly(sock, 4)
        assert frame[0] == 0x88 and struct.unpack("!H", frame[2:4])[0] == 1002
        sock.close()
        plain.wait_for(lambda: bool(plain.exec.calls) and plain.exec.calls[-1].exit_code is None)
        no_upgrade = socket.create_connection(("127.0.0.1", plain.port), timeout=10)
        no_upgrade.sendall(f"GET /api/v1/namespaces/{NS}/pods/single/exec?command=rev&stdout=1"
                           " HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = recv_until_closed(no_upgrade)
        assert answer.startswith(b"HTTP/1.1 400") and b"Upgrade request required" in answer
        no_upgrade.close()


PLAYBOOK = """\
---
- name: Exec and copy into a pod of the Kubernetes API double
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read a file in the pod
      kubernetes.core.k8s_exec:
        namespace: tai-system
        pod: redis-0
        container: redis
        command: cat /vault/secrets/redis-user-cluster-admin
      register: secret
      changed_when: false

    - name: Run a command that fails
      kubernetes.core.k8s_exec:
        namespace: tai-system
        pod: redis-0
        container: redis
        command: sh -c 'echo no >&2; exit 4'
      register: failing
      failed_when: failing.rc != 4

    - name: Copy a file into the pod
      kubernetes.core.k8s_cp:
        namespace: tai-system
        pod: redis-0
        container: redis
        local_path: "{{ source }}"
        remote_path: /data/restore.rdb
        state: to_pod

    - name: Show what came back
      ansible.builtin.debug:
        msg: "SECRET={{ secret.stdout | trim }} RC={{ failing.rc }} ERR={{ failing.stderr | trim }}"
"""


@pytest.mark.playbook
def test_k8s_exec_and_k8s_cp_through_ansible(double: KubeApiDouble, api: k8s.CoreV1Api,
                                             tmp_path: Path) -> None:
    data, secrets = tmp_path / "data", tmp_path / "secrets"
    data.mkdir()
    secrets.mkdir()
    (secrets / "redis-user-cluster-admin").write_text("s3cret\n")
    source = tmp_path / "dump.rdb"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # more than one 1 MiB stdin chunk
    double.exec.register(NS, "redis-0", PodShell(tmp_path / "root", {
        "/data": data, "/vault/secrets": secrets}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {
            "server": double.url, "certificate-authority": str(_ca(double, tmp_path))}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "u"}}]}))
    playbook = tmp_path / "exec.yml"
    playbook.write_text(PLAYBOOK)
    done = run_playbook("-i", "localhost,", "-c", "local", "-e",
                        f"ansible_python_interpreter={sys.executable}", "-e",
                        f"source={source}", str(playbook),
                        env={"K8S_AUTH_KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 0, done.output[-3000:]
    assert "SECRET=s3cret RC=4 ERR=no" in done.output
    assert (data / "restore.rdb").read_bytes() == source.read_bytes()
    commands = [c.command for c in double.exec.calls]
    assert commands[0] == ["cat", "/vault/secrets/redis-user-cluster-admin"]
    # k8s_cp: is the target a directory, can the stream be bounded, then the bounded tar
    assert commands[2] == ["test", "-e", "/data/restore.rdb"]
    assert commands[-1][:2] == ["/bin/sh", "-c"] and commands[-1][2].endswith(
        "| tar -xmf - -C /")
    assert double.exec.calls[-1].exit_code == 0
