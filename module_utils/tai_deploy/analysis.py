"""Analysis gates: judge a new version by its region's Prometheus, against the other regions.

A gate is a PromQL query with ``${placeholders}``, a threshold and a comparison. One analysis
run measures every gate for every service once per ``interval`` during ``duration`` seconds
and stops at the first gate whose failures exceed its ``failure_limit`` (Argo Rollouts'
failureLimit) or whose consecutive query errors exceed its ``consecutive_error_limit``
(Argo's consecutiveErrorLimit). A query that returns nothing, or only NaN (no traffic: 0/0),
is a failure unless the gate says ``no_data: pass``: a load test that silently did nothing
must not let a version through.

Baseline: a gate with ``baseline_factor`` is also measured in the regions still on the old
version (the same query, without the slot, against each region's own Prometheus). For a
gate that passes at or below its threshold the limit becomes
``max(threshold, median(baselines) * factor + margin)``, so a bad hour that hits every
region does not fail the canary while a regression against the old version does.

Placeholders: ``${namespace}``, ``${service}``, ``${slot}``, ``${region}``, ``${window}``,
``${error_codes}`` (regular expression of the gRPC codes that count as errors) and
``${selector}`` (``namespace="…", service="…", slot="…", region="…"``; without ``slot`` for a
baseline region).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
}
# The opposite of each comparison, for the message of a failing value.
_BREACH = {"<=": "above", "<": "at or above", ">=": "below", ">": "at or below"}
PLACEHOLDERS = frozenset(
    {"namespace", "service", "slot", "region", "window", "error_codes", "selector"})
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_GATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_WINDOW = re.compile(r"^[0-9]+(ms|s|m|h)$")


class AnalysisError(ValueError):
    """The gates' settings are wrong: one sentence per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = list(problems)


class QueryError(RuntimeError):
    """A query could not be answered (Prometheus unreachable, refused, or a bad query)."""


# ------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class Source:
    """One region's Prometheus as the controller reaches it."""

    region: str
    url: str
    bearer_token_file: str | None = None
    ca_file: str | None = None
    timeout: float = 5.0

    def problems(self) -> list[str]:
        out: list[str] = []
        if not re.match(r"^https?://[^/\s]+", self.url):
            out.append(f"the Prometheus URL of {self.region} must start with http:// or "
                       f"https://, got {self.url!r}.")
        if self.timeout <= 0:
            out.append(f"the Prometheus request timeout of {self.region} must be positive.")
        return out


@dataclass(frozen=True)
class Gate:
    """One metric check (see the module docstring)."""

    name: str
    query: str
    threshold: float
    comparison: str = "<="
    failure_limit: int = 0
    consecutive_error_limit: int = 2
    no_data: str = "fail"
    baseline_factor: float | None = None
    baseline_margin: float = 0.0

    def problems(self) -> list[str]:
        where = f"analysis gate {self.name!r}"
        out: list[str] = []
        if not _GATE_NAME.match(self.name):
            out.append(f"{where}: the name must be lower case letters, digits, - and _.")
        if not self.query.strip():
            out.append(f"{where}: the query is empty.")
        unknown = sorted(set(_PLACEHOLDER.findall(self.query)) - PLACEHOLDERS)
        if unknown:
            out.append(f"{where}: the query uses unknown placeholder(s) "
                       f"{', '.join('${' + u + '}' for u in unknown)} (known: "
                       f"{', '.join(sorted(PLACEHOLDERS))}).")
        if self.comparison not in COMPARISONS:
            out.append(f"{where}: comparison must be one of {', '.join(COMPARISONS)}, got "
                       f"{self.comparison!r}.")
        if not math.isfinite(self.threshold):
            out.append(f"{where}: the threshold must be a finite number.")
        if self.failure_limit < 0 or self.consecutive_error_limit < 0:
            out.append(f"{where}: failure_limit and consecutive_error_limit must be 0 or more.")
        if self.no_data not in ("fail", "pass"):
            out.append(f"{where}: no_data must be fail or pass, got {self.no_data!r}.")
        if self.baseline_factor is not None:
            if self.comparison not in ("<=", "<"):
                out.append(f"{where}: a baseline needs a gate that passes below its threshold "
                           "(comparison <= or <).")
            if self.baseline_factor <= 0 or self.baseline_margin < 0:
                out.append(f"{where}: baseline_factor must be positive and baseline_margin "
                           "0 or more.")
            if "${slot}" in self.query:
                out.append(f"{where}: a query compared with a baseline cannot use ${{slot}} "
                           "(the old-version regions are measured without it); use "
                           "${selector}.")
        return out


