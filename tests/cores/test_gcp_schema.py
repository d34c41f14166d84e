"""The plan-time schema check of GCP bodies against Google's discovery documents."""

from __future__ import annotations

import time

import pytest
from tai_deploy import gcp_schema

CREATE = "projects.locations.clusters.create"


def test_a_valid_create_body_has_no_problem() -> None:
    body = {"cluster": {"name": "tai", "initialClusterVersion": "1.34",
                        "releaseChannel": {"channel": "REGULAR"},
                        "nodePools": [{"name": "p", "initialNodeCount": 1,
                                       "config": {"spot": True, "diskSizeGb": 100,
                                                  "labels": {"a": "b"}}}]}}
    assert gcp_schema.method_problems("container.v1", CREATE, body) == []


def test_an_unknown_field_is_named_with_its_path() -> None:
    body = {"cluster": {"nodePools": [{"config": {"spott": True}}]}}
    found = gcp_schema.method_problems("container.v1", CREATE, body)
    assert len(found) == 1
    assert found[0].startswith("cluster.nodePools[0].config.spott is not a field of the "
                               "NodeConfig schema (container.v1)")
    assert "did you mean spot?" in found[0]


def test_wrong_types_and_enum_values_are_each_one_problem() -> None:
    body = {"cluster": {"nodePools": [{"config": {"spot": "yes", "diskSizeGb": "100",
                                                  "labels": {"a": 1}}}],
                        "releaseChannel": {"channel": "FASTEST"}}}
    found = gcp_schema.method_problems("container.v1", CREATE, body)
    assert found == [
        'cluster.nodePools[0].config.spot must be a boolean (true or false), got a string "yes".',
        'cluster.nodePools[0].config.labels["a"] must be a string, got a number 1.',
        'cluster.releaseChannel.channel has the value "FASTEST", which is not one of RAPID, '
        "REGULAR, STABLE, EXTENDED.",
    ]


def test_int64_travels_as_a_decimal_string() -> None:
    # Router.bgp.asn is uint32 (a number); Subnetwork.id is uint64 (a string).
    assert gcp_schema.problems("compute.v1", "Router", {"bgp": {"asn": 64514}}) == []
    assert gcp_schema.problems("compute.v1", "Subnetwork", {"id": "12"}) == []
    found = gcp_schema.problems("compute.v1", "Subnetwork", {"id": "12a"})
    assert found == ['id must be a uint64 integer (sent as a decimal string such as "10"), '
                     'got a string "12a".']
    assert gcp_schema.problems("compute.v1", "Subnetwork", {"id": "-1"})


def test_a_scalar_where_an_object_belongs() -> None:
    found = gcp_schema.problems("dns.v1", "ResourceRecordSet", {"routingPolicy": "geo"})
    assert found == ['routingPolicy must be a RRSetRoutingPolicy object, got a string "geo".']


def test_unknown_api_schema_or_method_is_a_clear_error() -> None:
    with pytest.raises(gcp_schema.SchemaError, match="no schema 'Clusterr'"):
        gcp_schema.problems("container.v1", "Clusterr", {})
    with pytest.raises(gcp_schema.SchemaError, match="no method"):
        gcp_schema.method_problems("container.v1", "projects.locations.clusters.make", {})
    with pytest.raises(gcp_schema.SchemaError, match="No discovery document"):
        gcp_schema.problems("nothing.v9", "X", {})


def test_method_ids_with_the_api_name_and_request_refs() -> None:
    assert gcp_schema.request_schema("compute.v1", "compute.globalAddresses.insert") == "Address"
    assert gcp_schema.request_schema("serviceusage.v1", "services.batchEnable") == \
        "BatchEnableServicesRequest"
    assert gcp_schema.request_schema("compute.v1", "globalAddresses.get") is None


def test_documents_are_parsed_once() -> None:
    gcp_schema.document("compute.v1")
    start = time.perf_counter()
    for _ in range(50):
        gcp_schema.problems("compute.v1", "Firewall", {"name": "x", "allowed": [
            {"IPProtocol": "tcp", "ports": ["80"]}]})
    # cached: fifty checks cost far less than one parse of the 3 MB document
    assert time.perf_counter() - start < 1.0
