"""Inventory checks of the chart's Redis ACL users and TLS settings (tai_services_values), in one
sentence each, before Helm or anything else runs."""

from __future__ import annotations

from typing import Any

from helpers.ansible_run import REPO
from tai_deploy.inventory import Context, role_problems

REGION = "europe-west1"


def problems(values: dict[str, Any]) -> list[str]:
    inputs = {"tai_services_chart_path": str(REPO / "charts" / "tai-chart"),
              "tai_services_region_values_file": "", "tai_services_values": values}
    return role_problems("tai_services", inputs, Context(region=REGION))


def test_the_chart_defaults_pass() -> None:
    assert problems({"redis": {"tls": {"authClients": "yes"}}}) == []


def test_a_service_user_that_opens_every_key_or_command_is_refused() -> None:
    where = f"tai_services_values.redis.auth.users of region {REGION}"
    assert problems({"redis": {"auth": {"users": {
        "governor": {"rules": ["+@all"], "keys": ["governor:*"]},
        "scheduler": {"rules": ["+@read"], "keys": ["*"]}}}}}) == [
        f"{where}.governor.rules holds +@all, which opens more than the service's own keys and "
        "data commands; grant key patterns (keys) and command categories such as +@read and "
        "+@write instead.",
        f"{where}.scheduler.keys holds '*', every key of every service; give scheduler its own "
        "prefix such as 'scheduler:*'."]


def test_a_password_in_the_rules_is_refused_by_the_schema() -> None:
    found = problems({"redis": {"auth": {"users": {
        "governor": {"rules": ["-@all", ">hunter2"], "keys": ["governor:*"]},
        "probe": {"rules": ["nopass", "+ping"], "keys": []}}}}})
    assert len(found) == 2
    assert found[0].startswith("tai_services_values.redis.auth.users.governor.rules[1] of region "
                               "europe-west1 is refused by tai-chart/values.schema.json: "
                               "'>hunter2' does not match")
    assert found[1].startswith("tai_services_values.redis.auth.users.probe.rules[0] of region "
                               "europe-west1 is refused by tai-chart/values.schema.json: 'nopass'")


def test_a_certificate_renewed_no_earlier_than_it_expires_is_refused() -> None:
    assert problems({"redis": {"tls": {"duration": "24h", "renewBefore": "1440m"}}}) == [
        f"tai_services_values.redis.tls.renewBefore of region {REGION} (1440m) is not shorter "
        "than redis.tls.duration (24h); cert-manager would renew the certificate forever."]
