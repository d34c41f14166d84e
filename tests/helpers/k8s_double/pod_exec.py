"""TEST DOUBLE of the Kubernetes ``pods/{name}/exec`` subresource, for the Kubernetes API double.

It is NOT Kubernetes: there is no kubelet and no container runtime behind it, and nothing runs
"inside a container". What a command does is decided by a handler the test registers for the
pod (``KubeApiDouble.exec.register(namespace, pod, handler)``): a callable that receives the
command line and the stdin stream of the call and returns the stdout and stderr bytes and the
exit code. The double only speaks the wire protocol around it, as a real API server (proxying
to the kubelet) does:

- ``GET`` or ``POST /api/v1/namespaces/{ns}/pods/{name}/exec?command=...&command=...
  &container=...&stdin=&stdout=&stderr=&tty=`` (API reference: Pod v1 core, "connect GET/POST
  exec of Pod", the ``PodExecOptions`` query parameters);
- answered with HTTP errors and a v1 Status body before any upgrade: 404 for a pod that does
  not exist, 400 for a missing command, no stream requested, an unknown container or a pod
  with several containers and none named, a completed pod; 401 without the double's token;
- upgraded to a WebSocket (RFC 6455, version 13; handshake with ``Sec-WebSocket-Accept``,
  client frames masked, server frames not, fragmented and control frames handled) with the
  channel subprotocols ``v5.channel.k8s.io`` or ``v4.channel.k8s.io`` (the client's preference
  order wins, as in apimachinery's wsstream negotiation); the older v1-v3 and the base64
  variants are not offered;
- every binary message starts with its stream byte (k8s.io/apimachinery
  pkg/util/remotecommand/constants.go, ``StreamStdIn`` 0, ``StreamStdOut`` 1, ``StreamStdErr``
  2, ``StreamErr`` 3, ``StreamResize`` 4, ``StreamClose`` 255 in v5); after the upgrade an
  empty message goes to the lowest writable stream, "to notify the client the connection is
  established" (kubelet pkg/kubelet/cri/streaming/remotecommand/websocket.go); stdin arrives
  on 0; v5's ``[255, 0]`` half-closes stdin (client-go tools/remotecommand/websocket.go
  ``stream.Close``), the end of stdin the handler sees; in v4 stdin only ends with the
  connection (the reason kubernetes.core's k8s_cp bounds its archive with ``head -c``);
- when the handler returns, stdout and stderr are written on 1 and 2, then the v1 Status on 3
  exactly as the kubelet writes it (pkg/kubelet/cri/streaming/remotecommand/exec.go and
  httpstream.go ``v4WriteStatusFunc``: ``{"metadata":{},"status":"Success"}``, or Failure with
  reason ``NonZeroExitCode`` and ``details.causes[0]`` ``{"reason":"ExitCode","message":"<n>"}``,
  a StatusCause's type being serialised as ``reason``), then a WebSocket close (1000).

Not done: ``tty`` (refused: there is no terminal), resize messages (read and ignored), output
streamed while the command runs (it is written when the handler returns), attach and
port-forward, SPDY.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .double import KubeApiDouble

# k8s.io/apimachinery/pkg/util/remotecommand/constants.go
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"
PROTOCOLS = (V5, V4)
NON_ZERO_EXIT = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"
# RFC 6455 section 1.3: the GUID appended to Sec-WebSocket-Key for Sec-WebSocket-Accept.
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 section 5.2 opcodes.
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_EXEC_PATH = "/api/v1/namespaces/{ns}/pods/{name}/exec"


class ExecStdin:
    """The stdin stream of one exec call, as the handler reads it (EOF: ``b""``)."""

    def __init__(self, open_: bool) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._rest = b""
        self._eof = not open_
        if not open_:
            self._chunks.put(None)

    def feed(self, data: bytes) -> None:
        if not self._eof and data:
            self._chunks.put(data)

    def close(self) -> None:
        if not self._eof:
            self._eof = True
            self._chunks.put(None)

    def read1(self, timeout: float | None = None) -> bytes | None:
        """The next chunk that arrived; ``b""`` at EOF; None when nothing came in ``timeout``."""
        if self._rest:
            out, self._rest = self._rest, b""
            return out
        try:
            chunk = self._chunks.get(timeout=timeout)
        except queue.Empty:
            return None
        if chunk is None:
            self._chunks.put(None)  # EOF stays EOF for later reads
            return b""
        return chunk

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (every byte until EOF with -1), blocking like a pipe."""
        out = b""
        while size < 0 or len(out) < size:
            chunk = self.read1()
            if not chunk:
                break
            out += chunk
        if size >= 0 and len(out) > size:
            out, self._rest = out[:size], out[size:]
        return out


