"""span_rows: what goes in comes back out of otel_traces exactly, with the Collector's conventions."""

from __future__ import annotations

from collectors.record import CallRecord
from collectors.rows import SPAN_COLUMNS, insert_settings, span_rows
from collectors.store import Store

from .conftest import BASE_NS, RecordFactory

OK = CallRecord(
    start_ns=BASE_NS + 123_456_789, duration_ns=42_000_123, trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    span_id="00f067aa0ba902b7", parent_span_id="53995c3f42cd8ad8", method="PUT",
    route_template="/v1/artisans/{artisan_id}/listings/{listing_id}/inventory", route_name="inventory-put",
    path="/v1/artisans/a-17/listings/L9/inventory", status=200, error_type="", error_source="",
    partner_id="etsyish", artisan_id="a-17", upstream="inventory", upstream_span_id="b7ad6b7169203331",
    upstream_start_ns=BASE_NS + 123_556_789, upstream_duration_ns=40_000_000, sync_lag_ms=1520.25,
    sync_lag_invalid=False, server_address="api.loom.test", client_address="192.0.2.7",
    user_agent="sdk/2.0", request_body_size=321, response_body_size=4567, request_id="req-1", scheme="https",
    upstream_status=200,
)
REJECTED = OK._replace(
    span_id="1111111111111111", parent_span_id="", route_template="", route_name="", status=401,
    error_type="unauthorized", error_source="gateway", partner_id="", upstream="", upstream_span_id="",
    upstream_start_ns=0, upstream_duration_ns=0, sync_lag_ms=None, request_id="req-2", upstream_status=0,
    user_agent="", method="GET",
)
TIMEOUT = OK._replace(
    span_id="2222222222222222", upstream_span_id="3333333333333333", status=504, error_type="timeout",
    error_source="gateway", sync_lag_ms=None, sync_lag_invalid=True, request_id="req-3", upstream_status=0,
)


def _read(store: Store, span_id: str) -> dict:
    res = store.query(
        "SELECT toUnixTimestamp64Nano(Timestamp) AS ts_ns, * FROM otel_traces WHERE SpanId = {s:String}",
        {"s": span_id})
    assert len(res.rows) == 1, span_id
    return res.dicts()[0]


def test_server_and_client_rows_round_trip(schema_store: Store) -> None:
    rows = span_rows([OK], "loomgate-test", {"deployment.environment.name": "test"})
    assert len(rows) == 2 and all(len(r) == len(SPAN_COLUMNS) for r in rows)
    schema_store.insert("otel_traces", rows, SPAN_COLUMNS, settings=insert_settings("rt-1"))

    server = _read(schema_store, OK.span_id)
    assert server["ts_ns"] == OK.start_ns
    assert server["Duration"] == OK.duration_ns
    assert (server["TraceId"], server["ParentSpanId"]) == (OK.trace_id, OK.parent_span_id)
    assert server["SpanName"] == "PUT /v1/artisans/{artisan_id}/listings/{listing_id}/inventory"
    assert (server["SpanKind"], server["StatusCode"], server["StatusMessage"]) == ("Server", "Unset", "")
    assert server["ServiceName"] == "loomgate-test"
    assert server["ResourceAttributes"] == {"deployment.environment.name": "test",
                                            "service.name": "loomgate-test"}
    assert server["SpanAttributes"] == {
        "http.request.method": "PUT", "http.route": OK.route_template, "url.path": OK.path,
        "url.scheme": "https", "http.response.status_code": "200", "server.address": "api.loom.test",
        "client.address": "192.0.2.7", "user_agent.original": "sdk/2.0", "http.request.body.size": "321",
        "http.response.body.size": "4567", "partner.id": "etsyish", "artisan.id": "a-17",
        "loomgate.route": "inventory-put", "loomgate.upstream": "inventory",
        "loomgate.sync_lag_ms": "1520.25",
        "loomgate.upstream_duration_ms": "40.0", "loomgate.request_id": "req-1",
    }
    assert server["Events.Name"] == [] and server["Links.TraceId"] == []

    client = _read(schema_store, OK.upstream_span_id)
    assert client["ts_ns"] == OK.upstream_start_ns
    assert client["Duration"] == OK.upstream_duration_ns
    assert (client["TraceId"], client["ParentSpanId"]) == (OK.trace_id, OK.span_id)
    assert (client["SpanKind"], client["StatusCode"], client["SpanName"]) == ("Client", "Unset", "PUT")
    assert client["SpanAttributes"]["http.response.status_code"] == "200"
    assert client["SpanAttributes"]["loomgate.upstream"] == "inventory"


def test_error_conventions(schema_store: Store) -> None:
    rows = span_rows([REJECTED, TIMEOUT], "loomgate", {},
                     upstream_addresses={"inventory": "inventory.internal"})
    assert len(rows) == 3  # the rejected request made no upstream call
    schema_store.insert("otel_traces", rows, SPAN_COLUMNS)

    rejected = _read(schema_store, REJECTED.span_id)
    assert rejected["SpanName"] == "GET"  # no route matched: method only, never the raw path
    assert rejected["StatusCode"] == "Unset"  # 4xx is not an error of a SERVER span
    attrs = rejected["SpanAttributes"]
    assert attrs["error.type"] == "unauthorized" and attrs["loomgate.error_source"] == "gateway"
    for absent in ("http.route", "partner.id", "loomgate.upstream", "loomgate.upstream_duration_ms",
                   "loomgate.sync_lag_ms", "user_agent.original", "loomgate.sync_lag_invalid"):
        assert absent not in attrs

    timeout = _read(schema_store, TIMEOUT.span_id)
    assert (timeout["StatusCode"], timeout["StatusMessage"]) == ("Error", "timeout")
    assert timeout["SpanAttributes"]["loomgate.sync_lag_invalid"] == "true"
    assert "loomgate.sync_lag_ms" not in timeout["SpanAttributes"]
    client = _read(schema_store, TIMEOUT.upstream_span_id)
    assert client["StatusCode"] == "Error"  # no upstream response arrived
    assert client["SpanAttributes"]["server.address"] == "inventory.internal"
    assert "http.response.status_code" not in client["SpanAttributes"]


def test_many_records_counts_and_ids(schema_store: Store, records: RecordFactory) -> None:
    recs = records(2000, seed=3)
    rows = span_rows(recs, "loomgate", {})
    schema_store.insert("otel_traces", rows, SPAN_COLUMNS)
    expect_clients = sum(1 for r in recs if r.upstream_span_id)
    res = schema_store.query(
        "SELECT countIf(SpanKind = 'Server'), countIf(SpanKind = 'Client'), "
        "countIf(SpanKind = 'Server' AND StatusCode = 'Error'), sumIf(Duration, SpanKind = 'Server') "
        "FROM otel_traces")
    server, client, server_err, dur = res.rows[0]
    assert (server, client) == (len(recs), expect_clients)
    assert server_err == sum(1 for r in recs if r.status >= 500 or r.status == 0)
    assert dur == sum(r.duration_ns for r in recs)
    # every CLIENT span's parent is a SERVER span of the same trace
    orphans = schema_store.query(
        "SELECT count() FROM otel_traces c LEFT ANTI JOIN "
        "(SELECT TraceId, SpanId FROM otel_traces WHERE SpanKind = 'Server') s "
        "ON c.TraceId = s.TraceId AND c.ParentSpanId = s.SpanId WHERE c.SpanKind = 'Client'")
    assert orphans.rows[0][0] == 0
