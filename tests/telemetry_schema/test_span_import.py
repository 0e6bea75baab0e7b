"""`loomgate import spans`: span history from Collector-schema files (JSON Lines, Parquet) and OTLP/JSON
feeds the same rollups as live traffic; foreign spans roll up by the attribute mapping; old rows warn."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from collectors.otlp import readable_spans
from collectors.otlp_json import hex_id
from collectors.rows import insert_calls
from collectors.schema import migrate
from collectors.span_import import SpanImportError, import_spans, set_span_mapping
from collectors.store import Store
from gateway.config import TelemetryConfig
from gateway.testing import ACME_KEY, GLOBEX_KEY, client_session, standard_config, wait_for

ROLLUPS = {
    "loomgate_calls_1m": "SELECT minute, partner, artisan, route, upstream, sum(calls), sum(errors), "
    "sum(errors_4xx), sum(errors_5xx), sum(errors_gateway), sum(errors_upstream), sum(aborted), "
    "round(sum(latency_sum_ms), 6), max(latency_max_ms), quantileBFloat16Merge(0.5)(latency_hist_ms), "
    "sum(sync_lag_measured), sum(sync_lag_invalid), round(sum(sync_lag_sum_ms), 6), sum(bytes_in), "
    "sum(bytes_out) FROM loomgate_calls_1m GROUP BY ALL ORDER BY ALL",
    "loomgate_calls_1d": "SELECT day, partner, artisan, route, upstream, sum(calls), sum(errors), "
    "sum(sync_lag_measured), sum(bytes_in) FROM loomgate_calls_1d GROUP BY ALL ORDER BY ALL",
    "loomgate_upstream_1m": "SELECT minute, upstream, route, sum(calls), sum(errors), sum(errors_5xx), "
    "sumMapMerge(latency_le_ns) FROM loomgate_upstream_1m GROUP BY ALL ORDER BY ALL",
    "loomgate_sla_1m": "SELECT minute, upstream, route, sum(calls), sum(bad) FROM loomgate_sla_1m "
    "GROUP BY ALL ORDER BY ALL",
}


@pytest.fixture
def fresh(chdb_dsn: str) -> Iterator[Any]:
    """``fresh(ttl_days=0)``: a new migrated database in the session's store, dropped afterwards."""
    made: list[Store] = []

    def make(ttl_days: int = 0) -> Store:
        s = Store(chdb_dsn, "imp_" + uuid.uuid4().hex[:10])
        made.append(s)
        migrate(s, TelemetryConfig(database=s.database, ttl_days=ttl_days))
        return s

    yield make
    for s in made:
        s.command(f"DROP DATABASE IF EXISTS `{s.database}`")


def rollups(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {name: store.query(sql).rows for name, sql in ROLLUPS.items()}


async def gateway_records(gateway: Any, upstream_server: Any) -> list[Any]:
    """Calls through a real gateway to a real upstream: successes, sync lag, 401, 403 and 404."""
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    base = gw.partner_url
    lag_at = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)).isoformat()
    async with client_session() as http:
        for i in range(60):
            key = ACME_KEY if i % 3 else GLOBEX_KEY
            artisan = ("a1", "a2", "a3")[i % 3]
            if i % 4 == 0:
                req = http.put(f"{base}/v1/artisans/{artisan}/listings/l{i}/inventory", data=b"{}",
                               headers={"Authorization": f"Bearer {key}", "X-Source-Updated-At": lag_at})
            elif i % 7 == 0:
                req = http.get(f"{base}/v1/artisans/{artisan}/listings",
                               headers={"Authorization": "Bearer x"})
            else:
                req = http.get(f"{base}/v1/artisans/{artisan}/listings?page={i}",
                               headers={"Authorization": f"Bearer {key}"})
            async with req as r:
                await r.read()
    await wait_for(lambda: gw.inflight == 0, 10.0, "no request in flight")
    records = list(gw.services.sink.records)
    assert len(records) == 60
    return records


def otlp_json_export(records: list[Any], path: Path) -> None:
    """OTLP/JSON as the spec writes it: the SDK's protobuf request, ids as hex (not protobuf's base64)."""
    doc = json_format.MessageToDict(encode_spans(readable_spans(records, "loomgate", {"host.name": "h1"})))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in span:
                        span[k] = hex_id(span[k])
    path.write_text(json.dumps(doc, indent=1))


async def test_imported_spans_match_live_rollups(gateway: Any, upstream_server: Any, fresh: Any,
                                                 tmp_path: Path) -> None:
    records = await gateway_records(gateway, upstream_server)
    live = fresh()
    insert_calls(live, records, service_name="loomgate", resource={"host.name": "h1"})
    expected = rollups(live)
    assert sum(r[3] for r in expected["loomgate_sla_1m"]) == 60
    assert any(r[15] > 0 for r in expected["loomgate_calls_1m"]), "no sync lag measured"
    jsonl, parquet, otlp = tmp_path / "spans.jsonl", tmp_path / "spans.parquet", tmp_path / "otlp.json"
    assert live.query("SELECT count() FROM otel_traces").rows[0][0] > 60  # SERVER and CLIENT spans
    for path, fmt in ((jsonl, "JSONEachRow"), (parquet, "Parquet")):
        # What a Collector-schema export looks like: every stored column, as ClickHouse writes it.
        path.write_bytes(live._client.raw_query(f"SELECT * FROM otel_traces FORMAT {fmt}"))
    otlp_json_export(records, otlp)
    for path in (jsonl, parquet, otlp):
        target = fresh()
        result = import_spans(target, path)
        assert result.server_spans == 60 and not result.warnings
        assert rollups(target) == expected, path.name
        again = import_spans(target, path)  # the same file twice: deduplicated by its content
        assert again.rows == result.rows
        assert rollups(target) == expected, f"{path.name} imported twice"


