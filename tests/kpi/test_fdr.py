"""Benjamini-Hochberg in health_vs_retention: over repeated seeds of a small generated history, the planted
correlations are flagged and the share of false findings stays at or under the 5 % FDR.

Every seed's history is generated as before (calls, orders, carts, surveys of 60 artisans over 30 days), each
in its own 30-day window, the windows 40 days apart, all in one store: the query runs once per seed on that
seed's window, so no seed sees another's rows and the store is filled once instead of once per seed.  Only
what the grid reads is stored (the calls' rollups, orders, cart events, surveys); the KPI ids are made unique
per seed, since re-imports replace rows with the same id.  Generating a seed's rows (Python) takes longer
than storing them, so two worker processes generate while this one stores.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from collectors.generate import Effects, build_artisans, call_batches, kpi_rows, load_effects, make_plan
from collectors.kpi import KPI_TABLES
from collectors.querylib import run_query_sync
from collectors.record import CallRecord
from collectors.rows import insert_calls
from collectors.store import Store
from tests.kpi.conftest import END, migrate_db, one_month

SEEDS = range(100, 120)
SPACING = dt.timedelta(days=40)  # 30-day windows with 10 days between (cart events are read ±1 day)
PLANTED = {("sync_lag_p95_s", "cart_abandonment"), ("sync_lag_p95_s", "repeat_purchase")}
# Abandoned carts bring exit-intent surveys, answered less often than post-purchase ones: the planted
# abandonment effect moves the survey response rate too, so that pair is neither planted nor null.
INDUCED = {("sync_lag_p95_s", "survey_response_rate")}
GRID_TABLES = ("orders", "cart_events", "survey_responses")  # the KPI tables health_vs_retention reads
ID_COLUMNS = ("order_id", "cart_id", "survey_id", "buyer_id")
WORKERS = 2
AHEAD = 4  # seeds generated ahead of the store
# Views that build rows the grid never reads; dropped in this test's database only, to load faster.
UNREAD_VIEWS = ("loomgate_calls_ingest_client_mv", "otel_traces_trace_id_ts_mv", "loomgate_upstream_1m_mv",
                "loomgate_upstream_1m_foreign_mv", "loomgate_sla_1m_mv", "loomgate_sla_1m_foreign_mv",
                "loomgate_calls_1m_foreign_mv")


def _seed_end(i: int) -> dt.datetime:
    return END - i * SPACING


def _unique_ids(seed: int, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    at = [i for i, c in enumerate(cols) if c in ID_COLUMNS]
    prefix = f"s{seed}-"
    return [tuple(prefix + v if i in at and v else v for i, v in enumerate(row)) for row in rows]


@dataclass(frozen=True)
class SeedHistory:
    seed: int
    calls: list[list[CallRecord]]
    kpis: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]  # table -> (columns, rows)


def _history(i: int) -> SeedHistory:
    """Seed number i's rows, built by the generator's own code (runs in a worker process)."""
    eff: Effects = one_month(load_effects())
    seed = SEEDS[i]
    plan = make_plan(1.0, seed, calls=8000, orders=8000, artisans=60, end=_seed_end(i))
    artisans = build_artisans(plan, eff)
    calls = list(call_batches(plan, eff, artisans))
    tables = kpi_rows(plan, eff, artisans).tables
    kpis = {name: (tables[name][0], _unique_ids(seed, *tables[name])) for name in GRID_TABLES}
    return SeedHistory(seed, calls, kpis)


def _in_order(pool: Executor, pending: deque[Future[SeedHistory]]) -> Iterator[SeedHistory]:
    """The histories in seed order, with at most AHEAD of them generated and not yet stored (memory)."""
    submitted = len(pending)
    while pending:
        h = pending.popleft().result()
        if submitted < len(SEEDS):
            pending.append(pool.submit(_history, submitted))
            submitted += 1
        yield h


def _load(store: Store, histories: Iterator[SeedHistory]) -> None:
    for view in UNREAD_VIEWS:
        store.command(f"DROP VIEW IF EXISTS `{view}`")
    for h in histories:
        for batch in h.calls:
            insert_calls(store, batch, service_name="loomgate", resource={"service.name": "loomgate"})
        for name, (cols, rows) in h.kpis.items():
            store.insert(KPI_TABLES[name], rows, cols)


@pytest.mark.slow
def test_bh_flags_planted_pairs_and_keeps_fdr(chdb_dsn: str) -> None:
    store = Store(chdb_dsn, "fdr_" + uuid.uuid4().hex[:10])
    false_share, hits = [], dict.fromkeys(PLANTED, 0)
    spawn = multiprocessing.get_context("spawn")  # this process runs ClickHouse's threads: never fork it
    try:
        with ProcessPoolExecutor(max_workers=WORKERS, mp_context=spawn) as pool:
            # the first histories are generated while the schema is applied
            first = deque(pool.submit(_history, i) for i in range(AHEAD))
            migrate_db(store)
            _load(store, _in_order(pool, first))
        for i, _seed in enumerate(SEEDS):
            end = _seed_end(i)
            rows = run_query_sync(store, "health_vs_retention", {
                "start": (end - dt.timedelta(days=30)).isoformat(), "end": end.isoformat(),
                "min_artisans": "30"}).dicts()
            assert len(rows) == 15  # the whole grid, pairs without data included
            assert max(r["n"] for r in rows) <= 60  # this seed's artisans only
            flagged = {(r["metric"], r["kpi"]) for r in rows
                       if r["q_value"] is not None and r["q_value"] <= 0.05}
            assert all(r["finding"].startswith("higher ") == ((r["metric"], r["kpi"]) in flagged)
                       for r in rows)
            for pair in PLANTED & flagged:
                hits[pair] += 1
            false = flagged - PLANTED - INDUCED
            false_share.append(len(false) / max(len(flagged), 1))
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{store.database}`")
    assert sum(false_share) / len(false_share) <= 0.05, false_share
    assert hits[("sync_lag_p95_s", "cart_abandonment")] == len(SEEDS)
    # -10 pp repeat purchase across 60 artisans is a weak signal: BH finds it in about two seeds of three.
    assert hits[("sync_lag_p95_s", "repeat_purchase")] >= 0.6 * len(SEEDS), hits
