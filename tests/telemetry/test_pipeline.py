"""The telemetry pipeline end to end: gateway-side sink → writer process → real embedded ClickHouse (chDB).

Store outages are real failures of the store: a table is detached with ``DETACH TABLE`` through the writer
(inserts then fail with UNKNOWN_TABLE until ``ATTACH TABLE``), or the store DSN points at a closed port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from bisect import bisect_left
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from collectors.exporter import Telemetry, TelemetryError, start_telemetry
from collectors.metrics import DURATION_BUCKETS
from collectors.record import CallRecord
from collectors.store import StoreError

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2}
SERVER_ROWS = "SELECT count() FROM otel_traces WHERE SpanKind = 'Server'"
SERVER_IDS = "SELECT uniqExact(SpanId) FROM otel_traces WHERE SpanKind = 'Server'"


async def submit_steadily(tel: Telemetry, recs: list[CallRecord], per_tick: int) -> None:
    """Submit like a proxy would: a few records, yield to the loop, repeat."""
    for i in range(0, len(recs), per_tick):
        for r in recs[i:i + per_tick]:
            tel.sink.submit(r)
        await asyncio.sleep(0.01)


async def test_mixed_records_become_exact_span_and_metric_rows(tmp_path: Path, kit: SimpleNamespace) -> None:
    recs = kit.make_records(2000, seed=7)
    tel = await start_telemetry(kit.make_config(tmp_path, batch_size=300), **FAST)
    try:
        assert await tel.ready()
        await submit_steadily(tel, recs, 97)
        assert await tel.flush()
        assert tel.store is not None
        server = await tel.store.query(
            "SELECT SpanId, TraceId, ParentSpanId, SpanName, Duration, StatusCode, SpanAttributes "
            "FROM otel_traces WHERE SpanKind = 'Server'")
        by_id = {row[0]: row for row in server.rows}
        assert len(server.rows) == len(recs) == len(by_id)
        for r in recs:
            _, trace_id, parent, name, duration, status_code, attrs = by_id[r.span_id]
            assert (trace_id, parent, duration) == (r.trace_id, r.parent_span_id, r.duration_ns)
            assert name == (f"{r.method} {r.route_template}" if r.route_template else r.method)
            assert attrs["http.response.status_code"] == str(r.status)
            assert attrs["loomgate.request_id"] == r.request_id
            assert status_code == ("Error" if r.status >= 500 else "Unset")
        called = [r for r in recs if r.upstream_span_id]
        client = await tel.store.query(
            "SELECT SpanId, ParentSpanId FROM otel_traces WHERE SpanKind = 'Client'")
        assert sorted(client.rows) == sorted((r.upstream_span_id, r.span_id) for r in called)

        hist = await tel.store.query(
            "SELECT Attributes['http.response.status_code'] AS code, sum(Count), sumForEach(BucketCounts), "
            "sum(Sum), min(Min), max(Max), any(ExplicitBounds), groupUniqArrayArray(mapKeys(Attributes)) "
            "FROM otel_metrics_histogram WHERE MetricName = 'http.server.request.duration' GROUP BY code")
        got = {row[0]: row[1:] for row in hist.rows}
        for status in {r.status for r in recs}:
            durations = [r.duration_ns / 1e9 for r in recs if r.status == status]
            buckets = [0] * (len(DURATION_BUCKETS) + 1)
            for d in durations:
                buckets[bisect_left(DURATION_BUCKETS, d)] += 1
            n, bucket_sums, total, lo, hi, bounds, keys = got[str(status)]
            assert n == len(durations)
            assert list(bucket_sums) == buckets
            assert total == pytest.approx(sum(durations))
            assert (lo, hi) == (min(durations), max(durations))
            assert list(bounds) == list(DURATION_BUCKETS)
            assert not {"partner.id", "artisan.id", "url.path"} & set(keys)  # low cardinality only
        assert tel.counters() == {"queued": 2000, "written": 2000, "spooled": 0, "dropped": 0, "replayed": 0,
                                  "dead_lettered": 0, "replay_ms": 0, "writer_restarts": 0}
    finally:
        await tel.close()


async def test_gauge_snapshots_are_written(tmp_path: Path, kit: SimpleNamespace) -> None:
    tel = await start_telemetry(kit.make_config(tmp_path), **FAST)
    try:
        tel.gauges_provider = lambda: {"active_requests": 7,
                                       "circuit_states": {"inventory": "open", "orders": "closed"}}
        tel.sink.submit(kit.make_records(1)[0])
        assert await tel.flush()
        assert tel.store is not None
        res = await tel.store.query(
            "SELECT MetricName, Attributes['loomgate.upstream'], argMax(Value, TimeUnix) "
            "FROM otel_metrics_gauge GROUP BY 1, 2 ORDER BY 1, 2")
        assert res.rows == [("http.server.active_requests", "", 7.0),
                            ("loomgate.circuit_breaker.state", "inventory", 2.0),
                            ("loomgate.circuit_breaker.state", "orders", 0.0)]
    finally:
        await tel.close()


async def test_store_outage_under_load_loses_and_duplicates_nothing(tmp_path: Path,
                                                                   kit: SimpleNamespace) -> None:
    """Spans are inserted but the histogram table is missing: every batch fails half-way and is replayed
    whole, so without deduplication the span rows would be doubled."""
    recs = kit.make_records(3000, seed=11)
    tel = await start_telemetry(kit.make_config(tmp_path, batch_size=200), **FAST)
    assert tel.store is not None
    try:
        await submit_steadily(tel, recs[:500], 50)
        assert await tel.flush()
        assert tel.counters()["written"] == 500
        await tel.store.command("DETACH TABLE otel_metrics_histogram")
        await submit_steadily(tel, recs[500:2500], 50)
        assert await tel.flush()
        outage = tel.counters()
        assert outage["spooled"] > 0 and outage["dropped"] == 0
        # spans of the failed batches did reach otel_traces before the histogram insert failed
        assert await kit.count(tel, SERVER_ROWS) > 500
        await tel.store.command("ATTACH TABLE otel_metrics_histogram")
        await submit_steadily(tel, recs[2500:], 50)
        await kit.wait_for(lambda: kit.spool_drained(tel), what="spool replay")
        assert await tel.flush()
        assert await kit.count(tel, SERVER_ROWS) == 3000
        assert await kit.count(tel, SERVER_IDS) == 3000
        assert await kit.count(
            tel, "SELECT sum(Count) FROM otel_metrics_histogram WHERE MetricName = "
                 "'http.server.request.duration'") == 3000
        # the per-minute rollup fed by a materialized view dropped the replayed blocks too
        assert await kit.count(tel, "SELECT sum(calls) FROM loomgate_calls_1m") == 3000
        c = tel.counters()
        assert c["written"] == 3000 and c["replayed"] == c["spooled"] >= outage["spooled"]
    finally:
        await tel.close()


@pytest.mark.parametrize("insert_max_wait", [0.0, 60.0], ids=["insert-each-batch", "insert-held-batches"])
async def test_spool_budget_overflow_drops_exactly_what_is_counted(tmp_path: Path, kit: SimpleNamespace,
                                                                  insert_max_wait: float) -> None:
    recs = kit.make_records(1200, seed=3)
    # one 100-record batch pickles to ~25 kB: a 90 kB budget holds three of the twelve.  Batches the
    # writer combines are spooled (or dropped) as one unit under one dedup token.
    tel = await start_telemetry(kit.make_config(tmp_path, batch_size=100, batch_window=30.0,
                                                spool_max_bytes=90_000, insert_max_wait=insert_max_wait),
                                **FAST)
    assert tel.store is not None
    try:
        await tel.store.command("DETACH TABLE otel_traces")
        for r in recs:
            tel.sink.submit(r)
        assert await tel.flush()
        c = tel.counters()
        # held or not, batches are only combined as far as the spool could still take them
        assert c["dropped"] > 0 and c["spooled"] > 0
        assert c["dropped"] + c["spooled"] == 1200
        assert c["dropped"] % 100 == 0  # whole batches
        await tel.store.command("ATTACH TABLE otel_traces")
        tel.sink.submit(kit.make_records(1, seed=4)[0])  # live traffic: the write that finds the store back
        assert await tel.flush()
        await kit.wait_for(lambda: kit.spool_drained(tel), what="spool replay")
        stored = await kit.count(tel, SERVER_ROWS)
        assert stored == 1201 - c["dropped"]
        assert tel.counters()["dropped"] == 1201 - stored
        # the drop is also a metric, written once the store answers again
        await kit.wait_for(lambda: kit.count(
            tel, "SELECT toUInt64(argMax(Value, TimeUnix)) FROM otel_metrics_sum WHERE MetricName = "
                 "'loomgate.telemetry.records' AND Attributes['loomgate.pipeline.outcome'] = 'dropped'",
        ), what="pipeline counters")
        dropped_metric = await kit.count(
            tel, "SELECT toUInt64(max(Value)) FROM otel_metrics_sum WHERE MetricName = "
                 "'loomgate.telemetry.records' AND Attributes['loomgate.pipeline.outcome'] = 'dropped'")
        assert dropped_metric == c["dropped"]
    finally:
        await tel.close()


async def test_close_flushes_records_still_in_memory(tmp_path: Path, kit: SimpleNamespace) -> None:
    recs = kit.make_records(777, seed=5)
    cfg = kit.make_config(tmp_path, batch_window=3600.0, batch_size=100_000)
    tel = await start_telemetry(cfg, **FAST)
    for r in recs:
        tel.sink.submit(r)
    await tel.close()
    assert tel.counters()["written"] == 777
    tel2 = await start_telemetry(cfg, **FAST)
    try:
        assert await kit.count(tel2, SERVER_ROWS) == 777
    finally:
        await tel2.close()


async def test_spool_survives_restart_and_replays_exactly_once(tmp_path: Path, kit: SimpleNamespace) -> None:
    recs = kit.make_records(900, seed=9)
    cfg = kit.make_config(tmp_path, batch_size=150)
    tel = await start_telemetry(cfg, **FAST)
    assert tel.store is not None
    await tel.store.command("DETACH TABLE otel_traces")  # not permanent: a restart attaches it again
    await submit_steadily(tel, recs, 60)
    await tel.close()
    assert tel.counters()["spooled"] == 900
    assert list((tmp_path / "spool").glob("*.seg"))  # left for the next start

    tel2 = await start_telemetry(cfg, **FAST)
    try:
        await kit.wait_for(lambda: kit.spool_drained(tel2), what="spool replay after restart")
        assert await kit.count(tel2, SERVER_ROWS) == 900
        assert await kit.count(tel2, SERVER_IDS) == 900
        assert tel2.counters()["replayed"] == 900
    finally:
        await tel2.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_server_store_spools_then_embedded_store_replays(tmp_path: Path,
                                                                          kit: SimpleNamespace) -> None:
    """Server mode against a port nothing listens on: the gateway starts anyway, not ready, and spools."""
    recs = kit.make_records(400, seed=13)
    down = kit.make_config(tmp_path, store=f"http://default:@127.0.0.1:{_closed_port()}/otel")
    tel = await start_telemetry(down, **FAST)
    try:
        assert not await tel.ready()
        assert "127.0.0.1" in tel.start_error
        with pytest.raises(StoreError, match="unavailable"):
            await tel.store.query("SELECT 1")  # type: ignore[union-attr]
        await submit_steadily(tel, recs, 40)
        assert await tel.flush()
        assert tel.counters()["spooled"] == 400
    finally:
        await tel.close()

    up = kit.make_config(tmp_path)  # same spool directory, embedded store
    tel2 = await start_telemetry(up, **FAST)
    try:
        await kit.wait_for(lambda: kit.spool_drained(tel2), what="spool replay")
        assert await kit.count(tel2, SERVER_ROWS) == 400
    finally:
        await tel2.close()


async def test_writer_crash_spills_on_gateway_side(tmp_path: Path, kit: SimpleNamespace) -> None:
    recs = kit.make_records(500, seed=17)
    cfg = kit.make_config(tmp_path)
    tel = await start_telemetry(cfg, **FAST)
    await submit_steadily(tel, recs[:200], 50)
    assert await tel.flush()
    os.kill(tel.writer_pid, signal.SIGKILL)
    await kit.wait_for(lambda: not tel._alive, what="writer loss detected")
    assert not await tel.ready()
    await submit_steadily(tel, recs[200:], 50)
    assert await tel.flush()
    c = tel.counters()
    assert c["spooled"] == 300 and c["dropped"] == 0
    # /metrics' request series count every record once: 200 sent to the writer, 300 spooled by the gateway
    assert sum(series.count for series in tel.request_stats.snapshot().values()) == 500
    await tel.close()

    tel2 = await start_telemetry(cfg, **FAST)
    try:
        await kit.wait_for(lambda: kit.spool_drained(tel2), what="spool replay")
        assert await kit.count(tel2, SERVER_ROWS) == 500
    finally:
        await tel2.close()


async def test_batches_sent_then_spilled_are_counted_once_for_metrics(tmp_path: Path,
                                                                      kit: SimpleNamespace) -> None:
    """A batch the writer received but never acknowledged is spilled by the gateway when the writer dies:
    /metrics' request series must not count it twice."""
    recs = kit.make_records(120, seed=23)
    tel = await start_telemetry(kit.make_config(tmp_path), **FAST)
    pid = tel.writer_pid
    os.kill(pid, signal.SIGSTOP)  # the writer reads nothing more and acknowledges nothing
    try:
        await submit_steadily(tel, recs, 40)
        tel._cut()
        total = lambda: sum(s.count for s in tel.request_stats.snapshot().values())  # noqa: E731
        await kit.wait_for(lambda: total() == len(recs), what="every batch sent to the stopped writer")
        assert tel.counters()["spooled"] == 0
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    await kit.wait_for(lambda: not tel._alive, what="writer loss detected")
    assert await tel.flush()
    assert tel.counters()["spooled"] == len(recs)  # every batch went through the spill path too
    assert total() == len(recs)
    await tel.close()