@dataclass(frozen=True)
class ExecCall:
    """One exec request as the handler sees it."""

    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: ExecStdin


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0


ExecHandler = Callable[[ExecCall], ExecResult]


@dataclass(frozen=True)
class ExecRecord:
    """What was executed (for assertions): the pod, container, argv, protocol and exit code."""

    namespace: str
    pod: str
    container: str
    command: list[str]
    protocol: str
    exit_code: int | None
    error: str = ""  # what the handler raised (the client saw an InternalError status)


def pod_running_status(pod: Mapping[str, Any], pod_ip: str) -> dict[str, Any]:
    """The status a kubelet reports for a running, ready pod (a body for pods/{name}/status):
    phase Running, its IP, conditions Ready and ContainersReady, every container started."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    return {"status": {
        "phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "hostIP": "10.16.0.2",
        "startTime": now,
        "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                       for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": [{"name": n, "ready": True, "started": True, "restartCount": 0,
                               "image": "redis:7.4", "imageID": "",
                               "state": {"running": {"startedAt": now}}} for n in names]}}


class _Refused(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def exec_status(exit_code: int) -> dict[str, Any]:
    """The v1 Status the kubelet writes on the error stream when the command ends."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            # the tail is the runtime's error text; Go's exec.ExitError reads "exit status N"
            "message": f"command terminated with non-zero exit code: exit status {exit_code}",
            "reason": NON_ZERO_EXIT,
            "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(exit_code)}]}}