@dataclass(frozen=True)
class Target:
    """What is judged: one service's new slot in the analysed region."""

    service: str
    slot: str


@dataclass(frozen=True)
class Settings:
    namespace: str
    window: str
    error_codes: tuple[str, ...]
    interval: float
    duration: float
    initial_delay: float = 0.0

    def problems(self) -> list[str]:
        out: list[str] = []
        if not _WINDOW.match(self.window):
            out.append(f"the analysis window must be a Prometheus duration such as 1m or 30s, "
                       f"got {self.window!r}.")
        if self.interval <= 0:
            out.append("the analysis interval must be positive.")
        if self.duration < 0 or self.initial_delay < 0:
            out.append("the analysis duration and initial delay must be 0 or more.")
        if not self.error_codes:
            out.append("the list of gRPC codes that count as errors is empty.")
        return out


def render_query(template: str, values: Mapping[str, str]) -> str:
    """Replace ``${name}`` placeholders; names must be among ``values``."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def placeholder_values(settings: Settings, region: str, service: str,
                       slot: str | None) -> dict[str, str]:
    pairs = [("namespace", settings.namespace), ("service", service)]
    if slot is not None:
        pairs.append(("slot", slot))
    pairs.append(("region", region))
    return {
        "namespace": settings.namespace, "service": service, "slot": slot or "",
        "region": region, "window": settings.window,
        "error_codes": "|".join(re.escape(c) for c in settings.error_codes),
        "selector": ", ".join(f'{k}="{_label_value(v)}"' for k, v in pairs),
    }


# ------------------------------------------------------------------------------------------
# Prometheus HTTP API


Series = dict[tuple[tuple[str, str], ...], float]


class Prometheus:
    """``GET /api/v1/query`` against one region's Prometheus (requests)."""

    def __init__(self, source: Source, session: requests.Session | None = None) -> None:
        self.source = source
        self.session = session or requests.Session()
        self._headers: dict[str, str] = {}
        if source.bearer_token_file:
            try:
                token = Path(source.bearer_token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise AnalysisError([f"cannot read the Prometheus bearer token file of "
                                     f"{source.region} ({source.bearer_token_file}): "
                                     f"{exc.strerror}."]) from None
            self._headers["Authorization"] = f"Bearer {token}"

    def query(self, promql: str) -> Series:
        """The instant vector (or scalar) of ``promql`` now, keyed by its label set."""
        url = self.source.url.rstrip("/") + "/api/v1/query"
        try:
            resp = self.session.get(url, params={"query": promql}, headers=self._headers,
                                    timeout=self.source.timeout,
                                    verify=self.source.ca_file or True)
        except requests.RequestException as exc:
            raise QueryError(f"Prometheus of {self.source.region} at {self.source.url} is "
                             f"unreachable: {type(exc).__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or body.get("status") != "success":
            why = body.get("error") or f"HTTP {resp.status_code}"
            raise QueryError(f"Prometheus of {self.source.region} refused the query: {why}")
        data = body.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return {(): float(result[1])}
        if kind != "vector":
            raise QueryError(f"the query returns a {kind}, not an instant vector or a scalar")
        out: Series = {}
        for item in result:
            labels = tuple(sorted((k, v) for k, v in item["metric"].items() if k != "__name__"))
            out[labels] = float(item["value"][1])
        return out


# ------------------------------------------------------------------------------------------
# evaluation


@dataclass
class Measurement:
    """One gate, one service, one tick."""

    gate: str
    service: str
    outcome: str  # pass | fail | error
    message: str
    values: dict[str, float] = field(default_factory=dict)
    limit: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "service": self.service, "outcome": self.outcome,
                "message": self.message, "values": self.values, "limit": self.limit}


def _series_name(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "value"


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class Analysis:
    """Measures gates for targets in one region, with baselines from other regions."""

    def __init__(self, gates: Sequence[Gate], targets: Sequence[Target], settings: Settings,
                 canary: Prometheus, baselines: Sequence[Prometheus] = ()) -> None:
        problems = settings.problems() + [p for g in gates for p in g.problems()]
        names = [g.name for g in gates]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"analysis gate {dup!r} is defined more than once.")
        if not targets:
            problems.append("no service to analyse.")
        if problems:
            raise AnalysisError(problems)
        self.gates, self.targets, self.settings = list(gates), list(targets), settings
        self.canary, self.baselines = canary, list(baselines)

    @property
    def region(self) -> str:
        return self.canary.source.region

    def _baseline(self, gate: Gate, service: str) -> tuple[Series, list[str], list[str]]:
        """Per series, the median over the baseline regions; regions used; query errors."""
        per_key: dict[tuple[tuple[str, str], ...], list[float]] = {}
        used: list[str] = []
        errors: list[str] = []
        for prom in self.baselines:
            values = placeholder_values(self.settings, prom.source.region, service, None)
            try:
                found = prom.query(render_query(gate.query, values))
            except QueryError as exc:
                errors.append(str(exc))
                continue
            finite = {k: v for k, v in found.items() if math.isfinite(v)}
            if finite:
                used.append(prom.source.region)
            for key, value in finite.items():
                per_key.setdefault(key, []).append(value)
        return {k: statistics.median(v) for k, v in per_key.items()}, used, errors

    def measure(self, gate: Gate, target: Target) -> Measurement:
        values = placeholder_values(self.settings, self.region, target.service, target.slot)
        promql = render_query(gate.query, values)
        where = (f"analysis gate {gate.name} for {target.service} (slot {target.slot}) in "
                 f"{self.region}")
        try:
            found = self.canary.query(promql)
        except QueryError as exc:
            return Measurement(gate.name, target.service, "error",
                               f"{where}: {exc}; query: {promql}")
        finite = {k: v for k, v in found.items() if math.isfinite(v)}
        if not finite:
            outcome = "pass" if gate.no_data == "pass" else "fail"
            return Measurement(gate.name, target.service, outcome,
                               f"{where}: no data (no series, or no traffic in the last "
                               f"{self.settings.window}), which counts as a "
                               f"{'pass' if outcome == 'pass' else 'failure'}; query: {promql}")
        baseline: Series = {}
        used: list[str] = []
        if gate.baseline_factor is not None and self.baselines:
            baseline, used, _ = self._baseline(gate, target.service)
        check = COMPARISONS[gate.comparison]
        worst: Measurement | None = None
        limit_seen: float = gate.threshold
        for key, value in sorted(finite.items()):
            limit = gate.threshold
            basis = ""
            if key in baseline and gate.baseline_factor is not None:
                relative = baseline[key] * gate.baseline_factor + gate.baseline_margin
                limit = max(gate.threshold, relative)
                basis = (f", baseline {_fmt(baseline[key])} (median of {', '.join(used)})"
                         f" x {gate.baseline_factor:g} + {gate.baseline_margin:g}"
                         f" = {_fmt(relative)}")
            limit_seen = limit
            if not check(value, limit):
                worst = Measurement(
                    gate.name, target.service, "fail",
                    f"{where}: {_series_name(key)} is {_fmt(value)}, "
                    f"{_BREACH[gate.comparison]} the limit {_fmt(limit)} "
                    f"(threshold {_fmt(gate.threshold)}{basis}); query: {promql}",
                    {_series_name(k): v for k, v in finite.items()}, limit)
                break
        if worst is not None:
            return worst
        return Measurement(gate.name, target.service, "pass", f"{where}: within the limit",
                           {_series_name(k): v for k, v in finite.items()}, limit_seen)


@dataclass
class Verdict:
    passed: bool
    message: str
    ticks: int
    elapsed: float
    last: list[Measurement]
    failures: dict[str, int]
    # Wall-clock time (epoch seconds) of the verdict, for latency measurements.
    decided_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "msg": self.message, "ticks": self.ticks,
                "elapsed": round(self.elapsed, 3), "failures": self.failures,
                "decided_at": round(self.decided_at, 3),
                "measurements": [m.as_dict() for m in self.last]}