async def test_store_rpc_reports_errors_and_runs_parameterised_queries(tmp_path: Path,
                                                                       kit: SimpleNamespace) -> None:
    tel = await start_telemetry(kit.make_config(tmp_path), **FAST)
    assert tel.store is not None
    try:
        with pytest.raises(StoreError, match=r"UNKNOWN_TABLE|does not exist"):
            await tel.store.query("SELECT * FROM no_such_table")
        res = await tel.store.query("SELECT {a:UInt32} + 1 AS x", {"a": 41})
        assert res.dicts() == [{"x": 42}]
        await tel.store.command("CREATE TABLE t_rpc (k UInt32, v String) ENGINE = MergeTree ORDER BY k")
        await tel.store.insert("t_rpc", [(1, "a"), (2, "b")], ["k", "v"])
        assert await kit.count(tel, "SELECT count() FROM t_rpc") == 2
        results = await asyncio.gather(*(tel.store.query("SELECT {n:UInt8}", {"n": n}) for n in range(20)))
        assert [r.rows[0][0] for r in results] == list(range(20))
    finally:
        await tel.close()
    with pytest.raises(StoreError, match="not running"):
        await tel.store.query("SELECT 1")


async def test_bad_dsn_is_a_start_error(tmp_path: Path, kit: SimpleNamespace) -> None:
    with pytest.raises(TelemetryError, match="unsupported store DSN"):
        await start_telemetry(kit.make_config(tmp_path, store="ftp://example/otel"), **FAST)


def test_records_cover_every_outcome(kit: SimpleNamespace) -> None:
    recs = kit.make_records(len(kit.OUTCOMES) * 3)
    assert Counter(r.status for r in recs) == Counter({o[0]: 3 for o in kit.OUTCOMES})
