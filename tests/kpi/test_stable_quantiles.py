"""Percentiles read from the rollups do not move when ClickHouse merges parts.

The store is filled through many small inserts (each a separate part; merges stopped, as before any
background merge ran), with Loomgate's own spans and spans of another source (the span-mapping views of
schema 013).  Every query that reads a rollup's latency or sync-lag state runs, the rollups are merged with
OPTIMIZE TABLE … FINAL, and every query runs again: the results must be identical, and the percentiles
within the documented bound of the exact ones from the raw span rows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

from collectors import querylib
from collectors.generate import build_artisans, call_batches, kpi_rows, load_effects, make_plan
from collectors.kpi import KPI_TABLES
from collectors.querylib import run_query_sync
from collectors.record import CallRecord
from collectors.rows import SPAN_COLUMNS, insert_calls, span_rows
from collectors.store import Store
from gateway.insights import POINTS_SQL
from tests.grafana.test_dashboards import TimeRange, _panels, expand
from tests.kpi.conftest import END, one_month
from tests.quantile_bound import REL_ERROR, rank_sample

ROLLUPS = ("loomgate_calls_1m", "loomgate_upstream_1m", "loomgate_calls_1d")
START = END - dt.timedelta(days=30)
WINDOW = {"start": START.isoformat(), "end": END.isoformat()}
INSERT_SIZE = 150  # records per insert: one part each in every rollup
FOREIGN = "other-svc"  # upstream of the spans without loomgate.request_id (rolled up by the span mapping)
QUANTILE_STATE = re.compile(r"quantiles?\w*Merge")  # a panel that reads a rollup's quantile state
SLA_PARAMS = {"latency_threshold_ms": "250", "sync_lag_target_ms": "5000", **WINDOW}
Results = dict[str, Any]


def _records() -> list[CallRecord]:
    eff = one_month(load_effects())
    plan = make_plan(1.0, 31, calls=9000, orders=3000, artisans=24, end=END)
    return [r for batch in call_batches(plan, eff, build_artisans(plan, eff)) for r in batch]


def _fill(store: Store, recs: list[CallRecord]) -> None:
    for table in ROLLUPS:
        store.command(f"SYSTEM STOP MERGES {table}")
    for i in range(0, len(recs), INSERT_SIZE):
        insert_calls(store, recs[i:i + INSERT_SIZE], service_name="loomgate", resource={}, token=f"s{i}")
    # Another source's SERVER spans: no loomgate.request_id, upstream from the resource's service.name.
    foreign = [(*row[:6], "Server", FOREIGN, {"service.name": FOREIGN}, "", "",
                {"http.response.status_code": "200", "http.route": "/v2/things"}, *row[12:])
               for row in span_rows(recs[:3000], "loomgate", {}) if row[6] == "Server"]
    for i in range(0, len(foreign), INSERT_SIZE):
        store.insert("otel_traces", foreign[i:i + INSERT_SIZE], SPAN_COLUMNS)
    eff = one_month(load_effects())
    plan = make_plan(1.0, 31, calls=9000, orders=3000, artisans=24, end=END)
    for name, (cols, rows) in kpi_rows(plan, eff, build_artisans(plan, eff)).tables.items():
        store.insert(KPI_TABLES[name], rows, cols)
    store.insert(KPI_TABLES["integration_changes"],
                 [("chg-1", recs[0].partner_id, "*", "new client library", "version_upgrade",
                   END - dt.timedelta(days=12))],
                 ["change_id", "partner_id", "artisan_id", "description", "kind", "ts"])


def _canon(value: Any) -> Any:
    """Rows as comparable data: NaN (an empty state) equals itself."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    return value


def _named(store: Store, name: str, **params: str) -> list[dict[str, Any]]:
    return run_query_sync(store, name, params).dicts()


