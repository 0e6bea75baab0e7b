"""The per-day call rollup (loomgate_calls_1d): it holds what the per-minute rollup holds, drops replays like
it, is backfilled when its schema file is applied to a store that already has calls, and the queries that
read whole days from it and partial days from loomgate_calls_1m count every call of a window once."""

from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import pytest

from collectors.generate import build_artisans, call_batches, load_effects, make_plan
from collectors.querylib import run_query_sync
from collectors.record import CallRecord
from collectors.rows import insert_calls
from collectors.schema import SCHEMA_DIR, RenderContext, migrate, rendered_statements, schema_files
from collectors.store import Store
from gateway.config import TelemetryConfig

END = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
DAILY_VERSION = 6
EXACT_STATES_VERSION = 14  # the histogram states, added to the per-day rollup too

COUNTERS = ("calls", "errors", "errors_4xx", "errors_5xx", "errors_gateway", "errors_upstream", "aborted",
            "sync_lag_measured", "sync_lag_invalid", "bytes_in", "bytes_out")


def _records(n: int, seed: int) -> list[CallRecord]:
    """n generated calls spread over the generator's call history (weeks of days) before END."""
    plan = make_plan(1.0, seed, calls=n, artisans=12, end=END)
    eff = load_effects()
    return [rec for batch in call_batches(plan, eff, build_artisans(plan, eff)) for rec in batch]


def _store_calls(store: Store, recs: list[CallRecord], prefix: str, size: int = 700) -> None:
    for i in range(0, len(recs), size):
        insert_calls(store, recs[i:i + size], service_name="loomgate", resource={}, token=f"{prefix}{i}")


def _per_day(store: Store, table: str) -> dict[tuple, tuple]:
    day = "toDate(minute, 'UTC')" if table == "loomgate_calls_1m" else "day"
    sums = ", ".join(f"sum({c})" for c in COUNTERS)
    res = store.query(
        f"SELECT {day} AS d, partner, artisan, route, upstream, {sums}, max(latency_max_ms), "
        f"round(sum(latency_sum_ms), 3), quantilesBFloat16Merge(0.5, 0.95)(latency_hist_ms), "
        f"quantileBFloat16Merge(0.95)(sync_lag_hist_ms) "
        f"FROM {table} GROUP BY d, partner, artisan, route, upstream")
    return {tuple(r[:5]): tuple(r[5:]) for r in res.rows}


def _migrate(store: Store, directory: Path = SCHEMA_DIR) -> list[str]:
    return migrate(store, TelemetryConfig(store=store.dsn, database=store.database, ttl_days=0), directory)


def _assert_same_days(store: Store) -> None:
    minute, day = _per_day(store, "loomgate_calls_1m"), _per_day(store, "loomgate_calls_1d")
    assert minute.keys() == day.keys()
    for key, m in minute.items():
        d = day[key]
        # counters, max, sums and the merged histogram states, all exactly (NaN: no sync lag measured)
        assert d[:-1] == m[:-1], key
        assert d[-1] == m[-1] or (math.isnan(d[-1]) and math.isnan(m[-1])), key


def test_daily_rollup_holds_the_minute_rollup_per_day(kpi_store: Store) -> None:
    recs = _records(4000, seed=5)
    _store_calls(kpi_store, recs, "d")
    days = kpi_store.query("SELECT uniqExact(day), sum(calls) FROM loomgate_calls_1d").rows[0]
    assert days[0] > 20 and days[1] == len(recs)
    _assert_same_days(kpi_store)


def test_replayed_batches_are_dropped_in_the_daily_rollup(kpi_store: Store) -> None:
    recs = _records(1500, seed=6)
    _store_calls(kpi_store, recs, "r")
    once = kpi_store.query("SELECT sum(calls), sum(bytes_out) FROM loomgate_calls_1d").rows[0]
    _store_calls(kpi_store, recs, "r")  # the same tokens: a spool replay
    assert kpi_store.query("SELECT sum(calls), sum(bytes_out) FROM loomgate_calls_1d").rows[0] == once
    _store_calls(kpi_store, recs, "other")  # new tokens are new batches, so the check above can fail
    twice = kpi_store.query("SELECT sum(calls), sum(bytes_out) FROM loomgate_calls_1d").rows[0]
    assert twice == (2 * once[0], 2 * once[1])


