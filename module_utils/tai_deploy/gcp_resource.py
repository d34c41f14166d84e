"""Converge a list of Google Cloud REST resources, in order, read before write.

One code path for every project-level object (services, VPC, subnets, routers, firewall rules,
service accounts, KMS key rings and keys, Firestore, load balancer pieces) and for IAM policies.
The plan renders each item as data under build/; apply sends exactly those bodies.

Item kinds (all keys are plain JSON; ``title`` names the object in sentences):

``rest``
    ``self`` (path of the object), ``create`` (``method``, ``path``, ``body``), optional
    ``compare`` (the fields we own, as the API returns them; default: the create body),
    optional ``update`` (``method``, ``path``, ``body`` — default ``compare`` — and
    ``fingerprint: true`` to send the live fingerprint; absent: the API has no in-place update and
    a difference is refused in one sentence), ``outputs`` (name -> field read back) and
    ``expect`` (``field``, ``value``, ``hint``: a read-back value that must match).
    GET -> 404: create; differs in owned fields: update; else unchanged.
``services``
    ``project`` and ``services``: one list call, then ``services:batchEnable`` (20 per call) for
    the missing ones, waiting for each operation.
``read`` / ``await``
    A GET whose ``outputs`` later items use; a list GET retried until it returns items.
``iam_policy``
    ``resource`` (path without verb), ``get`` (``POST`` or ``GET``) and ``bindings`` (role,
    members); ``style: storage`` for a Cloud Storage bucket (``GET``/``PUT`` ``<resource>/iam``
    with the Policy itself as the body). Read-modify-write with the etag: only missing members
    are added, nobody else's binding is dropped; 409/ABORTED (a concurrent edit) re-reads and
    retries; a member the API says does not exist yet (IAM is eventually consistent after a
    service account is created) is retried within ``iam_retry_seconds``. ``authoritative: true``
    makes the policy hold only ``bindings``: every other member is removed (and reported), for a
    resource whose policy must name its principals exactly (the backup buckets).
    ``denied_hint``: a 403 on the policy is one sentence ending with it (who must grant what).

Strings of the form ``$(item_id.output)`` in later items are replaced by values read back
from earlier ones (the load balancer's forwarding rule takes the address Google allocated).

Long-running operations are recognised by their shape: a ``compute#operation`` is polled on
its selfLink until ``DONE``; a ``google.longrunning.Operation`` (Service Usage, Firestore) on
``/v1/<name>`` until ``done``; the error of a failed operation is one sentence.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .gcp_rest import GcpApiError, RestClient
from .poll import Deadline, poll

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
_PLACEHOLDER = re.compile(r"\$\(([A-Za-z0-9_-]+)\.([A-Za-z0-9_.]+)\)")
_RESOURCE_URL = re.compile(r"^https://[a-z.]*googleapis\.com/(?:compute/v1/|v1/)?")


class ConvergeError(Exception):
    """A resource that cannot be converged; the message is one sentence."""


@dataclass
class ItemResult:
    id: str
    title: str
    action: str
    fields: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "action": self.action,
                "fields": self.fields, "outputs": self.outputs}


def normalise(value: Any) -> Any:
    """Values as compared: resource URLs reduced to their ``projects/...`` path, integers as
    strings (int64 fields travel as strings)."""
    if isinstance(value, str):
        return _RESOURCE_URL.sub("", value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """Field paths where ``live`` does not hold what ``desired`` says (desired keys only)."""
    if isinstance(desired, Mapping):
        live_map = live if isinstance(live, Mapping) else {}
        out: list[str] = []
        for key, want in desired.items():
            out += differences(want, live_map.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(desired, list):
        live_list = live if isinstance(live, list) else []
        if not desired and not live_list:
            return []
        if len(desired) != len(live_list):
            return [path]
        found: list[str] = []
        for i, (want, got) in enumerate(zip(desired, live_list, strict=True)):
            found += differences(want, got, f"{path}[{i}]")
        return [path] if found and not isinstance(desired[0], Mapping) else found
    if live is None and desired in (False, 0, "", None):
        return []  # proto3: a default value is not serialised
    return [] if normalise(desired) == normalise(live) else [path]


def substitute(value: Any, outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    """Replace ``$(item.output)`` strings with values read back from earlier items."""
    if isinstance(value, str):
        m = _PLACEHOLDER.fullmatch(value)
        if m and m.group(2) in outputs.get(m.group(1), {}):
            return outputs[m.group(1)][m.group(2)]

        def one(found: re.Match[str]) -> str:
            got = outputs.get(found.group(1), {}).get(found.group(2))
            return found.group(0) if got is None else str(got)

        return _PLACEHOLDER.sub(one, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    return value


def _get_field(obj: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``a.b[0].c`` (None where the path does not exist)."""
    cur: Any = obj
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        if part.startswith("["):
            index = int(part[1:-1])
            cur = cur[index] if isinstance(cur, list) and index < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, Mapping) else None
    return cur


