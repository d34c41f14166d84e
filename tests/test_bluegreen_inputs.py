"""The blue-green role's Python side: input rules, data filters, the soak's watch, one service list.

Fast (no playbook): the filters of plugins/filter/tai_bluegreen.py are imported directly; the
watch that the analysis gate runs while it waits (bluegreen_soak.SoakWatch) is driven against
the Kubernetes API TEST DOUBLE.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from helpers.bluegreen_env import NAMESPACE, SERVICES, chart_objects
from helpers.k8s_double import KubeApiDouble
from tai_deploy import analysis, services
from tai_deploy.bluegreen import BlueGreen, Settings, SwapError, Target
from tai_deploy.bluegreen_lease import LeaseLock
from tai_deploy.bluegreen_soak import SoakWatch
from tai_deploy.k8s_api import ClusterAccess, KubeClient

REPO = Path(__file__).resolve().parents[1]
KNOWN = ["governor", "coordinator", "scheduler"]
REGIONS = ["asia-southeast1", "europe-west1", "us-central1"]


def _filters() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tai_bluegreen", REPO / "plugins" / "filter" / "tai_bluegreen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


F = _filters()


def test_one_list_of_services_in_group_vars_python_and_the_chart() -> None:
    group_vars = yaml.safe_load((REPO / "group_vars/all/services.yml").read_text())
    chart = yaml.safe_load((REPO / "charts/tai-chart/values.yaml").read_text())
    assert group_vars["tai_service_names"] == list(services.SERVICES) == list(chart["services"])
    assert group_vars["tai_service_slots"] == list(services.SLOTS) == ["blue", "green"]


@pytest.mark.parametrize(("versions", "extra", "expected"), [
    (None, {}, ["tai_upgrade_versions is required: give the new version per service, e.g. "
                "-e '{\"tai_upgrade_versions\": {\"governor\": \"v1.1.0\"}}'"]),
    ([], {}, ['tai_upgrade_versions must map service names to versions, e.g. '
              '{"governor": "v1.1.0"}, got []']),
    ({"governer": "v1"}, {}, ["tai_upgrade_versions names an unknown service governer (known: "
                              "governor, coordinator, scheduler)"]),
    ({"governor": 1.1}, {"canary": "europe-wst1"},
     ["tai_upgrade_versions.governor must be an image tag such as v1.1.0 (quoted), "
      "optionally with its digest (v1.1.0@sha256:<64 hex digits>), got 1.1",
      'tai_upgrade_canary_region "europe-wst1" is not a region of the inventory '
      "(asia-southeast1, europe-west1, us-central1)"]),
    # The swap's own tag rule: at most 128 characters, no leading '.' or '-'.
    ({"governor": "-v1"}, {}, ["tai_upgrade_versions.governor must be an image tag such as "
                               "v1.1.0 (quoted), optionally with its digest "
                               '(v1.1.0@sha256:<64 hex digits>), got "-v1"']),
    ({"governor": "v" * 129}, {}, ["tai_upgrade_versions.governor must be an image tag such as "
                                   "v1.1.0 (quoted), optionally with its digest "
                                   f'(v1.1.0@sha256:<64 hex digits>), got "{"v" * 129}"']),
    # ... and its digest: sha256, 64 lowercase hex digits, after a tag.
    ({"governor": "v1.1.0@sha256:" + "AB" * 32}, {}, [
        "tai_upgrade_versions.governor must be an image tag such as v1.1.0 (quoted), "
        "optionally with its digest (v1.1.0@sha256:<64 hex digits>), got "
        f'"v1.1.0@sha256:{"AB" * 32}"']),
    ({"governor": "v1.1.0@sha256:" + "ab" * 32, "scheduler": "v1.1.0"}, {}, []),
    ({"governor": "v1.1.0"}, {"region_order": "us-central1"},
     ["tai_upgrade_region_order must list every selected region (asia-southeast1, "
      'europe-west1, us-central1) and only regions of the inventory, got "us-central1"']),
    ({"governor": "v1.1.0"}, {"region_order": ["us-central1", "europe-west1"]},
     ["tai_upgrade_region_order must list every selected region (asia-southeast1, "
      'europe-west1, us-central1) and only regions of the inventory, got '
      '["us-central1", "europe-west1"]']),
    ({"governor": "v1.1.0", "scheduler": "1.2_rc-3"}, {"canary": "us-central1"}, []),
])
def test_upgrade_inputs_one_sentence_each(versions: Any, extra: dict[str, Any],
                                          expected: list[str]) -> None:
    assert F.tai_upgrade_problems(versions, KNOWN, REGIONS, REGIONS, canary=extra.get("canary"),
                                  region_order=extra.get("region_order")) == expected


DIGEST = "sha256:" + "ab" * 32


def test_upgrade_versions_follow_the_plans_digest_rule() -> None:
    pinned, bare = f"v1.1.0@{DIGEST}", "v1.1.0"
    check = F.tai_upgrade_digest_problems
    # Production: every version pinned by digest, whatever the override says.
    assert check({"governor": pinned}, "europe-west1", "production", False) == []
    assert check({"governor": bare, "scheduler": pinned}, "europe-west1", "production",
                 False) == [
        'tai_upgrade_versions.governor ("v1.1.0") of region europe-west1 has no image digest; '
        "production images must be pinned as tag@sha256: give it as "
        "v1.1.0@sha256:<the registry's digest of v1.1.0>."]
    assert check({"governor": pinned}, "europe-west1", "production", "true") == [
        "tai_services_allow_undigested_images of region europe-west1 is true in environment "
        "production; it is meant for development environments only, and production images "
        "must be pinned by digest."]
    # The chart's placeholder digest pulls nothing in production.
    placeholder = "v1.1.0@sha256:" + "0" * 64
    assert check({"governor": placeholder}, "us-central1", "production", False) == [
        f'tai_upgrade_versions.governor ("{placeholder}") of region us-central1 carries the '
        "placeholder digest sha256:000…; give the registry's digest of v1.1.0."]
    # Elsewhere: a digest, or the plan's development override.
    assert check({"governor": bare}, "europe-west1", "staging", False) == [
        'tai_upgrade_versions.governor ("v1.1.0") of region europe-west1 has no image digest; '
        "pin it as tag@sha256 (give it as v1.1.0@sha256:<the registry's digest of v1.1.0>), "
        "or set tai_services_allow_undigested_images: true in this staging environment."]
    assert check({"governor": bare}, "europe-west1", "development", True) == []
    assert check({"governor": placeholder}, "europe-west1", "development", False) == []
    # What the input check refuses is said once, by it.
    assert check({"governor": 1.1, "coordinator": "-v1"}, "europe-west1", "production",
                 False) == []
    assert check(None, "europe-west1", "production", False) == []


def test_the_upgrade_reads_the_plans_environment_and_override() -> None:
    """The role's defaults read the tai_services role's variables: the plan and the upgrade
    judge an environment alike."""
    defaults = yaml.safe_load((REPO / "roles/bluegreen/defaults/main.yml").read_text())
    assert "tai_services_environment" in defaults["bluegreen_environment"]
    assert "tai_services_allow_undigested_images" in defaults["bluegreen_allow_undigested_images"]


def test_rollback_inputs_one_sentence_each() -> None:
    assert F.tai_rollback_problems(KNOWN, KNOWN, None, False) == [
        "choose the regions to roll back: -l <region> for one, or "
        "-e tai_rollback_all_regions=true for all of them"]
    assert F.tai_rollback_problems("governor", KNOWN, "europe-west1", False) == [
        'tai_rollback_services must be a list of services among governor, coordinator, '
        'scheduler, got "governor"']
    assert F.tai_rollback_problems(["governor"], KNOWN, None, True) == []


def test_upgrade_order_is_canary_then_tier_then_name() -> None:
    tiers = {"us-central1": "primary", "europe-west1": "secondary",
             "asia-southeast1": "tertiary"}
    assert F.tai_upgrade_order(REGIONS, tiers) == ["asia-southeast1", "europe-west1",
                                                   "us-central1"]
    assert F.tai_upgrade_order(REGIONS, tiers, "us-central1") == [
        "us-central1", "asia-southeast1", "europe-west1"]
    # A canary outside the selection (-l) is not added; an explicit order is kept as given.
    assert F.tai_upgrade_order(["europe-west1"], tiers, "us-central1") == ["europe-west1"]
    assert F.tai_upgrade_order(["europe-west1", "us-central1"], tiers, None,
                               ["us-central1", "asia-southeast1", "europe-west1"]) == [
        "us-central1", "europe-west1"]


def test_health_targets_merge_overrides_and_options() -> None:
    endpoints = F.tai_grpc_endpoints(KNOWN, "203.0.113.10:443",
                                     {"governor": {"active": {"address": "127.0.0.1:1"}}})
    options = F.tai_grpc_target_options(True, "api.tai.example.com", None, {"rpc_timeout": 0.5})
    assert options == {"connect_timeout": 2.0, "rpc_timeout": 0.5, "tls": True,
                       "tls_server_name": "api.tai.example.com"}
    assert F.tai_grpc_targets(["governor"], endpoints, "active", options) == [{
        "name": "governor", "address": "127.0.0.1:1", "service": "",
        "metadata": {"x-tai-service": "governor"}, **options}]
    assert F.tai_grpc_targets(["scheduler"], endpoints, "preview", {})[0] == {
        "name": "scheduler (preview)", "address": "203.0.113.10:443", "service": "",
        "metadata": {"x-tai-service": "scheduler", "x-tai-slot": "preview"}}


def test_soaking_services_and_their_new_slots() -> None:
    prepared = {"promotion_needed": ["governor"], "soak_pending": ["scheduler", "governor"],
                "active_slots": {"governor": "blue", "scheduler": "green"}}
    soaking = F.tai_bluegreen_soaking(prepared)
    assert soaking == ["scheduler", "governor"]
    assert F.tai_bluegreen_new_slots(soaking, prepared) == [
        {"name": "scheduler", "slot": "green"}, {"name": "governor", "slot": "green"}]
    assert F.tai_bluegreen_soaking(None) == []


# ---- the analysis gate's watch while it waits ------------------------------------------------

class _Flat(analysis.Prometheus):
    """A Prometheus whose every query answers 0 (the gates pass); no server."""

    def query(self, promql: str) -> analysis.Series:
        return {(): 0.0}


def test_the_analysis_calls_its_watch_before_every_measurement_and_stops_on_it() -> None:
    gate = analysis.Gate(name="ratio", query="x", threshold=0.05)
    settings = analysis.Settings("tai-system", "5s", ("Internal",), interval=1.0, duration=0.0)
    source = _Flat(analysis.Source(region="asia-southeast1", url="http://127.0.0.1:9"))
    calls: list[float] = []
    now = iter(range(100))
    check = analysis.Analysis([gate], [analysis.Target("governor", "green")],
                              analysis.Settings("tai-system", "5s", ("Internal",),
                                                interval=1.0, duration=3.0), source)
    verdict = analysis.run(check, clock=lambda: float(next(now)), sleep=lambda s: None,
                           on_tick=lambda: calls.append(1.0))
    assert verdict.passed and verdict.ticks >= 2 and len(calls) == verdict.ticks

    def lost() -> None:
        raise SwapError("this run lost its lock on the region", kind="lease")

    waiting = analysis.Settings("tai-system", "5s", ("Internal",), interval=1.0, duration=3.0)
    with pytest.raises(SwapError, match="lost its lock"):
        analysis.run(analysis.Analysis([gate], [analysis.Target("governor", "green")],
                                       waiting, source), sleep=lambda s: None, on_tick=lost)
    with pytest.raises(SwapError, match="lost its lock"):  # even a single measurement
        analysis.run(analysis.Analysis([gate], [analysis.Target("governor", "green")],
                                       settings, source), on_tick=lost)


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(ready_delay=0.1, observe_delay=0.02) as d:
        for name, port in SERVICES.items():
            d.seed(*chart_objects(name, port))
        d.wait_for(lambda: all(
            (d.find("Deployment", NAMESPACE, f"{s}-blue") or {}).get("status", {}).get(
                "availableReplicas") == 3 for s in SERVICES))
        yield d


def test_the_soak_watch_renews_the_lease_and_stops_on_a_rollback_or_a_lost_lease(
        double: KubeApiDouble) -> None:
    with KubeClient(ClusterAccess(server=double.url)) as client:
        settings = Settings(NAMESPACE, poll_interval=0.05, scale_down_delay=0.0,
                            progress_deadline=5.0)
        mine = LeaseLock(client, NAMESPACE, "op@host rolling-upgrade pid 1", duration=30)
        upgrade = BlueGreen(client, settings, lease=mine, may_acquire=True)
        upgrade.promote([Target("governor", version="v1.1.0")])
        renewed = double.get("Lease", NAMESPACE, "tai-bluegreen")["spec"]["renewTime"]
        # The gate's own process: a new client and lock with the same holder.
        watch = SoakWatch(BlueGreen(client, settings, lease=LeaseLock(
            client, NAMESPACE, "op@host rolling-upgrade pid 1", duration=30)), ["governor"])
        watch.check()
        assert double.get("Lease", NAMESPACE, "tai-bluegreen")["spec"]["renewTime"] > renewed
        # An operator's rollback (it breaks the lease) stops the watch as "aborted".
        rollback = BlueGreen(client, settings, lease=LeaseLock(
            client, NAMESPACE, "ops@laptop rollback pid 2", duration=30), may_acquire=True,
            break_lease=True)
        rollback.rollback([Target("governor")])
        with pytest.raises(SwapError) as stopped:
            watch.check()
        assert stopped.value.kind == "aborted"
        # Before the switch (nothing promoted to watch), a lost lease alone stops it.
        pre = SoakWatch(BlueGreen(client, settings, lease=LeaseLock(
            client, NAMESPACE, "op@host rolling-upgrade pid 1", duration=30)), ["governor"],
            watch_promotion=False)
        with pytest.raises(SwapError) as lost:
            pre.check()
        assert lost.value.kind == "lease"
        assert "ops@laptop rollback pid 2" in str(lost.value)