def test_migrate_backfills_the_daily_rollup_once(store: Store, tmp_path: Path) -> None:
    before, upto_daily = tmp_path / "before", tmp_path / "daily"
    for d in (before, upto_daily):
        d.mkdir()
    for sf in schema_files():
        if sf.version != EXACT_STATES_VERSION:  # the histogram states came after the per-day rollup
            shutil.copy(sf.path, upto_daily / sf.path.name)
            if sf.version != DAILY_VERSION:
                shutil.copy(sf.path, before / sf.path.name)
    _migrate(store, before)  # a store from before the per-day rollup existed
    recs = _records(2500, seed=7)
    _store_calls(store, recs[:1500], "old")

    applied = _migrate(store, upto_daily)
    assert [int(n[:3]) for n in applied] == [DAILY_VERSION]
    assert store.query("SELECT sum(calls) FROM loomgate_calls_1d").rows[0][0] == 1500
    # The backfill statement guards itself: run again on a filled table it adds nothing.
    daily = next(sf for sf in schema_files() if sf.version == DAILY_VERSION)
    backfill = [s for s in rendered_statements(daily, RenderContext(database=store.database))
                if s.startswith("INSERT")]
    assert len(backfill) == 1
    store.command(backfill[0])
    assert store.query("SELECT sum(calls) FROM loomgate_calls_1d").rows[0][0] == 1500

    _store_calls(store, recs[1500:2000], "mid")  # TDigest-era rows, then the exact states and their backfill
    assert [int(n[:3]) for n in _migrate(store)] == [EXACT_STATES_VERSION]
    _store_calls(store, recs[2000:], "new")  # and from now on the views keep both rollups up to date
    assert store.query("SELECT sum(calls) FROM loomgate_calls_1d").rows[0][0] == len(recs)
    _assert_same_days(store)


def _window_calls(store: Store, start: dt.datetime, end: dt.datetime, *, with_artisan: bool = False) -> int:
    """Calls in [start, end) the way the per-minute rollup alone counts them (the reference)."""
    res = store.query(
        "SELECT sum(calls) FROM loomgate_calls_1m WHERE minute >= toStartOfMinute({s:DateTime64(3, 'UTC')}) "
        "AND minute < {e:DateTime64(3, 'UTC')} AND (NOT {a:Bool} OR artisan != '')",
        {"s": start, "e": end, "a": with_artisan})
    return int(res.rows[0][0] or 0)


WINDOWS = [
    ("2026-01-10T00:00:00+00:00", "2026-01-20T00:00:00+00:00"),  # whole days only
    ("2026-01-10T07:13:29.500+00:00", "2026-01-20T16:41:07.250+00:00"),  # partial days at both edges
    ("2026-01-12T01:00:00+00:00", "2026-01-12T05:30:30+00:00"),  # inside one day
    ("2026-01-12T23:00:00+00:00", "2026-01-14T00:00:30+00:00"),  # one whole day between partial ones
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_windows_count_every_call_once(kpi_store: Store, start: str, end: str) -> None:
    _store_calls(kpi_store, _records(6000, seed=8), "w")
    s, e = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    expected = _window_calls(kpi_store, s, e)
    assert expected > 0
    health = run_query_sync(kpi_store, "integration_health", {"start": start, "end": end, "limit": "100000"})
    assert sum(r["calls"] for r in health.dicts()) == expected
    card = {r["benchmark"]: r for r in run_query_sync(
        kpi_store, "benchmark_scorecard", {"start": start, "end": end}).dicts()}
    assert card["integration uptime"]["basis"] == f"{expected} calls (no health checks)"
    # engagement: this window and the previous one of the same length, split at start's minute
    split = s.replace(second=0, microsecond=0)
    total = next(r for r in run_query_sync(kpi_store, "engagement", {"start": start, "end": end}).dicts()
                 if r["artisan"] == "*")
    assert (total["calls"], total["calls_prev"]) == (
        _window_calls(kpi_store, split, e, with_artisan=True),
        _window_calls(kpi_store, s - (e - s), split, with_artisan=True))
