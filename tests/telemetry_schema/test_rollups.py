"""Rollup materialized views agree with the records that produced the raw spans."""

from __future__ import annotations

from collections import Counter

from collectors.record import CallRecord
from collectors.rows import SPAN_COLUMNS, insert_settings, span_rows
from collectors.store import Store
from tests.quantile_bound import rank_sample, within_bound

from .conftest import RecordFactory


def _insert_in_batches(store: Store, recs: list[CallRecord], batches: int) -> None:
    size = -(-len(recs) // batches)
    for i in range(batches):
        part = recs[i * size:(i + 1) * size]
        store.insert("otel_traces", span_rows(part, "loomgate", {}), SPAN_COLUMNS,
                     settings=insert_settings(f"rollup-{i}"))


def _key(r: CallRecord) -> tuple[str, str, str, str]:
    return (r.partner_id, r.artisan_id, r.route_name, r.upstream)


def test_calls_rollup_counts_are_exact(schema_store: Store, records: RecordFactory) -> None:
    recs = records(4000, seed=11)
    _insert_in_batches(schema_store, recs, 5)
    res = schema_store.query(
        "SELECT partner, artisan, route, upstream, sum(calls), sum(errors), sum(errors_4xx), "
        "sum(errors_5xx), sum(errors_gateway), sum(errors_upstream), sum(aborted), sum(sync_lag_measured), "
        "sum(sync_lag_invalid), sum(bytes_in), sum(bytes_out) FROM loomgate_calls_1m "
        "GROUP BY partner, artisan, route, upstream")
    got = {tuple(r[:4]): tuple(r[4:]) for r in res.rows}
    want: dict[tuple[str, str, str, str], list[int]] = {}
    for r in recs:
        c = want.setdefault(_key(r), [0] * 11)
        for i, flag in enumerate((
            True, bool(r.error_source), 400 <= r.status < 500, r.status >= 500, r.error_source == "gateway",
            r.error_source == "upstream", r.status == 0, r.sync_lag_ms is not None and not r.sync_lag_invalid,
            r.sync_lag_invalid,
        )):
            c[i] += int(flag)
        c[9] += r.request_body_size
        c[10] += r.response_body_size
    assert got == {k: tuple(v) for k, v in want.items()}


def test_calls_rollup_minutes_match_raw_spans(schema_store: Store, records: RecordFactory) -> None:
    recs = records(3000, seed=12)
    _insert_in_batches(schema_store, recs, 3)
    rollup = schema_store.query(
        "SELECT minute, sum(calls) FROM loomgate_calls_1m GROUP BY minute ORDER BY minute")
    raw = schema_store.query(
        "SELECT toStartOfMinute(Timestamp) AS m, count() FROM otel_traces WHERE SpanKind = 'Server' "
        "GROUP BY m ORDER BY m")
    assert rollup.rows == raw.rows
    assert len(rollup.rows) >= 10
    per_minute = Counter((r.start_ns // 60_000_000_000) for r in recs)
    assert sorted(per_minute.values()) == sorted(n for _, n in rollup.rows)


def test_quantiles_within_the_documented_bound(schema_store: Store, records: RecordFactory) -> None:
    recs = records(4000, seed=13)
    _insert_in_batches(schema_store, recs, 4)
    res = schema_store.query(
        "SELECT route, quantilesBFloat16Merge(0.5, 0.9, 0.95)(latency_hist_ms), "
        "quantileBFloat16Merge(0.95)(sync_lag_hist_ms), sum(latency_sum_ms), max(latency_max_ms) "
        "FROM loomgate_calls_1m GROUP BY route")
    assert len(res.rows) == 2
    for route, (p50, p90, p95), lag95, lat_sum, lat_max in res.rows:
        mine = [r for r in recs if r.route_name == route]
        ms = [r.duration_ns / 1e6 for r in mine]
        for got, q in ((p50, 0.5), (p90, 0.9), (p95, 0.95)):
            assert within_bound(got, ms, q), (route, q, got, rank_sample(ms, q))
        lags = [r.sync_lag_ms for r in mine if r.sync_lag_ms is not None and not r.sync_lag_invalid]
        assert within_bound(lag95, lags, 0.95), (route, lag95, rank_sample(lags, 0.95))
        assert abs(lat_sum - sum(ms)) <= 1e-6 * sum(ms)
        assert lat_max == max(ms)


def test_upstream_rollup_good_events_are_exact_for_round_thresholds(
    schema_store: Store, records: RecordFactory
) -> None:
    recs = records(3000, seed=14)
    _insert_in_batches(schema_store, recs, 3)
    for threshold_ms in (5, 10, 25, 40, 100, 250, 1500):
        t_ns = threshold_ms * 1_000_000
        res = schema_store.query(
            "SELECT upstream, arraySum(arrayMap((le, n) -> if(le <= {t:UInt64}, n, 0), h.1, h.2)) "
            "FROM (SELECT upstream, sumMapMerge(latency_le_ns) AS h FROM loomgate_upstream_1m "
            "      GROUP BY upstream)",
            {"t": t_ns})
        good = Counter(dict(res.rows))
        want = Counter(r.upstream for r in recs if r.duration_ns <= t_ns)
        want.update({r.upstream: 0 for r in recs})
        assert good == want, threshold_ms
    totals = schema_store.query("SELECT upstream, sum(calls), sum(errors_5xx) FROM loomgate_upstream_1m "
                                "GROUP BY upstream ORDER BY upstream")
    want_totals = []
    for u in sorted({r.upstream for r in recs}):
        mine = [r for r in recs if r.upstream == u]
        want_totals.append((u, len(mine), sum(1 for r in mine if r.status >= 500)))
    assert totals.rows == want_totals


def test_server_spans_roll_up_once_each_client_spans_never(schema_store: Store,
                                                           records: RecordFactory) -> None:
    """Loomgate's SERVER spans roll up by its own attributes; other SERVER spans (no loomgate.request_id)
    by the span mapping (queries/schema/013), here under upstream = resource service.name; CLIENT spans
    of either kind are never calls."""
    recs = records(50, seed=15)
    rows = span_rows(recs, "loomgate", {})
    foreign = [(*row[:6], "Server", "other-svc", {"service.name": "other-svc"}, "", "",
                {"http.response.status_code": "200"}, *row[12:]) for row in rows[:5]]
    foreign_client = [(*row[:6], "Client", "other-svc", {"service.name": "other-svc"}, "", "", {}, *row[12:])
                      for row in rows[:3]]
    schema_store.insert("otel_traces", rows + foreign + foreign_client, SPAN_COLUMNS)
    res = schema_store.query("SELECT upstream = 'other-svc', sum(calls) FROM loomgate_calls_1m "
                             "GROUP BY ALL ORDER BY ALL")
    assert res.rows == [(False, len(recs)), (True, 5)]