@dataclass
class Converger:
    """Converges items through one :class:`RestClient` per service host."""

    clients: Callable[[str], RestClient]  # service host (compute.googleapis.com) -> client
    check_mode: bool = False
    poll_interval: float = 2.0
    operation_timeout: float = 900.0
    iam_attempts: int = 5
    iam_retry_seconds: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    results: list[ItemResult] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def converge(self, items: Sequence[Mapping[str, Any]]) -> list[ItemResult]:
        for raw in items:
            item = substitute(raw, self.outputs)
            kind = item.get("kind", "rest")
            if kind == "services":
                result = self._services(item)
            elif kind == "iam_policy":
                result = self._iam_policy(item)
            elif kind == "rest":
                result = self._rest(item)
            elif kind == "read":
                result = self._read(item)
            elif kind == "await":
                result = self._await(item)
            else:
                raise ConvergeError(f"Item {item.get('id')} has the unknown kind {kind!r}.")
            self.outputs[result.id] = result.outputs
            self.results.append(result)
        return self.results

    @property
    def changed(self) -> bool:
        return any(r.action != UNCHANGED for r in self.results)

    def _await(self, item: Mapping[str, Any]) -> ItemResult:
        """Wait (bounded) until a list call returns items: objects another system creates."""
        title = str(item["title"])
        client = self.clients(str(item["service"]))

        def absent(_: Mapping[str, Any]) -> Mapping[str, Any]:
            raise ConvergeError(f"{title} did not appear within {item.get('timeout', 300)} "
                                "s; check that the platform phase annotated the ingress "
                                "gateway Service and that its pods run in that zone.")

        poll(lambda: client.call("GET", item["self"], action=f"look for {title}"),
             lambda found: bool(found.get("items") or self.check_mode),
             timeout=float(item.get("timeout", 300)), interval=self.poll_interval or 1.0,
             on_timeout=absent, sleep=self.sleep)
        return ItemResult(str(item["id"]), title, UNCHANGED)

    # --- plain REST objects -------------------------------------------------------------
    def _read(self, item: Mapping[str, Any]) -> ItemResult:
        """Read-only: values later items need (the project number)."""
        title = str(item["title"])
        live = self.clients(str(item["service"])).call("GET", item["self"],
                                                       action=f"read {title}")
        return ItemResult(str(item["id"]), title, UNCHANGED,
                          outputs={n: _get_field(live, f)
                                   for n, f in (item.get("outputs") or {}).items()})

    def _rest(self, item: Mapping[str, Any]) -> ItemResult:
        ident, title, service = str(item["id"]), str(item["title"]), str(item["service"])
        client = self.clients(service)
        create = item["create"]
        desired = item.get("compare", create.get("body") or {})
        try:
            live: dict[str, Any] | None = client.call("GET", item["self"], action=f"read {title}")
        except GcpApiError as exc:
            if exc.status == 404:
                live = None
            elif exc.disabled_service and self.check_mode:
                live = None  # the services item of this plan would enable it first
            else:
                raise
        if live is None:
            result = ItemResult(ident, title, CREATED, before=None, after=desired)
            if not self.check_mode:
                answer = client.call(create.get("method", "POST"), create["path"],
                                     create.get("body"), action=f"create {title}")
                self._wait(client, answer, f"create {title}")
                live = client.call("GET", item["self"], action=f"read {title}")
        else:
            fields = differences(desired, live)
            fixed = [f for f in fields
                     if any(f == i or f.startswith((f"{i}.", f"{i}["))
                            for i in item.get("immutable") or [])]
            if fixed:
                raise ConvergeError(
                    f"{title} exists with {', '.join(fixed)} different from the plan "
                    f"(live {', '.join(str(_get_field(live, f)) for f in fixed)}), which cannot "
                    "change once created: change the plan back, or move the workloads off it "
                    "and delete it so that the next apply creates it as planned.")
            if not fields:
                result = ItemResult(ident, title, UNCHANGED, before=desired, after=desired)
            else:
                update = item.get("update")
                if not update:
                    raise ConvergeError(
                        f"{title} exists but differs from the plan in {', '.join(fields)}, "
                        "which the API cannot change in place: change the plan back, or delete "
                        "the object so that the next apply creates it as planned.")
                result = ItemResult(ident, title, UPDATED, fields,
                                    before={f: _get_field(live, f) for f in fields},
                                    after={f: _get_field(desired, f) for f in fields})
                if not self.check_mode:
                    body = copy.deepcopy(update.get("body", desired))
                    if update.get("fingerprint") and "fingerprint" in live:
                        body["fingerprint"] = live["fingerprint"]
                    answer = client.call(update.get("method", "PATCH"),
                                         update.get("path", item["self"]), body,
                                         action=f"update {title}")
                    self._wait(client, answer, f"update {title}")
                    live = client.call("GET", item["self"], action=f"read {title}")
        if live is not None:
            result.outputs = {name: _get_field(live, path)
                              for name, path in (item.get("outputs") or {}).items()}
            expect = item.get("expect")
            if expect:
                got = _get_field(live, str(expect["field"]))
                if expect.get("value") and got != expect["value"]:
                    raise ConvergeError(
                        f"{title} holds {expect['field']} {got}, not {expect['value']} "
                        f"({expect.get('hint', 'the expected value')}); Google allocated "
                        f"{got}: record it there, or remove the expected value.")
        return result

    # --- long-running operations --------------------------------------------------------
    def _wait(self, client: RestClient, answer: Mapping[str, Any], action: str) -> None:
        path = ""

        def done(op: Mapping[str, Any]) -> bool:
            nonlocal path
            if op.get("kind") == "compute#operation":
                if op.get("status") == "DONE":
                    errors = (op.get("error") or {}).get("errors") or []
                    if errors:
                        raise ConvergeError(f"Cannot {action}: the operation {op.get('name')} "
                                            f"failed: {errors[0].get('message', errors[0])}.")
                    return True
                path = urlsplit(str(op["selfLink"])).path
                path = path if path.startswith("/compute/") else "/compute" + path
            elif "name" in op and ("done" in op or "metadata" in op) and (
                    "operations/" in str(op["name"])):
                if op.get("done"):
                    if op.get("error"):
                        raise ConvergeError(f"Cannot {action}: the operation {op['name']} "
                                            f"failed: {op['error'].get('message')}.")
                    return True
                path = f"/v1/{op['name']}"
            else:
                return True  # answered synchronously
            return False

        def not_done(op: dict[str, Any]) -> dict[str, Any]:
            raise ConvergeError(f"Cannot {action}: the operation {op.get('name')} was not "
                                f"done after {self.operation_timeout:.0f} s; it goes on in "
                                "Google Cloud: rerun the play to pick it up.")

        poll(lambda: client.call("GET", path, action=f"wait for the operation to {action}"),
             done, first=dict(answer), timeout=self.operation_timeout,
             interval=self.poll_interval, on_timeout=not_done, sleep=self.sleep)

    # --- Service Usage ------------------------------------------------------------------
    def _services(self, item: Mapping[str, Any]) -> ItemResult:
        project = str(item["project"])
        client = self.clients("serviceusage.googleapis.com")
        wanted = [str(s) for s in item["services"]]
        enabled: set[str] = set()
        token = ""
        while True:  # one page per pass, not a wait
            query = "?filter=state:ENABLED&pageSize=200" + (f"&pageToken={token}" if token
                                                           else "")
            page = client.call("GET", f"/v1/projects/{project}/services{query}",
                               action=f"list the enabled services of project {project}")
            enabled |= {str(s.get("name", "")).rsplit("/", 1)[-1]
                        for s in page.get("services") or []}
            token = str(page.get("nextPageToken") or "")
            if not token:
                break
        missing = [s for s in wanted if s not in enabled]
        title = str(item.get("title", f"services of project {project}"))
        result = ItemResult(str(item["id"]), title, CREATED if missing else UNCHANGED, missing,
                            before=sorted(enabled & set(wanted)), after=sorted(wanted))
        if missing and not self.check_mode:
            for start in range(0, len(missing), 20):
                batch = missing[start:start + 20]
                answer = client.call("POST", f"/v1/projects/{project}/services:batchEnable",
                                     {"serviceIds": batch},
                                     action=f"enable {', '.join(batch)} in project {project}")
                self._wait(client, answer, f"enable {', '.join(batch)}")
        result.outputs = {"enabled": sorted(enabled | set(wanted))}
        return result

    # --- IAM policies -------------------------------------------------------------------
    def _iam_policy(self, item: Mapping[str, Any]) -> ItemResult:
        title, resource = str(item["title"]), str(item["resource"])
        client = self.clients(str(item["service"]))
        wanted = [(str(b["role"]), [str(m) for m in b["members"]]) for b in item["bindings"]]
        conflicts = unseen = 0
        deadline = Deadline(self.iam_retry_seconds)
        delay = 1.0
        # Not poll(): two retries with budgets of their own, a stale etag (read and merge again
        # at once, iam_attempts) and a member IAM does not see yet (back-off, at most 10 times
        # within iam_retry_seconds).
        while True:
            try:
                policy = _policy_call(client, item, resource, title)
            except GcpApiError as exc:
                _denied(item, exc)
                if not (self.check_mode and (exc.disabled_service or exc.status == 404)):
                    raise
                policy = {}  # the services item (or an earlier item) of this plan creates it
            merged, added = _merge(policy, wanted)
            if item.get("authoritative"):
                merged, removed = _exclusive(merged, wanted)
                added += removed
            result = ItemResult(str(item["id"]), title, UPDATED if added else UNCHANGED, added,
                                before=policy.get("bindings", []), after=merged.get("bindings"))
            if not added or self.check_mode:
                return result
            try:
                if item.get("style") == "storage":
                    # Cloud Storage: buckets.setIamPolicy is PUT b/{bucket}/iam with the Policy
                    client.call("PUT", f"{resource}/iam", merged,
                                action=f"set {', '.join(added)} in the IAM policy of {title}")
                else:
                    client.call("POST", f"{resource}:setIamPolicy", {"policy": merged},
                                action=f"add {', '.join(added)} to the IAM policy of {title}")
                return result
            except GcpApiError as exc:
                _denied(item, exc)
                # 409 ABORTED (IAM's stale etag); 412 Precondition Failed (Cloud Storage's)
                if exc.status in (409, 412) or exc.api_status == "ABORTED":
                    conflicts += 1
                    if conflicts >= self.iam_attempts:
                        raise ConvergeError(
                            f"Cannot edit the IAM policy of {title}: it changed under us "
                            f"{conflicts} times in a row; rerun the play.") from exc
                    continue  # someone else wrote: read again, merge again
                unseen += 1
                if exc.status in (400, 404) and "does not exist" in exc.message and \
                        not deadline.expired() and unseen < 10:
                    # a service account created moments ago is not visible to IAM yet
                    self.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                raise


