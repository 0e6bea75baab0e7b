"""insert_calls (span rows built by ClickHouse from flat columns) writes exactly what span_rows builds."""

from __future__ import annotations

import math
from typing import Any

import pytest

from collectors.record import CallRecord
from collectors.rows import SPAN_COLUMNS, insert_calls, span_rows
from collectors.store import Store

from .conftest import RecordFactory
from .test_rows import OK, REJECTED, TIMEOUT

# Columns compared one to one; Events.* / Links.* are checked to be empty separately.
_COMPARED = SPAN_COLUMNS[:15]
_SELECT = ", ".join(
    "toUnixTimestamp64Nano(Timestamp)" if c == "Timestamp"
    else "CAST(SpanAttributes, 'Array(Tuple(String, String))')" if c == "SpanAttributes"
    else "CAST(ResourceAttributes, 'Array(Tuple(String, String))')" if c == "ResourceAttributes"
    else c
    for c in _COMPARED
)


def _edge_records() -> list[CallRecord]:
    """Values where a SQL builder could drift from the Python one: float formatting at every magnitude
    (integral values, exponent forms), zero / missing fields, empty always-present attributes."""
    lags = [0.0, 40.0, 1520.25, 0.1 + 0.2, 1e-05, 1.5e-07, 0.0001, 9.999e-05, 123456.789, 1e16, 2.5e20,
            9007199254740993.0, 1e300, 5e-324, 3.0, 12, None]
    durations = [0, 1, 50, 99, 100, 999, 1000, 40_000_000, 123_456_789, 18_000_000_000_000_000_000]
    out = []
    for i, lag in enumerate(lags):
        out.append(OK._replace(span_id=f"{0xa000 + i:016x}", upstream_span_id=f"{0xb000 + i:016x}",
                               sync_lag_ms=lag, upstream_duration_ns=durations[i % len(durations)],
                               request_id=f"edge-{i}"))
    out.append(REJECTED._replace(span_id="c000000000000001", request_id="", path="", scheme="",
                                 client_address="", server_address="", status=0, error_type="",
                                 error_source=""))
    out.append(OK._replace(span_id="c000000000000002", upstream_span_id="c000000000000003", status=0,
                           error_type="client_disconnect", error_source="gateway", upstream_status=0,
                           upstream_duration_ns=0, artisan_id="", partner_id="", route_name=""))
    out.append(OK._replace(span_id="c000000000000004", upstream_span_id="c000000000000005", status=404,
                           upstream_status=404, error_type="", error_source=""))
    out.append(OK._replace(span_id="c000000000000006", upstream_span_id="c000000000000007", status=502,
                           upstream_status=503, error_type="503", error_source="upstream",
                           user_agent="tab\there \\ 'quoted' \"dq\" ünïcode", path="/v1/a%20b"))
    return [*out, REJECTED, TIMEOUT]


def _normalise(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A span_rows row in the shape the SELECT above returns (maps as ordered key/value pairs)."""
    out = []
    for col, value in zip(_COMPARED, row, strict=False):
        if col in ("SpanAttributes", "ResourceAttributes"):
            value = list(value.items())
        out.append(value)
    return tuple(out)


def _stored(store: Store) -> list[tuple[Any, ...]]:
    res = store.query(f"SELECT {_SELECT} FROM otel_traces ORDER BY SpanId")
    return [tuple(list(v) if isinstance(v, list) else v for v in r) for r in res.rows]


def _as_pairs(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    idx = [_COMPARED.index("ResourceAttributes"), _COMPARED.index("SpanAttributes")]
    out = []
    for r in rows:
        r2 = list(r)
        for i in idx:
            r2[i] = [tuple(kv) for kv in r2[i]]
        out.append(tuple(r2))
    return out


@pytest.mark.parametrize("addresses", [None, {"inventory": "inventory.internal", "orders": "orders:8443"}])
def test_sql_builder_equals_python_builder(schema_store: Store, records: RecordFactory,
                                           addresses: dict[str, str] | None) -> None:
    recs = records(1500, seed=31) + _edge_records()
    resource = {"deployment.environment.name": "test", "host.name": "gw-1"}
    written = insert_calls(schema_store, recs, service_name="loomgate-test", resource=resource,
                           token="agree-1", upstream_addresses=addresses)
    want = sorted((_normalise(r) for r in span_rows(recs, "loomgate-test", resource,
                                                    upstream_addresses=addresses)),
                  key=lambda r: r[_COMPARED.index("SpanId")])
    got = _as_pairs(_stored(schema_store))
    assert written == len(want) == len(got)
    for g, w in zip(got, want, strict=True):
        assert g == w, {c: (a, b) for c, a, b in zip(_COMPARED, g, w, strict=True) if a != b}
    empty = schema_store.query(
        "SELECT count() FROM otel_traces WHERE notEmpty(Events.Name) OR notEmpty(Links.TraceId)")
    assert empty.rows[0][0] == 0


def test_float_attributes_are_python_repr(schema_store: Store) -> None:
    """The check above can fail on formatting alone: spot-check the strings a reader sees."""
    recs = [r for r in _edge_records() if r.request_id.startswith("edge-")]
    insert_calls(schema_store, recs, service_name="loomgate", resource={})
    res = schema_store.query(
        "SELECT SpanAttributes['loomgate.request_id'], SpanAttributes['loomgate.sync_lag_ms'], "
        "SpanAttributes['loomgate.upstream_duration_ms'] FROM otel_traces WHERE SpanKind = 'Server'")
    got = {rid: (lag, dur) for rid, lag, dur in res.rows}
    for r in recs:
        lag = "" if r.sync_lag_ms is None else repr(float(r.sync_lag_ms))
        assert got[r.request_id] == (lag, repr(r.upstream_duration_ns / 1e6)), r.request_id
    assert got["edge-1"] == ("40.0", "1e-06") and got["edge-4"][0] == "1e-05"
    assert all(not math.isnan(float(v)) for pair in got.values() for v in pair if v)


def test_plain_tuples_and_empty_batches(schema_store: Store, records: RecordFactory) -> None:
    recs = records(200, seed=32)
    assert insert_calls(schema_store, [], service_name="loomgate", resource={}) == 0
    n = insert_calls(schema_store, [tuple(r) for r in recs], service_name="loomgate", resource={})
    assert n == len(recs) + sum(1 for r in recs if r.upstream_span_id)
    assert schema_store.query("SELECT count() FROM otel_traces").rows[0][0] == n
    with pytest.raises(ValueError, match="fields"):
        insert_calls(schema_store, [tuple(recs[0])[:-1]], service_name="loomgate", resource={})
