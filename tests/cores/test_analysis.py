"""The analysis core (module_utils/tai_deploy/analysis.py) against a real Prometheus.

Prometheus (Debian's) scrapes one prometheus_client registry whose gauge ``tai_test_ratio``
the tests set per region, so each case knows the exact value a gate reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers.grpc_servers import free_port
from helpers.platform_plan import contract
from helpers.platform_promql import contract_violations
from helpers.prometheus_server import PrometheusServer
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from tai_deploy import analysis
from tai_deploy.analysis import Analysis, AnalysisError, Gate, Prometheus, Settings, Source, Target

REGIONS = ("asia-southeast1", "europe-west1", "us-central1")
SHIPPED = Path(__file__).resolve().parents[2] / "group_vars" / "all" / "analysis.yml"
QUERY = "max(tai_test_ratio{${selector}})"
SETTINGS = Settings(namespace="tai-system", window="5s", error_codes=("Internal", "Unavailable"),
                    interval=0.2, duration=0.0)


class Lab:
    def __init__(self, prom: PrometheusServer, gauge: Gauge) -> None:
        self.prom, self.gauge = prom, gauge
        self.unscraped: list[tuple[str, str, float]] = []

    def set(self, region: str, value: float, slot: str = "green") -> None:
        self.gauge.labels("tai-system", "governor", slot, region).set(value)
        self.unscraped.append((region, slot, value))

    def settle(self) -> None:
        """Wait until Prometheus has scraped the values just set (polled, not a fixed sleep)."""
        for region, slot, value in self.unscraped:
            self.prom.wait_for(f'tai_test_ratio{{namespace="tai-system", service="governor", '
                               f'slot="{slot}", region="{region}"}} == {value}')
        self.unscraped.clear()

    def source(self, region: str) -> Prometheus:
        return Prometheus(Source(region=region, url=self.prom.url, timeout=2))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    registry = CollectorRegistry()
    gauge = Gauge("tai_test_ratio", "A value the tests set.",
                  ["namespace", "service", "slot", "region"], registry=registry)
    http, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    target = f"127.0.0.1:{http.server_address[1]}"
    with PrometheusServer(tmp_path_factory.mktemp("prom"), [(target, {"job": "test"})],
                          honor_labels_targets=[]) as prom:
        prom.wait_for('up{job="test"} == 1')  # the first scrape comes a few seconds after start
        yield Lab(prom, gauge)
    http.shutdown()


def gate(**kw: object) -> Gate:
    base: dict[str, object] = {"name": "ratio", "query": QUERY, "threshold": 0.05}
    base.update(kw)
    return Gate(**base)  # type: ignore[arg-type]


def test_settings_problems_are_one_sentence_each() -> None:
    with pytest.raises(AnalysisError) as err:
        analysis.gates_from([
            {"name": "a", "query": "x{${slt}}", "threshold": 1},
            {"name": "b", "query": "y", "threshold": 1, "failurelimit": 2},
            {"name": "c", "threshold": 1},
        ])
    assert err.value.problems == [
        "analysis gate 'b' has unknown key(s) failurelimit (known: baseline_factor, "
        "baseline_margin, comparison, consecutive_error_limit, failure_limit, name, no_data, "
        "query, threshold).",
        "analysis gate 'c' lacks query.",
    ]
    bad = [gate(query="x{${slt}}"), gate(name="two", comparison="=="),
           gate(name="three", baseline_factor=2.0, query="x{slot=\"${slot}\"}")]
    with pytest.raises(AnalysisError) as err:
        Analysis(bad, [Target("governor", "green")],
                 Settings("tai-system", "5 minutes", (), 0, 0), None, [])  # type: ignore[arg-type]
    assert err.value.problems == [
        "the analysis window must be a Prometheus duration such as 1m or 30s, got '5 minutes'.",
        "the analysis interval must be positive.",
        "the list of gRPC codes that count as errors is empty.",
        "analysis gate 'ratio': the query uses unknown placeholder(s) ${slt} (known: "
        "error_codes, namespace, region, selector, service, slot, window).",
        "analysis gate 'two': comparison must be one of <=, <, >=, >, got '=='.",
        "analysis gate 'three': a query compared with a baseline cannot use ${slot} (the "
        "old-version regions are measured without it); use ${selector}.",
    ]


def test_placeholders_render_selectors_with_and_without_the_slot() -> None:
    values = analysis.placeholder_values(SETTINGS, "europe-west1", "governor", "green")
    assert values["selector"] == ('namespace="tai-system", service="governor", slot="green", '
                                  'region="europe-west1"')
    assert values["error_codes"] == "Internal|Unavailable"
    baseline = analysis.placeholder_values(SETTINGS, "us-central1", "governor", None)
    assert baseline["selector"] == ('namespace="tai-system", service="governor", '
                                    'region="us-central1"')
    # PromQL's own $1 (label_replace) is left alone.
    text = analysis.render_query('label_replace(up{${selector}}, "s", "$1", "x", "(.+)")',
                                 values)
    assert text.endswith('region="europe-west1"}, "s", "$1", "x", "(.+)")')


def test_value_limit_and_query_are_in_the_failure(lab: Lab) -> None:
    lab.set("asia-southeast1", 0.2)
    lab.settle()
    check = Analysis([gate()], [Target("governor", "green")], SETTINGS,
                     lab.source("asia-southeast1"))
    verdict = analysis.run(check)
    assert not verdict.passed and verdict.ticks == 1
    assert verdict.message == (
        "analysis gate ratio for governor (slot green) in asia-southeast1: value is 0.2, above "
        "the limit 0.05 (threshold 0.05); query: max(tai_test_ratio{namespace=\"tai-system\", "
        "service=\"governor\", slot=\"green\", region=\"asia-southeast1\"}) (1 failure(s), "
        "limit 0)")


def test_baseline_is_the_median_of_the_old_regions(lab: Lab) -> None:
    lab.set("asia-southeast1", 0.2)
    lab.set("europe-west1", 0.18, slot="blue")
    lab.set("us-central1", 0.02, slot="blue")
    lab.settle()
    relative = gate(baseline_factor=2.0, baseline_margin=0.01)
    check = Analysis([relative], [Target("governor", "green")], SETTINGS,
                     lab.source("asia-southeast1"),
                     [lab.source("europe-west1"), lab.source("us-central1")])
    # median(0.18, 0.02) = 0.1; 0.1 * 2 + 0.01 = 0.21 > 0.2: a bad hour everywhere passes.
    assert analysis.run(check).passed
    lab.set("europe-west1", 0.04, slot="blue")
    lab.settle()
    # median(0.04, 0.02) = 0.03 -> 0.07: the canary regressed against the old version.
    verdict = analysis.run(check)
    assert not verdict.passed
    assert ("is 0.2, above the limit 0.07 (threshold 0.05, baseline 0.03 (median of "
            "europe-west1, us-central1) x 2 + 0.01 = 0.07)") in verdict.message


def test_no_data_fails_unless_the_gate_says_pass(lab: Lab) -> None:
    targets = [Target("scheduler", "green")]
    verdict = analysis.run(Analysis([gate()], targets, SETTINGS, lab.source("europe-west1")))
    assert not verdict.passed
    assert "no data (no series, or no traffic in the last 5s), which counts as a failure" \
        in verdict.message
    lenient = gate(no_data="pass")
    assert analysis.run(Analysis([lenient], targets, SETTINGS,
                                 lab.source("europe-west1"))).passed


def test_failure_limit_tolerates_that_many_failures(lab: Lab) -> None:
    lab.set("asia-southeast1", 0.2)
    lab.settle()
    settings = Settings("tai-system", "5s", ("Internal",), interval=0.1, duration=0.25)
    check = Analysis([gate(failure_limit=2)], [Target("governor", "green")], settings,
                     lab.source("asia-southeast1"))
    verdict = analysis.run(check)
    assert not verdict.passed
    assert verdict.ticks == 3 and verdict.failures == {"ratio/governor": 3}
    assert verdict.message.endswith("(3 failure(s), limit 2)")


def test_query_errors_count_against_the_consecutive_error_limit(lab: Lab) -> None:
    settings = Settings("tai-system", "5s", ("Internal",), interval=0.05, duration=5)
    refused = Analysis([gate(query="sum(rate(up[5m])", consecutive_error_limit=1)],
                       [Target("governor", "green")], settings, lab.source("asia-southeast1"))
    verdict = analysis.run(refused)
    assert not verdict.passed and verdict.ticks == 2
    assert "Prometheus of asia-southeast1 refused the query: " in verdict.message
    assert verdict.message.endswith("(2 consecutive error(s), limit 1)")
    dead = Prometheus(Source("europe-west1", f"http://127.0.0.1:{free_port()}", timeout=1))
    verdict = analysis.run(Analysis([gate(consecutive_error_limit=0)],
                                    [Target("governor", "green")], settings, dead))
    assert "Prometheus of europe-west1 at http://127.0.0.1:" in verdict.message
    assert "is unreachable: ConnectionError" in verdict.message


def test_a_window_of_query_errors_only_is_not_a_pass(lab: Lab) -> None:
    settings = Settings("tai-system", "5s", ("Internal",), interval=0.05, duration=0.0)
    dead = Prometheus(Source("europe-west1", f"http://127.0.0.1:{free_port()}", timeout=1))
    verdict = analysis.run(Analysis([gate()], [Target("governor", "green")], settings, dead))
    assert not verdict.passed and verdict.ticks == 1
    assert verdict.message.endswith("(no query of this gate succeeded in 1 measurement(s))")


def test_an_unreadable_token_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError) as err:
        Prometheus(Source("us-central1", "https://prometheus.internal",
                          bearer_token_file=str(tmp_path / "missing")))
    assert str(err.value) == (f"cannot read the Prometheus bearer token file of us-central1 "
                              f"({tmp_path / 'missing'}): No such file or directory.")


def test_shipped_gates_read_only_the_metrics_contract() -> None:
    gates = analysis.gates_from(yaml.safe_load(SHIPPED.read_text())["tai_analysis_gates"])
    assert [g.name for g in gates] == ["error-ratio", "latency-p99", "restarts"]
    data = contract()
    settings = Settings("tai-system", "1m", tuple(data["grpc_error_codes"]), 10, 0)
    exprs = {}
    for g in gates:
        exprs[g.name] = analysis.render_query(g.query, analysis.placeholder_values(
            settings, "europe-west1", "governor", "green"))
        if g.baseline_factor is not None:
            exprs[g.name + " (baseline)"] = analysis.render_query(
                g.query, analysis.placeholder_values(settings, "us-central1", "governor", None))
    metrics = {name: m["labels"] for name, m in data["metrics"].items()}
    assert contract_violations(exprs, metrics, set(data["target_labels"]), set()) == []
    assert 'grpc_code=~"Unknown|DeadlineExceeded|ResourceExhausted|Unimplemented|Internal|' \
        'Unavailable|DataLoss"' in exprs["error-ratio"]