@dataclass
class PodExec:
    """The exec subresource of one ``KubeApiDouble``: handlers per pod and a record of calls."""

    double: KubeApiDouble
    handlers: dict[tuple[str, str], ExecHandler] = field(default_factory=dict)
    calls: list[ExecRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, namespace: str, pod: str, handler: ExecHandler) -> None:
        """What commands do in the pod's containers (the double runs nothing by itself)."""
        with self._lock:
            self.handlers[(namespace, pod)] = handler

    @staticmethod
    def route(path: str) -> tuple[str, str] | None:
        parts = path.strip("/").split("/")
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and \
                parts[4] == "pods" and parts[6] == "exec":
            return parts[3], parts[5]
        return None

    def serve(self, h: BaseHTTPRequestHandler, method: str, path: str,
              query: Mapping[str, list[str]]) -> bool:
        """Answer a request of ``pods/{name}/exec``; False when ``path`` is not one."""
        route = self.route(path)
        if route is None:
            return False
        ns, name = route
        h.close_connection = True  # an upgraded (or refused) exec connection is not reused
        try:
            container, command, streams = self._check(h, ns, name, query)
            protocol = self._handshake(h)
        except _Refused as refused:
            self._answer(h, refused)
            self.double.requests.append(_record(method, path, h, refused.code))
            return True
        self.double.requests.append(_record(method, path, h, 101))
        with self._lock:
            self.calls.append(ExecRecord(ns, name, container, command, protocol, None))
            record_at = len(self.calls) - 1

        def ended(code: int | None, error: str = "") -> None:  # before the client hears it
            with self._lock:
                self.calls[record_at] = ExecRecord(ns, name, container, command, protocol, code,
                                                   error)

        _Session(h, protocol, streams).run(
            ExecCall(ns, name, container, command, ExecStdin(streams["stdin"])),
            self.handlers[(ns, name)], ended)
        return True

    def _check(self, h: BaseHTTPRequestHandler, ns: str, name: str,
               query: Mapping[str, list[str]]) -> tuple[str, list[str], dict[str, bool]]:
        token = self.double.token
        if token is not None and h.headers.get("Authorization") != f"Bearer {token}":
            raise _Refused(401, "Unauthorized", "Unauthorized")
        pod = self.double.find("Pod", ns, name)
        if pod is None:
            raise _Refused(404, "NotFound", f'pods "{name}" not found')
        streams = {key: (query.get(key) or ["false"])[-1].lower() in ("1", "true")
                   for key in ("stdin", "stdout", "stderr", "tty")}
        command = list(query.get("command") or [])
        if not command:
            raise _Refused(400, "BadRequest",
                           "you must specify at least one command for the container")
        if not (streams["stdin"] or streams["stdout"] or streams["stderr"]):
            # kubelet remotecommand NewOptions
            raise _Refused(400, "BadRequest",
                           "you must specify at least 1 of stdin, stdout, stderr")
        if streams["tty"]:
            raise _Refused(400, "BadRequest",
                           "the Kubernetes API double does not run commands with a tty")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):  # pkg/registry/core/pod/strategy.go ExecLocation
            raise _Refused(400, "BadRequest", "cannot exec into a container in a completed pod; "
                           f"current phase is {phase}")
        names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
        container = (query.get("container") or [""])[-1]
        if not container:
            if len(names) != 1:  # pkg/registry/core/pod/strategy.go streamLocation
                raise _Refused(400, "BadRequest", f"a container name must be specified for pod "
                               f"{name}, choose one of: [{' '.join(names)}]")
            container = names[0]
        elif container not in names:
            raise _Refused(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if (ns, name) not in self.handlers:
            raise _Refused(500, "InternalError", f"the Kubernetes API double has no exec handler "
                           f"for pod {ns}/{name} (register one: double.exec.register)")
        return container, command, streams

    @staticmethod
    def _handshake(h: BaseHTTPRequestHandler) -> str:
        """RFC 6455 section 4.2: check the opening handshake, answer 101 with the protocol."""
        upgrade = (h.headers.get("Upgrade") or "").lower()
        connection = {t.strip().lower() for t in (h.headers.get("Connection") or "").split(",")}
        key = h.headers.get("Sec-WebSocket-Key") or ""
        if upgrade != "websocket" or "upgrade" not in connection:
            # what the API server answers a plain request: the stream needs an upgrade
            raise _Refused(400, "BadRequest", "Upgrade request required")
        if h.headers.get("Sec-WebSocket-Version") != "13":
            raise _Refused(426, "BadRequest", "unsupported WebSocket version (13 is)")
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError(key)
        except ValueError as exc:
            raise _Refused(400, "BadRequest", "Sec-WebSocket-Key is not 16 bytes in base64"
                           ) from exc
        offered = [p.strip() for value in h.headers.get_all("Sec-WebSocket-Protocol") or []
                   for p in value.split(",") if p.strip()]
        chosen = next((p for p in offered if p in PROTOCOLS), None)
        if chosen is None:
            raise _Refused(400, "BadRequest", f"none of the offered subprotocols {offered} is "
                           f"supported by the double (it speaks {', '.join(PROTOCOLS)})")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        h.send_response(101, "Switching Protocols")
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept)
        h.send_header("Sec-WebSocket-Protocol", chosen)
        h.end_headers()
        h.wfile.flush()
        return chosen

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, refused: _Refused) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "message": refused.message,
                           "reason": refused.reason, "code": refused.code}).encode()
        h.send_response(refused.code)
        if refused.code == 426:
            h.send_header("Sec-WebSocket-Version", "13")
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)


def _record(method: str, path: str, h: BaseHTTPRequestHandler, status: int) -> Any:
    from .server import RequestRecord

    query = h.path.partition("?")[2]
    return RequestRecord(time.time(), method, path, query, status, "", None)


class _Closed(Exception):
    """The client closed the WebSocket (or the TCP connection)."""