def _foreign(ts: dt.datetime, kind: str, attrs: dict[str, str], res: dict[str, str], status: str = "Unset",
             ms: int = 10) -> dict[str, Any]:
    return {"Timestamp": ts.strftime("%Y-%m-%d %H:%M:%S.%f"), "TraceId": uuid.uuid4().hex,
            "SpanId": uuid.uuid4().hex[:16], "SpanName": "GET", "SpanKind": kind,
            "ServiceName": res["service.name"],
            "ResourceAttributes": res, "SpanAttributes": attrs, "Duration": ms * 10**6, "StatusCode": status}


def test_foreign_spans_roll_up_by_the_mapping(fresh: Any, tmp_path: Path) -> None:
    store = fresh()
    set_span_mapping(store, {"partner": ["tenant.id", "partner.id"]})
    t0 = dt.datetime(2026, 1, 5, 10, 0, 30)
    res = {"service.name": "shop-api", "tenant.id": "t9"}
    rows = [
        _foreign(t0, "Server", {"http.route": "/items/{id}", "http.response.status_code": "200",
                                "artisan.id": "a1"}, res),
        _foreign(t0, "Server", {"http.route": "/items/{id}", "http.status_code": "503"}, res, "Error", 30),
        _foreign(t0, "Server", {"http.route": "/cart", "http.response.status_code": "404",
                                "partner.id": "p2"}, {"service.name": "shop-api"}),
        _foreign(t0, "Client", {"http.route": "/items/{id}"}, res),  # CLIENT spans never count as calls
    ]
    path = tmp_path / "foreign.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert import_spans(store, path).server_spans == 3
    got = store.query("SELECT partner, artisan, route, upstream, sum(calls), sum(errors), sum(errors_4xx), "
                      "sum(errors_5xx) FROM loomgate_calls_1m GROUP BY ALL ORDER BY ALL").rows
    assert got == [("p2", "", "/cart", "shop-api", 1, 1, 1, 0),
                   ("t9", "", "/items/{id}", "shop-api", 1, 1, 0, 1),
                   ("t9", "a1", "/items/{id}", "shop-api", 1, 0, 0, 0)]
    assert store.query("SELECT route, sum(calls), sum(bad) FROM loomgate_sla_1m GROUP BY ALL ORDER BY ALL"
                       ).rows == [("/cart", 1, 0), ("/items/{id}", 2, 1)]


def test_old_rows_warn_with_count_and_range(fresh: Any, tmp_path: Path) -> None:
    store = fresh(ttl_days=30)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    res = {"service.name": "svc"}
    old = [now - dt.timedelta(days=100), now - dt.timedelta(days=60)]
    rows = [_foreign(t, "Server", {"http.route": "/x"}, res) for t in [*old, now - dt.timedelta(hours=1)]]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = import_spans(store, path)
    assert [(w.table, w.ttl_days, w.rows) for w in result.warnings] == [("otel_traces", 30, 2)]
    msg = result.warnings[0].message()
    assert f"from {old[0]:%Y-%m-%d %H:%M:%S}" in msg and f"to {old[1]:%Y-%m-%d %H:%M:%S}" in msg
    assert "--ttl" in msg
    # The rollups keep them (their TTL is at least 400 days).
    assert store.query("SELECT sum(calls) FROM loomgate_calls_1m").rows[0][0] == 3


def test_map_renames_and_column_problems_come_in_one_pass(fresh: Any, tmp_path: Path) -> None:
    store = fresh()
    row = _foreign(dt.datetime(2026, 1, 5, 10), "Server", {"http.route": "/m"}, {"service.name": "svc"})
    row["start"], row["service"] = row.pop("Timestamp"), row.pop("ServiceName")
    path = tmp_path / "renamed.jsonl"
    path.write_text(json.dumps(row) + "\n")
    result = import_spans(store, path, mapping={"start": "Timestamp", "service": "ServiceName"})
    assert result.rows == 1
    assert store.query("SELECT ServiceName, toString(Timestamp) FROM otel_traces").rows == [
        ("svc", "2026-01-05 10:00:00.000000000")]
    bad = dict(row, colour="red", weight=3)
    del bad["Duration"], bad["SpanKind"]
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(SpanImportError) as err:
        import_spans(store, path, mapping={"start": "Timestamp", "nope": "TraceId"})
    text = str(err.value)
    for part in ("column colour: unknown column", "column weight: unknown column", "service",
                 "--map nope=TraceId: the file has no column 'nope'",
                 "missing required column(s): SpanKind, ServiceName, Duration", "nothing was imported"):
        assert part in text, (part, text)
    assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 1
