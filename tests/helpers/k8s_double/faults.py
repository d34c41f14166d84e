"""The faults tests inject into the Kubernetes API TEST DOUBLE.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). ``add_fault(Fault(...))`` makes the
Nth matching request(s) (``skip`` the first ones) answer an error (any status: a 500
InternalError, a 429 TooManyRequests with a ``Retry-After`` header, ...), close the connection
before or after applying the request, reset it (TCP RST, what a client sees as "connection
reset by peer"), answer only after a delay (before or after the request is applied), wait for
the test to release it (``hold``), or (``touch``) have "somebody else" modify the object first
so that the request meets a genuine 409. The HTTP front end (server.py) acts on them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from .routing import Routing


@dataclass
class Fault:
    """Make matching requests misbehave. ``path`` is a regular expression (full match).

    action: ``error`` answers ``status``/``reason`` without touching anything (with a
    ``Retry-After: retry_after`` header when set, as the API server sends with 429); ``touch``
    changes the object (an annotation) before the request is handled, so a request with the
    old resourceVersion meets a genuine 409; ``drop`` closes the connection without doing
    anything; ``drop_after`` applies the request, then closes the connection unanswered;
    ``reset`` resets the connection (RST) without doing anything; ``delay`` handles the
    request normally. ``delay`` seconds pass before the request is handled (the store time
    moves with it) and ``delay_after`` seconds between storing and answering, with any action.
    ``hold`` handles the request normally once the test sets ``release`` (a slow answer whose
    end the test chooses, at most ``hold_timeout`` seconds).
    ``body``, a regular expression, also has to be found in the request body (e.g. only the
    patches that change a selector); ``token``, when set, is the bearer token the request has
    to carry (one client among several: a kubeconfig user with that token). The first
    ``skip`` matching requests pass untouched; then ``times`` of them misbehave.
    """

    method: str
    path: str
    action: str = "error"
    status: int = 409
    reason: str = "Conflict"
    message: str = "injected fault"
    times: int = 1
    skip: int = 0
    delay: float = 0.0
    delay_after: float = 0.0
    retry_after: float | None = None
    body: str | None = None
    token: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    hold_timeout: float = 60.0
    seen: int = 0
    hits: int = 0


class _Drop(Exception):
    """Close the client connection without an answer (``reset``: with a TCP RST)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("drop")
        self.reset = reset


class FaultInjection(Routing):
    """The faults the tests added, matched against each request."""

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _fault(self, method: str, path: str, raw: str = "",
               authorization: str | None = None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.hits < fault.times and fault.method == method and re.fullmatch(
                        fault.path, path) and (fault.body is None or re.search(fault.body, raw)
                        ) and (fault.token is None or authorization == f"Bearer {fault.token}"):
                    fault.seen += 1
                    if fault.seen <= fault.skip:
                        continue
                    fault.hits += 1
                    return fault
        return None

    def _touch(self, path: str) -> None:
        route = self._route(path)
        if route is None or not route[3]:
            return
        res, ns, _, name, _ = route
        obj = self._objects.get((res.qualified, ns if res.namespaced else "", str(name)))
        if obj is not None:
            ann = obj["metadata"].setdefault("annotations", {})
            ann["double.test/touched"] = str(int(ann.get("double.test/touched", "0")) + 1)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self._after_write(res, ns, obj)
