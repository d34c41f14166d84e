"""Find the series a PromQL expression reads: metric names and their label matchers.

Not a full PromQL parser: a tokenizer plus the grammar's few constructs that can hold an
identifier which is not a metric (function names, ``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right`` label lists, keywords, range and subquery brackets). Good enough
to check dashboards and rules against the metrics contract, and strict: an identifier it cannot
place is reported as a metric, so a typo fails the contract test instead of slipping through.
Grafana's ``$variable``/``${variable}`` and ``label_values(selector, label)`` are understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FUNCTIONS = frozenset([
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad",
    "rate", "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label",
    "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year", "sum", "min", "max",
    "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "limitk", "limit_ratio"
])
AGGREGATIONS = frozenset([
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio"
])
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATOR_KEYWORDS = frozenset({"and", "or", "unless", "bool", "atan2", "offset", "inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<var>\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],@])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    """The expression cannot be read."""


@dataclass(frozen=True)
class Selector:
    """One vector selector: ``metric{label op "value", ...}``."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def labels(self) -> set[str]:
        return {name for name, _, _ in self.matchers}


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
    return tokens


def _skip_group(tokens: list[tuple[str, str]], i: int, open_: str, close: str) -> int:
    """Index after the bracket group that starts at tokens[i] (which is ``open_``)."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == open_:
            depth += 1
        elif tokens[j][1] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromQLError(f"unbalanced {open_}{close}")


Matchers = tuple[tuple[str, str, str], ...]


def _matchers(tokens: list[tuple[str, str]], i: int) -> tuple[Matchers, int]:
    """Parse ``{a="x", b=~"y"}`` starting at tokens[i] == '{'; return matchers and next index."""
    out: list[tuple[str, str, str]] = []
    j = i + 1
    while tokens[j][1] != "}":
        if tokens[j][1] == ",":
            j += 1
            continue
        (kind_l, label), (_, op), (kind_v, value) = tokens[j], tokens[j + 1], tokens[j + 2]
        if kind_l not in {"ident", "string"} or op not in {"=", "!=", "=~", "!~"} \
                or kind_v != "string":
            raise PromQLError(f"bad label matcher near {label!r} {op!r} {value!r}")
        out.append((label.strip("\"'"), op, value[1:-1]))
        j += 3
    return tuple(out), j + 1


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL (or Grafana label_values) expression."""
    text = expr.strip()
    grafana = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", text, re.S)
    if grafana:
        text = grafana.group(1)
    tokens = tokenize(text)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if value == "[":
            i = _skip_group(tokens, i, "[", "]")
        elif kind == "ident" and value in LABEL_LIST_KEYWORDS:
            i = _skip_group(tokens, i + 1, "(", ")") if nxt == "(" else i + 1
        elif kind == "ident" and value in AGGREGATIONS and nxt in {"by", "without"}:
            i += 1
        elif kind == "ident" and nxt == "(":
            if value not in FUNCTIONS:
                raise PromQLError(f"unknown function {value}() in {expr!r}")
            i += 1
        elif kind == "ident" and value.lower() in OPERATOR_KEYWORDS:
            i += 1
        elif kind == "ident":
            matchers: Matchers = ()
            i += 1
            if nxt == "{":
                matchers, i = _matchers(tokens, i)
            found.append(Selector(value, matchers))
        elif value == "{":
            matchers, i = _matchers(tokens, i)
            names = [v for n, op, v in matchers if n == "__name__" and op == "="]
            found.append(Selector(names[0] if names else "", matchers))
        else:
            i += 1
    return found


def contract_violations(exprs: dict[str, str], metrics: dict[str, list[str]],
                        target_labels: set[str], recorded: set[str]) -> list[str]:
    """Why each expression reads something the metrics contract does not promise.

    `exprs` maps a place (panel title, rule name) to its query; `metrics` maps each contract
    metric to its own labels; `recorded` are series that recording rules of the same rule set
    produce (they carry only target labels). An empty list means every selector is covered.
    """
    problems: list[str] = []
    for where, expr in exprs.items():
        try:
            found = selectors(expr)
        except PromQLError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if not found:
            problems.append(f"{where}: reads no metric at all: {expr!r}")
        for sel in found:
            if sel.metric in metrics:
                known = set(metrics[sel.metric]) | target_labels
            elif sel.metric in recorded:
                known = set(target_labels)
            else:
                problems.append(f"{where}: metric {sel.metric or '<unnamed>'} is not in the "
                                "metrics contract")
                continue
            unknown = sorted(sel.labels - known)
            if unknown:
                problems.append(f"{where}: {sel.metric} has no label {', '.join(unknown)}")
    return problems