class _Session:
    """One upgraded exec connection. Every socket read and write happens in this thread (an
    SSL socket must not be read and written from two threads); the handler runs in another."""

    def __init__(self, h: BaseHTTPRequestHandler, protocol: str,
                 streams: Mapping[str, bool]) -> None:
        self.sock: socket.socket = h.connection
        self.protocol = protocol
        self.streams = streams
        self.buffer = b""
        self.closed = False
        self.fragments: list[bytes] = []
        self.fragment_op = 0

    # -- framing (RFC 6455 section 5) ----------------------------------------------------

    def send(self, opcode: int, payload: bytes) -> None:
        """A server frame: FIN set, not masked (section 5.1: a server MUST NOT mask)."""
        head = bytes([0x80 | opcode])
        if len(payload) < 126:
            head += bytes([len(payload)])
        elif len(payload) < 1 << 16:
            head += bytes([126]) + struct.pack("!H", len(payload))
        else:
            head += bytes([127]) + struct.pack("!Q", len(payload))
        self.sock.sendall(head + payload)

    def message(self, channel: int, data: bytes = b"") -> None:
        self.send(OP_BINARY, bytes([channel]) + data)

    def _readable(self, timeout: float) -> bool:
        if self.buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise _Closed
            self.buffer += chunk
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def receive(self) -> tuple[int, bytes] | None:
        """One client frame, unmasked; a whole message, or None for a fragment or control."""
        first, second = self._take(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:  # no extension was negotiated, so RSV1-3 must be 0 (section 5.2)
            self.fail(1002)
        if not second & 0x80:  # section 5.1: the server MUST close on an unmasked client frame
            self.fail(1002)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._take(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._take(8))[0]
        mask = self._take(4)
        masked, keys = self._take(size), (mask * (size // 4 + 1))[:size]
        # XOR with the repeated 4-byte key (section 5.3), as one integer operation
        payload = (int.from_bytes(masked, "big") ^ int.from_bytes(keys, "big")).to_bytes(
            size, "big")
        if opcode >= 0x8:  # control frames: not fragmented, at most 125 bytes (section 5.5)
            if not fin or size > 125:
                self.fail(1002)
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                if not self.closed:  # section 5.5.1: answer a Close with a Close
                    self.closed = True
                    self.send(OP_CLOSE, payload[:2])
                raise _Closed
            return None
        if opcode == OP_CONT:
            self.fragments.append(payload)
        else:
            self.fragment_op, self.fragments = opcode, [payload]
        if not fin:
            return None
        whole = b"".join(self.fragments)
        self.fragments = []
        return self.fragment_op, whole

    def fail(self, code: int) -> None:
        with contextlib.suppress(OSError):
            self.closed = True
            self.send(OP_CLOSE, struct.pack("!H", code))
        raise _Closed

    # -- the exec session ----------------------------------------------------------------

    def run(self, call: ExecCall, handler: ExecHandler,
            ended: Callable[[int | None, str], None]) -> None:
        # the lowest writable stream gets an empty message once the connection is up
        self.message(STDOUT if self.streams["stdout"] else STDERR if self.streams["stderr"]
                     else ERROR)
        outcome: list[ExecResult | BaseException] = []

        def work() -> None:
            try:
                outcome.append(handler(call))
            except BaseException as exc:  # reported on the error stream
                outcome.append(exc)

        worker = threading.Thread(target=work, daemon=True, name=f"exec {call.pod}")
        worker.start()
        try:
            while worker.is_alive():
                if not self._readable(0.02):
                    continue
                received = self.receive()
                if received is None:
                    continue
                _, data = received  # text or binary: both carry the stream byte (wsstream
                # reads either kind of message into bytes)
                if not data:
                    continue
                if data[0] == CLOSE and self.protocol == V5:
                    if data[1:2] == bytes([STDIN]):
                        call.stdin.close()
                elif data[0] == STDIN:
                    call.stdin.feed(data[1:])
                # RESIZE and anything else: there is no terminal to resize
        except (_Closed, OSError):  # the client went away: nobody hears the exit code
            call.stdin.close()
            worker.join(timeout=30)
            ended(None, "the client closed the connection")
            return
        worker.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            ended(None, f"{type(result).__name__}: {result}")
        else:
            ended(result.exit_code, "")
        try:
            if isinstance(result, BaseException):
                # apierrors.NewInternalError, what the kubelet writes when the runtime fails
                error = (f"error executing command in container: the test's exec handler "
                         f"raised {type(result).__name__}: {result}")
                status: dict[str, Any] = {
                    "metadata": {}, "status": "Failure", "reason": "InternalError",
                    "message": f"Internal error occurred: {error}",
                    "details": {"causes": [{"message": error}]}, "code": 500}
            else:
                if self.streams["stdout"] and result.stdout:
                    self.message(STDOUT, result.stdout)
                if self.streams["stderr"] and result.stderr:
                    self.message(STDERR, result.stderr)
                status = exec_status(result.exit_code)
            self.message(ERROR, json.dumps(status).encode())
            self.closed = True
            self.send(OP_CLOSE, struct.pack("!H", 1000))
            self._drain_close()
        except OSError:
            return

    def _drain_close(self) -> None:
        """Section 7.1.1: after its Close, the server waits a little for the client's Close
        before closing TCP (the client must not see its frames reset)."""
        deadline = time.monotonic() + 2
        with contextlib.suppress(_Closed, OSError):
            while time.monotonic() < deadline:
                if self._readable(0.05):
                    self.receive()