def run(analysis: Analysis, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[], None] | None = None) -> Verdict:
    """Measure every interval until the duration is over or a gate fails (at once).

    ``on_tick`` runs before the initial delay and before every measurement, so nothing is
    judged for a region whose lock was lost; what it raises ends the analysis (the rolling
    upgrade renews the region's lease there and stops when an operator rolled the release
    back: bluegreen_soak.SoakWatch).
    """
    settings = analysis.settings
    start = clock()
    if settings.initial_delay:
        if on_tick is not None:
            on_tick()
        sleep(settings.initial_delay)
    failures: dict[str, int] = {}
    errors: dict[str, int] = {}
    measured: set[str] = set()
    ticks = 0
    last: list[Measurement] = []
    # Not a poll: the analysis lasts its duration at a fixed rate (the interval counts from each
    # measurement's start) and passes when that is over; a gate over its limit ends it.
    while True:
        if on_tick is not None:
            on_tick()
        tick_started = clock()
        ticks += 1
        last = []
        for gate in analysis.gates:
            for target in analysis.targets:
                m = analysis.measure(gate, target)
                last.append(m)
                key = f"{gate.name}/{target.service}"
                if m.outcome == "error":
                    errors[key] = errors.get(key, 0) + 1
                    if errors[key] > gate.consecutive_error_limit:
                        return Verdict(False, f"{m.message} ({errors[key]} consecutive "
                                       f"error(s), limit {gate.consecutive_error_limit})",
                                       ticks, clock() - start, last, failures)
                    continue
                errors[key] = 0
                measured.add(key)
                if m.outcome == "fail":
                    failures[key] = failures.get(key, 0) + 1
                    if failures[key] > gate.failure_limit:
                        return Verdict(False, f"{m.message} ({failures[key]} failure(s), "
                                       f"limit {gate.failure_limit})",
                                       ticks, clock() - start, last, failures)
        elapsed = clock() - start
        if elapsed >= settings.duration:
            break
        sleep(max(0.0, min(settings.interval - (clock() - tick_started),
                           settings.duration - elapsed)))
    # A gate whose every query failed proved nothing: that is not a pass.
    for m in last:
        if f"{m.gate}/{m.service}" not in measured:
            return Verdict(False, f"{m.message} (no query of this gate succeeded in "
                           f"{ticks} measurement(s))", ticks, clock() - start, last, failures)
    total = len(analysis.gates) * len(analysis.targets)
    return Verdict(True, f"{total} gate check(s) passed in {analysis.region} over {ticks} "
                   f"measurement(s) in {clock() - start:.1f} s", ticks, clock() - start, last,
                   failures)


