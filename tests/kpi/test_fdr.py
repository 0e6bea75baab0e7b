"""Benjamini-Hochberg in health_vs_retention: over repeated seeds of a small generated history, the planted
correlations are flagged and the share of false findings stays at or under the 5 % FDR."""

from __future__ import annotations

import copy
import datetime as dt
import uuid

import pytest

from collectors.generate import Effects, build_artisans, call_batches, kpi_rows, load_effects, make_plan
from collectors.kpi import KPI_TABLES
from collectors.querylib import run_query_sync
from collectors.rows import insert_calls
from collectors.store import Store
from tests.kpi.conftest import END, migrate_db

SEEDS = range(100, 120)
PLANTED = {("sync_lag_p95_s", "cart_abandonment"), ("sync_lag_p95_s", "repeat_purchase")}
# Abandoned carts bring exit-intent surveys, answered less often than post-purchase ones: the planted
# abandonment effect moves the survey response rate too, so that pair is neither planted nor null.
INDUCED = {("sync_lag_p95_s", "survey_response_rate")}


def _one_month(eff: Effects) -> Effects:
    """The planted health effects over one 30-day month, without the dated changes (out of range)."""
    raw = copy.deepcopy(eff.raw)
    raw.update(history_days=30, call_days=30, block_days=30, outages={})
    for key in ("integration_change", "control_change", "placebo_change", "common_drift"):
        raw["effects"][key]["days_before_end"] = 400
    return Effects(raw, eff.path)


def _load(store: Store, seed: int, eff: Effects) -> None:
    for (name,) in store.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND "
                               "engine LIKE '%MergeTree' AND name != 'loomgate_schema_migrations'").rows:
        store.command(f"TRUNCATE TABLE `{name}`")
    plan = make_plan(1.0, seed, calls=8000, orders=8000, artisans=60, end=END)
    artisans = build_artisans(plan, eff)
    for batch in call_batches(plan, eff, artisans):
        insert_calls(store, batch, service_name="loomgate", resource={"service.name": "loomgate"})
    for name, (cols, rows) in kpi_rows(plan, eff, artisans).tables.items():
        store.insert(KPI_TABLES[name], rows, cols)


@pytest.mark.slow
def test_bh_flags_planted_pairs_and_keeps_fdr(chdb_dsn: str) -> None:
    store = Store(chdb_dsn, "fdr_" + uuid.uuid4().hex[:10])
    migrate_db(store)
    eff = _one_month(load_effects())
    false_share, hits = [], dict.fromkeys(PLANTED, 0)
    try:
        for seed in SEEDS:
            _load(store, seed, eff)
            rows = run_query_sync(store, "health_vs_retention", {
                "start": (END - dt.timedelta(days=30)).isoformat(), "end": END.isoformat(),
                "min_artisans": "30"}).dicts()
            assert len(rows) == 15  # the whole grid, pairs without data included
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