def _policy_call(client: RestClient, item: Mapping[str, Any], resource: str,
                 title: str) -> dict[str, Any]:
    if item.get("style") == "storage":  # Cloud Storage JSON API: buckets.getIamPolicy
        return client.call("GET", f"{resource}/iam?optionsRequestedPolicyVersion=3",
                           action=f"read the IAM policy of {title}")
    if item.get("get", "POST") == "GET":  # Cloud KMS: GET with the version as a query
        return client.call("GET", f"{resource}:getIamPolicy?options.requestedPolicyVersion=3",
                           action=f"read the IAM policy of {title}")
    return client.call("POST", f"{resource}:getIamPolicy",
                       {"options": {"requestedPolicyVersion": 3}},
                       action=f"read the IAM policy of {title}")


def _denied(item: Mapping[str, Any], exc: GcpApiError) -> None:
    """A policy our credentials may not read or edit (403, not a disabled service): one
    sentence that says who must grant what, when the item says (``denied_hint``)."""
    if exc.status == 403 and not exc.disabled_service and item.get("denied_hint"):
        raise ConvergeError(f"Cannot edit the IAM policy of {item['title']}: permission denied "
                            f"({exc.message}); {item['denied_hint']}.") from exc


def _exclusive(policy: Mapping[str, Any], wanted: Sequence[tuple[str, list[str]]],
               ) -> tuple[dict[str, Any], list[str]]:
    """``authoritative`` items: the policy holds only the wanted members; every other member
    (someone's grant, or the defaults the service adds to a new resource) is removed."""
    keep = {role: set(members) for role, members in wanted}
    out = copy.deepcopy(dict(policy))
    removed: list[str] = []
    bindings = []
    for b in out.get("bindings") or []:
        role = str(b.get("role"))
        allowed = keep.get(role, set()) if not b.get("condition") else set()
        for member in b.get("members") or []:
            if member not in allowed:
                removed.append(f"no {role} for {member}")
        members = [m for m in b.get("members") or [] if m in allowed]
        if members:
            bindings.append({**b, "members": members})
    out["bindings"] = bindings
    return out, removed


def _merge(policy: Mapping[str, Any], wanted: Sequence[tuple[str, list[str]]],
           ) -> tuple[dict[str, Any], list[str]]:
    """The policy with our members added to unconditional bindings of their role."""
    merged = copy.deepcopy(dict(policy))
    bindings: list[dict[str, Any]] = merged.setdefault("bindings", [])
    added: list[str] = []
    for role, members in wanted:
        target = next((b for b in bindings if b.get("role") == role and not b.get("condition")),
                      None)
        if target is None:
            target = {"role": role, "members": []}
            bindings.append(target)
        for member in members:
            if member not in target["members"]:
                target["members"].append(member)
                added.append(f"{role} for {member}")
    if any(b.get("condition") for b in bindings):
        merged["version"] = 3  # conditional bindings survive only in a version 3 write
    return merged, added