# ------------------------------------------------------------------------------------------
# building from plain data (the module's parameters)


def gates_from(items: Sequence[Mapping[str, Any]]) -> list[Gate]:
    problems: list[str] = []
    gates: list[Gate] = []
    known = set(Gate.__dataclass_fields__)
    for i, item in enumerate(items):
        extra = sorted(set(item) - known)
        missing = sorted({"name", "query", "threshold"} - set(item))
        label = item.get("name", f"#{i}")
        if extra:
            problems.append(f"analysis gate {label!r} has unknown key(s) {', '.join(extra)} "
                            f"(known: {', '.join(sorted(known))}).")
        if missing:
            problems.append(f"analysis gate {label!r} lacks {', '.join(missing)}.")
        if extra or missing:
            continue
        try:
            gates.append(Gate(
                name=str(item["name"]), query=str(item["query"]),
                threshold=float(item["threshold"]),
                comparison=str(item.get("comparison", "<=")),
                failure_limit=int(item.get("failure_limit", 0)),
                consecutive_error_limit=int(item.get("consecutive_error_limit", 2)),
                no_data=str(item.get("no_data", "fail")),
                baseline_factor=(None if item.get("baseline_factor") is None
                                 else float(item["baseline_factor"])),
                baseline_margin=float(item.get("baseline_margin", 0.0))))
        except (TypeError, ValueError) as exc:
            problems.append(f"analysis gate {label!r}: {exc}.")
    if problems:
        raise AnalysisError(problems)
    return gates
