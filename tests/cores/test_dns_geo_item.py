"""cloud_dns_geo_item core against the loopback TEST DOUBLE of the Cloud DNS REST API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.gcp_double import GcpDouble, serve
from tai_deploy.cloud_dns import DnsError, GeoItemConverger, GeoRecord
from tai_deploy.gcp_rest import GcpApiError, RestClient, RetryPolicy, make_session

PROJECT, ZONE, NAME = "tai-production", "tai-example-com", "api.tai.example.com."
ADDRESSES = {"us-central1": "35.1.1.1", "europe-west1": "35.2.2.2",
             "asia-southeast1": "35.3.3.3"}
CHANGES = f"/dns/v1/projects/{PROJECT}/managedZones/{ZONE}/changes"


@pytest.fixture
def api() -> Iterator[tuple[GcpDouble, str]]:
    with serve() as (double, url):
        double.add_zone(PROJECT, ZONE, "tai.example.com.")
        yield double, url


def region(url: str, location: str, *, address: str | None = None, ttl: int = 60,
           attempts: int = 5) -> GeoItemConverger:
    client = RestClient(make_session("none", url), url, service="the Cloud DNS API",
                        retry=RetryPolicy(attempts=3, base_delay=0.0))
    rec = GeoRecord(project=PROJECT, zone=ZONE, name=NAME, rtype="A", ttl=ttl,
                    location=location, rrdatas=(address or ADDRESSES[location],))
    return GeoItemConverger(client, rec, attempts=attempts, poll_interval=0.0,
                            sleep=lambda _: None)


def items(double: GcpDouble) -> list[tuple[str, list[str]]]:
    rrset = double.rrset(PROJECT, ZONE, NAME)
    assert rrset is not None
    return [(i["location"], i["rrdatas"]) for i in rrset["routingPolicy"]["geo"]["items"]]


def all_regions(url: str) -> None:
    for location in ADDRESSES:
        region(url, location).converge("present", check_mode=False)


def posted_changes(double: GcpDouble) -> list[Any]:
    return [b for m, p, b in double.requests if m == "POST" and p == CHANGES]


def test_regions_build_one_geo_record_set_together(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    first = region(url, "us-central1").converge("present", check_mode=False)
    assert first.changed and first.change == {"additions": [{
        "name": NAME, "type": "A", "ttl": 60,
        "routingPolicy": {"geo": {"items": [{"location": "us-central1",
                                             "rrdatas": ["35.1.1.1"]}]}}}]}
    region(url, "europe-west1").converge("present", check_mode=False)
    region(url, "asia-southeast1").converge("present", check_mode=False)
    assert items(double) == [("us-central1", ["35.1.1.1"]), ("europe-west1", ["35.2.2.2"]),
                             ("asia-southeast1", ["35.3.3.3"])]
    rrsets = double.rrsets[f"{PROJECT}/{ZONE}"]
    assert list(rrsets) == [(NAME, "A")]  # ONE record set, not one per region
    assert rrsets[(NAME, "A")]["ttl"] == 60
    # The second region's change deleted exactly the record set it had read.
    second = posted_changes(double)[1]
    assert second["deletions"][0]["routingPolicy"]["geo"]["items"][0]["location"] == "us-central1"


def test_rerun_changes_nothing(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    all_regions(url)
    count = len(posted_changes(double))
    for location in ADDRESSES:
        again = region(url, location).converge("present", check_mode=False)
        assert not again.changed and again.change is None
    assert len(posted_changes(double)) == count


def test_update_replaces_only_the_region_s_own_item(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    all_regions(url)
    result = region(url, "europe-west1", address="35.2.2.99").converge("present",
                                                                       check_mode=False)
    assert result.changed
    assert items(double) == [("us-central1", ["35.1.1.1"]), ("europe-west1", ["35.2.2.99"]),
                             ("asia-southeast1", ["35.3.3.3"])]


def test_drain_and_restore(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    all_regions(url)
    drained = region(url, "europe-west1").converge("absent", check_mode=False)
    assert drained.changed and drained.locations("after") == ["us-central1", "asia-southeast1"]
    assert items(double) == [("us-central1", ["35.1.1.1"]), ("asia-southeast1", ["35.3.3.3"])]
    assert not region(url, "europe-west1").converge("absent", check_mode=False).changed
    restored = region(url, "europe-west1").converge("present", check_mode=False)
    assert restored.changed
    assert [loc for loc, _ in items(double)] == ["us-central1", "asia-southeast1",
                                                 "europe-west1"]


def test_the_last_item_is_never_removed(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    region(url, "us-central1").converge("present", check_mode=False)
    with pytest.raises(DnsError) as err:
        region(url, "us-central1").converge("absent", check_mode=False)
    assert str(err.value) == (
        f"Refusing to remove us-central1, the last item of the geo policy of record set {NAME} "
        f"A in zone {ZONE} (project {PROJECT}): the name would stop resolving; restore another "
        "region first.")
    assert items(double) == [("us-central1", ["35.1.1.1"])]


def test_check_mode_returns_the_change_and_sends_nothing(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    all_regions(url)
    count = len(posted_changes(double))
    planned = region(url, "europe-west1").converge("absent", check_mode=True)
    assert planned.changed
    assert planned.change is not None
    assert [i["location"] for i in planned.change["deletions"][0]["routingPolicy"]["geo"]["items"]
            ] == ["us-central1", "europe-west1", "asia-southeast1"]
    assert [i["location"] for i in planned.change["additions"][0]["routingPolicy"]["geo"]["items"]
            ] == ["us-central1", "asia-southeast1"]
    assert len(posted_changes(double)) == count


def test_a_concurrent_change_is_read_again_not_clobbered(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    region(url, "us-central1").converge("present", check_mode=False)

    def asia_writes_first(d: GcpDouble) -> None:
        rrset = d.rrset(PROJECT, ZONE, NAME)
        assert rrset is not None
        rrset["routingPolicy"]["geo"]["items"].append(
            {"location": "asia-southeast1", "rrdatas": ["35.3.3.3"]})
        d.put_rrset(PROJECT, ZONE, rrset)

    double.before_change = asia_writes_first
    result = region(url, "europe-west1").converge("present", check_mode=False)
    assert result.attempts == 2  # 412 conditionNotMet, read again, write again
    assert sorted(loc for loc, _ in items(double)) == ["asia-southeast1", "europe-west1",
                                                       "us-central1"]


def test_two_first_writers_race_on_creation(api: tuple[GcpDouble, str]) -> None:
    double, url = api

    def us_creates_first(d: GcpDouble) -> None:
        d.put_rrset(PROJECT, ZONE, {"name": NAME, "type": "A", "ttl": 60, "routingPolicy": {
            "geo": {"items": [{"location": "us-central1", "rrdatas": ["35.1.1.1"]}]}}})

    double.before_change = us_creates_first
    result = region(url, "europe-west1").converge("present", check_mode=False)
    assert result.attempts == 2  # 409 alreadyExists, read again, merge
    assert items(double) == [("us-central1", ["35.1.1.1"]), ("europe-west1", ["35.2.2.2"])]


def test_a_record_set_that_keeps_changing_gives_up_with_a_sentence(
        api: tuple[GcpDouble, str]) -> None:
    double, url = api
    all_regions(url)
    double.fail("POST", r"/changes$", 412, "Precondition not met for "
                "'entity.change.deletions[0]'", times=10)
    with pytest.raises(DnsError) as err:
        region(url, "europe-west1", address="35.2.2.9", attempts=3).converge(
            "present", check_mode=False)
    assert str(err.value) == (
        f"The record set {NAME} A in zone {ZONE} (project {PROJECT}) kept changing while the "
        "europe-west1 item was written (3 attempts, last answer HTTP 412: Precondition not met "
        "for 'entity.change.deletions[0]'); rerun the play.")


@pytest.mark.parametrize(("status", "method", "path", "expected"), [
    (403, "GET", r"/rrsets/", "Cannot read the record set api.tai.example.com. A in zone "
     "tai-example-com (project tai-production): the Cloud DNS API answered HTTP 403 "
     "PERMISSION_DENIED (the credentials lack an IAM permission or the API is not enabled in "
     "the project): Forbidden."),
    (500, "POST", r"/changes$", "Cannot write the europe-west1 item of the record set "
     "api.tai.example.com. A in zone tai-example-com (project tai-production): the Cloud DNS "
     "API answered HTTP 500 INTERNAL after 3 attempts (the service failed): Forbidden."),
])
def test_api_errors_are_one_sentence(api: tuple[GcpDouble, str], status: int, method: str,
                                     path: str, expected: str) -> None:
    double, url = api
    double.fail(method, path, status, "Forbidden", times=10)
    with pytest.raises(GcpApiError) as err:
        region(url, "europe-west1").converge("present", check_mode=False)
    assert str(err.value) == expected


def test_rate_limited_changes_are_retried(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    double.fail("POST", r"/changes$", 429, "Rate limit exceeded", times=2)
    result = region(url, "europe-west1").converge("present", check_mode=False)
    assert result.changed and result.attempts == 1
    assert len(posted_changes(double)) == 3
    assert items(double) == [("europe-west1", ["35.2.2.2"])]


def test_a_missing_zone_is_named(api: tuple[GcpDouble, str]) -> None:
    _, url = api
    client = RestClient(make_session("none", url), url, service="the Cloud DNS API",
                        retry=RetryPolicy(attempts=1))
    rec = GeoRecord(project=PROJECT, zone="no-such-zone", name=NAME, rtype="A", ttl=60,
                    location="europe-west1", rrdatas=("35.2.2.2",))
    with pytest.raises(GcpApiError) as err:
        GeoItemConverger(client, rec).converge("present", check_mode=False)
    assert "HTTP 404" in str(err.value)
    assert "The 'parameters.managedZone' resource named 'no-such-zone' does not exist" in str(
        err.value)


def test_a_static_record_set_is_not_replaced(api: tuple[GcpDouble, str]) -> None:
    double, url = api
    double.put_rrset(PROJECT, ZONE, {"name": NAME, "type": "A", "ttl": 300,
                                     "rrdatas": ["198.51.100.7"]})
    with pytest.raises(DnsError) as err:
        region(url, "europe-west1").converge("present", check_mode=False)
    assert str(err.value) == (
        f"The record set {NAME} A in zone {ZONE} (project {PROJECT}) exists with static "
        "rrdatas instead of a geo routing policy; convert or delete it by hand before a region "
        "manages its geo item.")
