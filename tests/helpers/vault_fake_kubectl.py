"""TEST DOUBLE of `kubectl port-forward`, for the vault role's port-forward access path.

Accepts the arguments the vault modules pass (``[--context C] --namespace N port-forward
TARGET :REMOTE --address 127.0.0.1``), listens on a free loopback port, prints kubectl's
``Forwarding from 127.0.0.1:<port> -> <remote>`` line and relays every connection to the real
server named by the environment variable FAKE_KUBECTL_UPSTREAM (``host:port``), or by
FAKE_KUBECTL_UPSTREAMS (a JSON object from target, ``pod/redis-0``, to ``host:port``), printing
``Handling connection for <port>`` like kubectl does. A target whose name contains ``missing``
fails the way kubectl does for a pod that is not running. Every invocation is appended to
FAKE_KUBECTL_LOG when set, so tests can see which targets were forwarded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from pathlib import Path


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def main(argv: list[str]) -> int:
    if "port-forward" not in argv:
        print(f"error: fake kubectl only does port-forward, not {argv}", file=sys.stderr)
        return 2
    rest = argv[argv.index("port-forward") + 1:]
    target, ports = rest[0], rest[1]
    remote = ports.split(":")[-1]
    if log := os.environ.get("FAKE_KUBECTL_LOG"):
        with Path(log).open("a") as fh:
            fh.write(" ".join(argv) + "\n")
    if "missing" in target:
        print("error: unable to forward port because pod is not running. Current "
              "status=Pending", file=sys.stderr, flush=True)
        return 1
    upstreams = json.loads(os.environ.get("FAKE_KUBECTL_UPSTREAMS") or "{}")
    host, _, port = (upstreams.get(target) or os.environ["FAKE_KUBECTL_UPSTREAM"]).rpartition(":")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    local = server.getsockname()[1]
    print(f"Forwarding from 127.0.0.1:{local} -> {remote}", flush=True)
    while True:
        client, _ = server.accept()
        print(f"Handling connection for {local}", flush=True)
        upstream = socket.create_connection((host, int(port)))
        threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
