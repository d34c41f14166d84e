"""Tests of the grpc_health_check core against real grpcio servers on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers.grpc_servers import (
    HealthServer,
    Pki,
    SilentServer,
    bare_server,
    free_port,
    make_pki,
    scripted_health_server,
)
from tai_deploy.grpc_health import (
    CONNECT_FAILED,
    DEADLINE_EXCEEDED,
    EXIT_CONNECTION_FAILURE,
    EXIT_INVALID_ARGUMENTS,
    EXIT_OK,
    EXIT_RPC_FAILURE,
    EXIT_UNHEALTHY,
    MASK,
    NOT_SERVING,
    RPC_FAILED,
    SERVICE_UNKNOWN,
    UNIMPLEMENTED,
    UNSTABLE,
    ConfigError,
    HealthReport,
    Target,
    TargetResult,
    TlsSettings,
    WaitPolicy,
    main,
    mask,
    parse_duration,
    policy_from_params,
    run_health_checks,
    split_host_port,
    targets_from_params,
)

FAST = {"connect_timeout": 0.5, "rpc_timeout": 0.5}


def check(params: dict[str, Any]) -> HealthReport:
    """Run the core exactly as the module does: module-style parameters in, report out."""
    return run_health_checks(targets_from_params(params), policy_from_params(params))


def one(params: dict[str, Any]) -> TargetResult:
    report = check(params)
    assert len(report.results) == 1
    return report.results[0]


@pytest.fixture(scope="module")
def server() -> Iterator[HealthServer]:
    with HealthServer({"": "SERVING", "tai.Governor": "SERVING",
                       "tai.Draining": "NOT_SERVING"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# ------------------------------------------------------------------------------------------
# One check


def test_serving(server: HealthServer) -> None:
    report = check({"targets": [{"address": server.address, "name": "governor",
                                 "service": "tai.Governor"}], **FAST})
    r = report.results[0]
    assert (r.healthy, r.status, r.error, r.message) == (True, "SERVING", None, "SERVING")
    assert r.name == "governor" and r.service == "tai.Governor"
    assert r.latency_ms is not None and r.latency_ms >= 0
    assert r.attempts == 1
    assert report.healthy
    assert report.summary() == {"total": 1, "healthy": 1, "unhealthy": 0, "by_error": {}}
    assert report.message() == "all 1 gRPC target(s) SERVING"


def test_not_serving(server: HealthServer) -> None:
    r = one({"targets": [{"address": server.address}], "service": "tai.Draining", **FAST})
    assert (r.healthy, r.status, r.error) == (False, "NOT_SERVING", NOT_SERVING)


def test_unknown_service_is_service_unknown(server: HealthServer) -> None:
    r = one({"targets": [{"address": server.address, "service": "tai.Nope"}], **FAST})
    assert (r.healthy, r.status, r.error) == (False, None, SERVICE_UNKNOWN)
    assert "NOT_FOUND" in r.message and "tai.Nope" in r.message


def test_empty_service_is_the_servers_overall_health() -> None:
    with HealthServer({"": "NOT_SERVING", "tai.Governor": "SERVING"}) as srv:
        report = check({"targets": [{"address": srv.address},
                                    {"address": srv.address, "service": "tai.Governor"}], **FAST})
    overall, named = report.results
    assert (overall.status, overall.error) == ("NOT_SERVING", NOT_SERVING)
    assert named.healthy


def test_server_without_health_service_is_unimplemented() -> None:
    with bare_server() as address:
        r = one({"targets": [{"address": address}], **FAST})
    assert (r.healthy, r.error) == (False, UNIMPLEMENTED)
    assert "UNIMPLEMENTED" in r.message


def test_nothing_listening_is_connect_failed() -> None:
    r = one({"targets": [{"address": f"127.0.0.1:{free_port()}"}], **FAST})
    assert (r.healthy, r.status, r.error) == (False, None, CONNECT_FAILED)
    assert "refused" in r.message.lower()


def test_socket_that_accepts_and_never_answers_costs_at_most_its_timeouts() -> None:
    connect_timeout, rpc_timeout = 0.4, 0.4
    with SilentServer() as silent:
        started = time.monotonic()
        r = one({"targets": [{"address": silent.address}], "connect_timeout": connect_timeout,
                 "rpc_timeout": rpc_timeout})
        elapsed = time.monotonic() - started
        assert silent.accepted, "the client did connect at TCP level"
    assert (r.healthy, r.error) == (False, CONNECT_FAILED)
    assert "connect_timeout 0.4s" in r.message
    assert elapsed < connect_timeout + rpc_timeout + 1.0


def test_handler_that_never_answers_costs_at_most_its_timeouts() -> None:
    connect_timeout, rpc_timeout = 0.4, 0.3
    with scripted_health_server(hang=3.0) as (address, _):
        started = time.monotonic()
        r = one({"targets": [{"address": address}], "connect_timeout": connect_timeout,
                 "rpc_timeout": rpc_timeout})
        elapsed = time.monotonic() - started
    assert (r.healthy, r.error) == (False, DEADLINE_EXCEEDED)
    assert "rpc_timeout 0.3s" in r.message
    assert elapsed < connect_timeout + rpc_timeout + 1.0


def test_many_targets_in_one_call_keep_their_order(server: HealthServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    raw = []
    for i in range(30):
        raw.append({"address": server.address, "name": f"ok-{i}"})
        raw.append({"address": server.address, "name": f"draining-{i}",
                    "service": "tai.Draining"})
        raw.append({"address": dead, "name": f"dead-{i}"})
    report = check({"targets": raw, **FAST})
    assert [r.name for r in report.results] == [t["name"] for t in raw]
    assert report.summary() == {"total": 90, "healthy": 30, "unhealthy": 60,
                                "by_error": {NOT_SERVING: 30, CONNECT_FAILED: 30}}


def test_failure_message_lists_every_unhealthy_target_and_why(server: HealthServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    report = check({"targets": [
        {"address": server.address, "name": "governor"},
        {"address": server.address, "name": "coordinator", "service": "tai.Draining"},
        {"address": dead, "name": "scheduler"},
    ], **FAST})
    msg = report.message()
    assert msg.startswith("2 of 3 gRPC target(s) unhealthy: ")
    assert f"coordinator ({server.address}, service 'tai.Draining'): not_serving" in msg
    assert f"scheduler ({dead}): connect_failed" in msg
    assert "governor" not in msg


# ------------------------------------------------------------------------------------------
# Waiting


def test_wait_succeeds_when_the_service_becomes_serving() -> None:
    with HealthServer({"": "NOT_SERVING"}) as srv:
        timer = srv.set_later(0.4, "", "SERVING")
        r = one({"targets": [{"address": srv.address}], "wait_timeout": 10, "interval": 0.1,
                 "max_interval": 0.2, **FAST})
        timer.cancel()
    assert (r.healthy, r.status, r.error) == (True, "SERVING", None)
    assert r.attempts > 1


def test_wait_succeeds_when_the_server_starts_listening_late() -> None:
    port = free_port()
    late = HealthServer(port=port)
    starter = threading.Timer(0.4, late.start)
    starter.start()
    try:
        r = one({"targets": [{"address": f"127.0.0.1:{port}"}], "wait_timeout": 10,
                 "interval": 0.1, "max_interval": 0.2, **FAST})
    finally:
        starter.join()
        late.stop()
    assert r.healthy and r.attempts > 1


def test_wait_gives_up_at_the_deadline_with_the_last_error() -> None:
    with HealthServer({"": "NOT_SERVING"}) as srv:
        r = one({"targets": [{"address": srv.address}], "wait_timeout": 0.5, "interval": 0.1,
                 **FAST})
    assert (r.healthy, r.error, r.status) == (False, NOT_SERVING, "NOT_SERVING")
    assert r.attempts >= 3  # retried with backoff 0.1, 0.15, 0.225 ... up to the deadline


def test_retry_delays_back_off_up_to_max_interval() -> None:
    policy = WaitPolicy(timeout=60, interval=0.5, backoff=2.0, max_interval=3.0)
    assert [policy.retry_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_consecutive_successes_catches_a_flapping_service() -> None:
    with scripted_health_server(["SERVING", "NOT_SERVING"]) as (address, answered):
        flaky = one({"targets": [{"address": address}], "wait_timeout": 1.0, "interval": 0.05,
                     "consecutive_successes": 3, **FAST})
        assert len(answered) > 3
    assert not flaky.healthy
    assert flaky.error in (NOT_SERVING, UNSTABLE)
    assert "lost SERVING" in flaky.message
    # Without the stability requirement the first SERVING answer would have passed.
    with scripted_health_server(["SERVING", "NOT_SERVING"]) as (address, _):
        assert one({"targets": [{"address": address}], **FAST}).healthy


def test_consecutive_successes_passes_a_stable_service() -> None:
    with scripted_health_server(["NOT_SERVING", "SERVING"] + ["SERVING"] * 10) as (address, seen):
        r = one({"targets": [{"address": address}], "wait_timeout": 3, "interval": 0.05,
                 "consecutive_successes": 3, **FAST})
    assert r.healthy and r.consecutive_successes == 3
    assert seen == ["NOT_SERVING", "SERVING", "SERVING", "SERVING"]
    assert "3 consecutive checks" in r.message


def test_series_cut_by_the_deadline_is_unstable() -> None:
    with scripted_health_server(["NOT_SERVING"] + ["SERVING"] * 10) as (address, _):
        r = one({"targets": [{"address": address}], "wait_timeout": 0.25, "interval": 0.1,
                 "consecutive_successes": 3, **FAST})
    assert (r.healthy, r.error, r.status) == (False, UNSTABLE, "SERVING")
    assert "of 3 required consecutive SERVING checks" in r.message


def test_waiting_targets_do_not_hold_workers() -> None:
    # 1 worker, 2 targets: the unhealthy one waits between attempts without blocking the other.
    with HealthServer({"": "SERVING", "down": "NOT_SERVING"}) as srv:
        targets = [Target(srv.address, service="down", connect_timeout=0.5, rpc_timeout=0.5),
                   Target(srv.address, connect_timeout=0.5, rpc_timeout=0.5)]
        report = run_health_checks(targets, WaitPolicy(timeout=0.6, interval=0.1),
                                   max_workers=1)
    down, up = report.results
    assert up.healthy and up.attempts == 1
    assert not down.healthy and down.attempts > 2


# ------------------------------------------------------------------------------------------
# Watch


def test_watch_sees_the_service_become_serving() -> None:
    with HealthServer({"": "NOT_SERVING"}) as srv:
        srv.set_later(0.3, "", "SERVING")
        r = one({"targets": [{"address": srv.address}], "mode": "watch", "wait_timeout": 10,
                 **FAST})
    assert (r.healthy, r.status) == (True, "SERVING")
    assert r.attempts == 2  # NOT_SERVING, then SERVING: two streamed messages, no polling


def test_watch_single_check_reports_the_current_status() -> None:
    with HealthServer({"": "NOT_SERVING"}) as srv:
        r = one({"targets": [{"address": srv.address}], "mode": "watch", **FAST})
    assert (r.healthy, r.status, r.error, r.attempts) == (False, "NOT_SERVING", NOT_SERVING, 1)


def test_watch_waits_for_an_unknown_service_to_be_registered() -> None:
    with HealthServer() as srv:
        unknown = one({"targets": [{"address": srv.address, "service": "late"}],
                       "mode": "watch", **FAST})
        srv.set_later(0.3, "late", "SERVING")
        late = one({"targets": [{"address": srv.address, "service": "late"}], "mode": "watch",
                    "wait_timeout": 10, **FAST})
    assert (unknown.status, unknown.error) == ("SERVICE_UNKNOWN", SERVICE_UNKNOWN)
    assert late.healthy


def test_watch_requires_the_status_to_hold_for_the_stability_window() -> None:
    with HealthServer() as srv:
        stable = one({"targets": [{"address": srv.address}], "mode": "watch",
                      "wait_timeout": 5, "interval": 0.2, "consecutive_successes": 2, **FAST})
        srv.set_later(0.1, "", "NOT_SERVING")
        flipped = one({"targets": [{"address": srv.address}], "mode": "watch",
                       "wait_timeout": 0.6, "interval": 0.6, "consecutive_successes": 2,
                       **FAST})
    assert stable.healthy and "unchanged for 0.2s" in stable.message
    assert (flipped.healthy, flipped.error) == (False, NOT_SERVING)
    assert "lost SERVING" in flipped.message


def test_watch_against_a_check_only_server_is_unimplemented() -> None:
    with scripted_health_server() as (address, _):
        r = one({"targets": [{"address": address}], "mode": "watch", **FAST})
    assert (r.healthy, r.error) == (False, UNIMPLEMENTED)
    assert "Watch" in r.message


def test_watch_reconnects_when_nothing_listens_yet() -> None:
    port = free_port()
    late = HealthServer(port=port)
    starter = threading.Timer(0.3, late.start)
    starter.start()
    try:
        r = one({"targets": [{"address": f"127.0.0.1:{port}"}], "mode": "watch",
                 "wait_timeout": 10, "interval": 0.1, "max_interval": 0.2, **FAST})
    finally:
        starter.join()
        late.stop()
    assert r.healthy and r.attempts > 1


# ------------------------------------------------------------------------------------------
# Transport


def tls_target(address: str, **tls: Any) -> dict[str, Any]:
    return {"address": address, "tls": True, **{f"tls_{k}": v for k, v in tls.items()}}


def test_tls_with_ca(pki: Pki) -> None:
    with HealthServer(tls=pki.server_tls()) as srv:
        good = one({"targets": [tls_target(srv.address, ca_cert=str(pki.ca_cert))], **FAST})
        default_roots = one({"targets": [tls_target(srv.address)], **FAST})
        wrong_ca = one({"targets": [tls_target(srv.address, ca_cert=str(pki.stranger_ca_cert))],
                        **FAST})
        plaintext = one({"targets": [{"address": srv.address}], **FAST})
    assert good.healthy
    for bad in (default_roots, wrong_ca):
        assert bad.error == CONNECT_FAILED and "CERTIFICATE_VERIFY_FAILED" in bad.message
    assert not plaintext.healthy


def test_tls_server_name_override(pki: Pki) -> None:
    # The stranger server's certificate names only stranger.internal, not 127.0.0.1.
    with HealthServer(tls=pki.stranger_tls()) as srv:
        ca = str(pki.stranger_ca_cert)
        named = one({"targets": [tls_target(srv.address, ca_cert=ca,
                                            server_name="stranger.internal")], **FAST})
        unnamed = one({"targets": [tls_target(srv.address, ca_cert=ca)], **FAST})
    assert named.healthy
    assert unnamed.error == CONNECT_FAILED


def test_mtls_needs_the_client_certificate(pki: Pki) -> None:
    with HealthServer(tls=pki.server_tls(require_client_cert=True)) as srv:
        ca = str(pki.ca_cert)
        with_cert = one({"targets": [tls_target(
            srv.address, ca_cert=ca, client_cert=str(pki.client_cert),
            client_key=str(pki.client_key))], **FAST})
        without = one({"targets": [tls_target(srv.address, ca_cert=ca)], **FAST})
    assert with_cert.healthy
    assert (without.healthy, without.error) == (False, CONNECT_FAILED)


def test_tls_no_verify_accepts_an_unknown_issuer(pki: Pki) -> None:
    with HealthServer(tls=pki.stranger_tls()) as stranger, \
            HealthServer(tls=pki.server_tls(require_client_cert=True)) as mtls:
        r1 = one({"targets": [tls_target(stranger.address, no_verify=True)], **FAST})
        r2 = one({"targets": [tls_target(mtls.address, no_verify=True,
                                         client_cert=str(pki.client_cert),
                                         client_key=str(pki.client_key))], **FAST})
    assert r1.healthy and r2.healthy


def test_tls_no_verify_against_plaintext_is_connect_failed(server: HealthServer) -> None:
    r = one({"targets": [tls_target(server.address, no_verify=True)], **FAST})
    assert (r.healthy, r.error) == (False, CONNECT_FAILED)


@pytest.mark.parametrize(("params", "expected"), [
    ({"tls": True, "tls_client_cert": "c.pem"},
     "tls_client_cert and tls_client_key must be given together"),
    ({"tls": True, "tls_client_key": "k.pem"},
     "tls_client_cert and tls_client_key must be given together"),
    ({"tls": True, "tls_no_verify": True, "tls_ca_cert": "ca.pem"},
     "tls_no_verify and tls_ca_cert are mutually exclusive"),
    ({"tls": True, "tls_no_verify": True, "tls_server_name": "x"},
     "tls_no_verify and tls_server_name are mutually exclusive"),
    ({"tls_ca_cert": "ca.pem"}, "tls_ca_cert requires tls: true"),
    ({"tls_no_verify": True}, "tls_no_verify requires tls: true"),
])
def test_tls_parameter_rules(params: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as top:
        targets_from_params({"targets": [{"address": "a:1"}], **params})
    (problem,) = top.value.problems
    assert problem.startswith(f"top level: {expected}")
    with pytest.raises(ConfigError) as per_target:
        targets_from_params({"targets": [{"address": "a:1", "name": "gov", **params}]})
    (problem,) = per_target.value.problems
    assert problem.startswith(f"targets[0] (gov): {expected}")


def test_targets_override_inherited_tls_settings() -> None:
    targets = targets_from_params({
        "tls": True, "tls_ca_cert": "ca.pem", "tls_server_name": "tai.internal",
        "tls_client_cert": "c.pem", "tls_client_key": "k.pem",
        "targets": [
            {"address": "a:1"},
            {"address": "b:1", "tls_no_verify": True},
            {"address": "c:1", "tls": False},
            {"address": "d:1", "tls_client_cert": "d.pem", "tls_client_key": "dk.pem"},
        ],
    })
    assert [t.tls for t in targets] == [
        TlsSettings(True, "ca.pem", "c.pem", "k.pem", "tai.internal", False),
        TlsSettings(True, None, "c.pem", "k.pem", None, True),
        TlsSettings(False),
        TlsSettings(True, "ca.pem", "d.pem", "dk.pem", "tai.internal", False),
    ]
    top_no_verify = targets_from_params({"tls": True, "tls_no_verify": True, "targets": [
        {"address": "a:1", "tls_ca_cert": "ca.pem"}]})
    assert top_no_verify[0].tls == TlsSettings(True, "ca.pem", no_verify=False)


def test_unreadable_certificate_is_a_parameter_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    targets = targets_from_params({"targets": [{"address": "127.0.0.1:1"}], "tls": True,
                                   "tls_ca_cert": str(missing)})
    with pytest.raises(ConfigError, match=f"tls_ca_cert: cannot read {missing}"):
        run_health_checks(targets)


@pytest.mark.parametrize(("params", "expected"), [
    ({"targets": []}, "targets must list at least one target"),
    ({"targets": [{"address": " "}]}, "targets[0]: address must not be empty"),
    ({"targets": [{"address": "a:1", "rpc_timeout": 0}]},
     "targets[0]: rpc_timeout must be greater than 0 (got 0.0)"),
    ({"targets": [{"address": "a:1"}], "metadata": {"grpc-timeout": "1"}},
     "targets[0]: metadata key 'grpc-timeout' is reserved by gRPC"),
    ({"targets": [{"address": "a:1"}], "metadata": {"x y": "1"}},
     "targets[0]: metadata key 'x y' is not a valid gRPC header name"),
])
def test_target_parameter_errors(params: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        targets_from_params(params)
    assert err.value.problems[0].startswith(expected)


@pytest.mark.parametrize(("params", "expected"), [
    ({"consecutive_successes": 3, "interval": 2, "wait_timeout": 3},
     "wait_timeout (3.0) is too short for consecutive_successes=3 at interval=2.0"),
    ({"consecutive_successes": 0}, "consecutive_successes must be at least 1"),
    ({"mode": "stream"}, "mode must be one of check, watch"),
    ({"interval": 2, "max_interval": 1}, "max_interval (1.0) must not be below interval"),
    ({"backoff": 0.5}, "backoff must be at least 1"),
])
def test_wait_parameter_errors(params: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        policy_from_params(params)
    assert err.value.problems[0].startswith(expected)


def test_metadata_and_user_agent_reach_the_server() -> None:
    with HealthServer() as srv:
        r = one({"targets": [{"address": srv.address,
                              "metadata": {"X-Tai-Slot": "preview"},
                              "sensitive_metadata": {"authorization": "Bearer s3cr3t-t0k3n"}}],
                 "metadata": {"x-request-source": "ansible", "x-tai-slot": "stable"},
                 "user_agent": "tai-runbook/1.0", **FAST})
        (method, headers), = srv.calls
    assert r.healthy
    assert method == "/grpc.health.v1.Health/Check"
    assert headers["x-tai-slot"] == "preview"  # the target's value wins, names lower-cased
    assert headers["x-request-source"] == "ansible"
    assert headers["authorization"] == "Bearer s3cr3t-t0k3n"
    assert headers["user-agent"].startswith("tai-runbook/1.0 ")
    assert r.metadata_keys == ["authorization", "x-request-source", "x-tai-slot"]


def test_sensitive_values_never_appear_in_the_report() -> None:
    secret = "Bearer s3cr3t-t0k3n"
    plain_secret = "cookie-v4lue"
    with HealthServer({"": "NOT_SERVING"}) as srv:
        targets = targets_from_params({
            "targets": [{"address": srv.address, "metadata": {"cookie": plain_secret}}],
            "sensitive_metadata": {"authorization": secret}, **FAST})
        report = run_health_checks(targets)
    assert targets[0].sensitive_values() == {secret, plain_secret}
    dumped = json.dumps(report.as_dict())
    assert secret not in dumped and plain_secret not in dumped
    assert mask(f"sent {secret} and {plain_secret}", targets[0].sensitive_values()) == \
        f"sent {MASK} and {MASK}"


def test_gzip_compresses_requests() -> None:
    # A server that disables gzip rejects compressed requests: proof that gzip is used.
    with HealthServer(options=[("grpc.compression_enabled_algorithms_bitset", 1)]) as srv:
        gz = one({"targets": [{"address": srv.address}], "gzip": True, **FAST})
        plain = one({"targets": [{"address": srv.address}], **FAST})
    with HealthServer() as srv:
        gz_ok = one({"targets": [{"address": srv.address}], "gzip": True, **FAST})
    assert (gz.healthy, gz.error) == (False, UNIMPLEMENTED)
    assert "gzip" in gz.message
    assert plain.healthy and gz_ok.healthy


def test_unexpected_status_code_is_rpc_failed() -> None:
    with scripted_health_server(abort=(grpc.StatusCode.PERMISSION_DENIED,
                                       "no health for you")) as (address, _):
        r = one({"targets": [{"address": address}], **FAST})
    assert (r.error, r.message) == (RPC_FAILED,
                                    "Check failed: PERMISSION_DENIED: no health for you")


# ------------------------------------------------------------------------------------------
# Command line


def test_cli_exit_codes_follow_grpc_health_probe(server: HealthServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    common = ["-connect-timeout", "500ms", "-rpc-timeout", "0.5s"]
    assert main(["-addr", server.address, *common]) == EXIT_OK
    assert capsys.readouterr().out == "status: SERVING\n"
    assert main(["-addr", server.address, "-service", "tai.Draining", *common]) == EXIT_UNHEALTHY
    assert main(["-addr", dead, *common]) == EXIT_CONNECTION_FAILURE
    assert main(["-addr", server.address, "-service", "nope", *common]) == EXIT_RPC_FAILURE
    assert main(["-addr", server.address, "-tls-no-verify"]) == EXIT_INVALID_ARGUMENTS
    assert "tls_no_verify requires tls: true" in capsys.readouterr().err
    assert main(["--addr", server.address, "--addr", dead, *common]) == EXIT_CONNECTION_FAILURE
    out, err = capsys.readouterr()
    assert out == f"{server.address}: status: SERVING\n"
    assert err.startswith(f"{dead}: error: connect_failed: cannot connect")
    assert main(["-addr=" + server.address, "-rpc-header", "x-tai-slot: preview",
                 "-json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["healthy"] is True
    assert server.calls[-1][1]["x-tai-slot"] == "preview"
    assert main(["-nope"]) == EXIT_INVALID_ARGUMENTS


def test_parse_duration() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("2.5") == 2.5
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("5 parsecs")


def test_split_host_port() -> None:
    assert split_host_port("10.0.0.1:50051") == ("10.0.0.1", 50051)
    assert split_host_port("[::1]:50052") == ("::1", 50052)
    assert split_host_port("dns:///tai.example.com:443") == ("tai.example.com", 443)
    assert split_host_port("tai.example.com") == ("tai.example.com", 443)