def _every_reader(store: Store) -> Results:
    """Each named query, the Insights points and each Grafana panel that reads a rollup's quantile state."""
    out: Results = {}
    out["integration_health"] = _named(store, "integration_health", limit="100000", **WINDOW)
    out["demo_summary"] = _named(store, "demo_summary", **WINDOW)
    out["health_vs_retention"] = _named(store, "health_vs_retention", min_artisans="10", min_calls="5",
                                        **WINDOW)
    out["benchmark_scorecard"] = _named(store, "benchmark_scorecard", **WINDOW)
    out["integration_change_impact"] = _named(store, "integration_change_impact", window_days="10")
    for upstream in ("inventory", "orders", FOREIGN):
        out[f"sla_report {upstream}"] = _named(store, "sla_report", upstream=upstream, **SLA_PARAMS)
        out[f"status_latency_series {upstream}"] = _named(store, "status_latency_series", upstream=upstream,
                                                          bucket_s="86400", **WINDOW)
    bound = querylib.bind_params(querylib.load_query("health_vs_retention"), {**WINDOW, "min_calls": "5"})
    out["insights points"] = store.query(POINTS_SQL, {k: bound[k] for k in (
        "start", "end", "min_calls", "min_events", "nps_kinds")}).rows
    tr = TimeRange(START, END, 3600)
    for p in _panels():
        if QUANTILE_STATE.search(p.sql):
            out[f"grafana {p.dashboard}: {p.title}"] = store.query(expand(p.sql, tr, p.variables)).rows
    # Rows as a sorted multiset: a panel ordered by time alone may list a bucket's routes in any order.
    return {name: sorted((_canon(r) for r in rows), key=repr) for name, rows in out.items()}


def _raw(store: Store, where: str) -> tuple[list[float], list[float]]:
    """Durations (ms) and measured sync lags (ms) of the SERVER spans matching ``where``."""
    rows = store.query(
        "SELECT Duration / 1e6, if(mapContains(SpanAttributes, 'loomgate.sync_lag_ms'), "
        "toFloat64(SpanAttributes['loomgate.sync_lag_ms']), NULL) FROM otel_traces "
        f"WHERE SpanKind = 'Server' AND Timestamp >= {{s:DateTime64(3, 'UTC')}} AND "
        f"Timestamp < {{e:DateTime64(3, 'UTC')}} AND {where}", {"s": START, "e": END}).rows
    return [d for d, _ in rows], [lag for _, lag in rows if lag is not None]


def _close(got: float, samples: list[float], q: float, digits: int) -> bool:
    """Within the documented bound, plus half a unit of the query's rounding to ``digits`` decimals."""
    exact = rank_sample(samples, q)
    return abs(got - exact) <= REL_ERROR * exact + 0.5 * 10.0 ** -digits


def _parts(store: Store) -> int:
    return int(store.query("SELECT count() FROM system.parts WHERE database = currentDatabase() AND active "
                           "AND table IN {t:Array(String)}", {"t": list(ROLLUPS)}).rows[0][0])


def test_percentiles_are_identical_after_merges_and_within_bound(kpi_store: Store) -> None:
    store = kpi_store
    recs = _records()
    _fill(store, recs)
    parts_before = _parts(store)
    before = _every_reader(store)

    for table in ROLLUPS:
        store.command(f"SYSTEM START MERGES {table}")
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    assert _parts(store) < parts_before / 10  # the merges happened: from ~180 parts to one per partition
    after = _every_reader(store)

    assert after.keys() == before.keys()
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, {name: (before[name], after[name]) for name in changed[:3]}
    assert sum(1 for name in before if name.startswith("grafana")) >= 5

    # The numbers themselves, against the raw span rows.
    checks: list[Callable[[], bool]] = []
    for row in after["integration_health"]:
        if row["calls"] < 50 or row["upstream"] == FOREIGN:  # the other source is checked by sla_report
            continue
        lat, lags = _raw(store, _key_filter(row))
        assert len(lat) == row["calls"]
        for col, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            checks.append(lambda got=row[col], s=lat, q=q: _close(got, s, q, 1))
        if lags:
            lag_s = [v / 1000 for v in lags]
            checks.append(lambda got=row["sync_lag_p95_s"], s=lag_s: _close(got, s, 0.95, 3))
    for upstream in ("inventory", FOREIGN):
        (sla,) = after[f"sla_report {upstream}"]
        lat, lags = _raw(store, f"SpanAttributes['loomgate.upstream'] = '{upstream}'" if upstream != FOREIGN
                         else f"ServiceName = '{FOREIGN}'")
        for col, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            checks.append(lambda got=sla[col], s=lat, q=q: _close(got, s, q, 3))
    assert len(checks) >= 20
    failed = [i for i, ok in enumerate(checks) if not ok()]
    assert not failed, json.dumps(failed)


def _key_filter(row: dict[str, Any]) -> str:
    attrs = {"partner.id": row["partner"], "artisan.id": row["artisan"], "loomgate.route": row["route"],
             "loomgate.upstream": row["upstream"]}
    return " AND ".join(f"SpanAttributes['{k}'] = '{v}'" for k, v in attrs.items()) + \
        " AND mapContains(SpanAttributes, 'loomgate.request_id')"

