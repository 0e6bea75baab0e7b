"""The Insights page: do integration problems cost buyers?  Rendered from ``templates/insights.html``.

Three sections, all computed by the query library (so the page and ``loomgate query`` agree):
per-artisan scatter plots of each health metric against each KPI with the correlation and sample size
(``health_vs_retention`` for r/n/finding, per-artisan points from the same window), before/after bars
for integration changes (``integration_change_impact``) and the benchmark scorecard
(``benchmark_scorecard``).  Every axis names its quantity and unit; the caveats (multiple comparisons,
small samples, correlation is not causation) sit beside the findings.  No JavaScript; every number is
also in the DOM as text for tests and screen readers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from collectors import querylib
from collectors.store import AsyncStore, QueryResult
from gateway import charts, pages


@dataclass(frozen=True, slots=True)
class Quantity:
    key: str  # the queries' column
    name: str  # what people call it
    unit: str
    scale: float = 1.0  # query value x scale = value in ``unit`` (fractions shown as %)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})"


METRICS = (Quantity("sync_lag_p95_s", "sync-lag p95", "s"), Quantity("error_rate", "error rate", "%", 100),
           Quantity("latency_p50_ms", "latency p50", "ms"))
KPIS = (Quantity("cart_abandonment", "cart abandonment", "%", 100),
        Quantity("repeat_purchase", "repeat purchase", "%", 100),
        Quantity("survey_response_rate", "survey response rate", "%", 100),
        Quantity("nps", "NPS", "-100 to 100"), Quantity("aov", "average order value", "per order"))
BAR_FIELDS = (Quantity("error_rate", "error rate", "%", 100),
              Quantity("repeat_purchase", "repeat purchase", "%", 100),
              Quantity("cart_abandonment", "cart abandonment", "%", 100))


@dataclass(frozen=True, slots=True)
class Scatter:
    metric: Quantity
    kpi: Quantity
    n: int
    r: str
    interval: str  # "[0.21, 0.48], q = 0.002" or ""
    small: bool
    quartiles: str  # worst vs best quartile of the metric, KPI in its unit
    finding: str
    effect: bool  # a finding (q <= FDR), not "no effect" / "too small"
    svg: Markup | None


@dataclass(frozen=True, slots=True)
class Change:
    change_id: str
    kind: str
    partner: str
    day: str
    description: str
    text: str  # "error rate 2.0 % -> 5.1 %; ..."
    after_open: bool
    svg: Markup


@dataclass(frozen=True, slots=True)
class ScoreRow:
    benchmark: str
    target: str
    actual: str
    status: str
    cls: str
    basis: str


# Per-artisan points for the scatter plots: the same definitions and window as health_vs_retention.
POINTS_SQL = """
WITH
    {start:DateTime64(3, 'UTC')} AS w_start,
    {end:DateTime64(3, 'UTC')} AS w_end,
    health AS (
        SELECT artisan, sum(calls) AS n_calls, sum(errors) / n_calls AS error_rate,
               quantileBFloat16Merge(0.5)(latency_hist_ms) AS latency_p50_ms,
               if(sum(sync_lag_measured) > 0, quantileBFloat16Merge(0.95)(sync_lag_hist_ms) / 1000, NULL)
                   AS sync_lag_p95_s
        FROM loomgate_calls_1m
        WHERE minute >= toStartOfMinute(w_start) AND minute < w_end AND artisan != ''
        GROUP BY artisan HAVING n_calls >= {min_calls:UInt32}
    ),
    carts AS (
        SELECT c_artisan AS artisan, count() AS created, countIf(purchased) AS purchased FROM (
            SELECT cart_id, any(artisan_id) AS c_artisan, minIf(ts, event = 'created') AS created_at,
                   countIf(event = 'created') > 0 AS has_created,
                   countIf(event = 'purchased') > 0 AS purchased
            FROM kpi_cart_events FINAL
            WHERE ts >= w_start - INTERVAL 1 DAY AND ts < w_end + INTERVAL 1 DAY GROUP BY cart_id)
        WHERE has_created AND created_at >= w_start AND created_at < w_end GROUP BY c_artisan
    ),
    buyers AS (
        SELECT artisan_id AS artisan, count() AS n_buyers, countIf(n >= 2) AS n_repeat, sum(n) AS n_orders,
               sum(rev) AS revenue
        FROM (SELECT artisan_id, buyer_id, count() AS n, sum(toFloat64(amount)) AS rev FROM kpi_orders FINAL
              WHERE ts >= w_start AND ts < w_end GROUP BY artisan_id, buyer_id)
        GROUP BY artisan_id
    ),
    surveys AS (
        SELECT artisan_id AS artisan, countIf(status = 'delivered') AS delivered,
               countIf(status = 'delivered' AND answered) AS answered_n,
               countIf(has({nps_kinds:Array(String)}, kind) AND answered AND score IS NOT NULL) AS nps_n,
               countIf(has({nps_kinds:Array(String)}, kind) AND answered AND score >= 9)
                 - countIf(has({nps_kinds:Array(String)}, kind) AND answered AND score <= 6) AS nps_net
        FROM kpi_survey_responses FINAL WHERE ts >= w_start AND ts < w_end GROUP BY artisan_id
    )
SELECT h.artisan, h.error_rate, h.latency_p50_ms, h.sync_lag_p95_s,
       if(c.created >= {min_events:UInt32}, 1 - c.purchased / c.created, NULL) AS cart_abandonment,
       if(b.n_buyers >= {min_events:UInt32}, b.n_repeat / b.n_buyers, NULL) AS repeat_purchase,
       if(s.delivered >= {min_events:UInt32}, s.answered_n / s.delivered, NULL) AS survey_response_rate,
       if(s.nps_n >= {min_events:UInt32}, 100 * s.nps_net / s.nps_n, NULL) AS nps,
       if(b.n_orders >= {min_events:UInt32}, b.revenue / b.n_orders, NULL) AS aov
FROM health AS h
LEFT JOIN carts AS c ON c.artisan = h.artisan
LEFT JOIN buyers AS b ON b.artisan = h.artisan
LEFT JOIN surveys AS s ON s.artisan = h.artisan
ORDER BY h.artisan
"""

async def render_insights(store: AsyncStore, raw: Mapping[str, str]) -> str:
    """The whole page; ``raw`` may set start / end / window_days (validated like query parameters)."""
    window = {k: v for k, v in raw.items() if k in ("start", "end")}
    change_params = {k: v for k, v in raw.items() if k == "window_days"}
    hvr, changes, score = await asyncio.gather(
        querylib.run_query(store, "health_vs_retention", window),
        querylib.run_query(store, "integration_change_impact", change_params),
        querylib.run_query(store, "benchmark_scorecard", window),
    )
    bound = querylib.bind_params(querylib.load_query("health_vs_retention"), window)
    points = await store.query(POINTS_SQL, parameters={k: bound[k] for k in
                                                       ("start", "end", "min_calls", "min_events",
                                                        "nps_kinds")})
    stats = hvr.dicts()
    scatters = scatter_views(hvr, points)
    return pages.render(
        "insights.html", current="Insights", start=str(bound["start"])[:19], end=str(bound["end"])[:19],
        tests=stats[0]["tests"] if stats else 0, fdr_pct=f"{100 * bound['fdr']:g}",
        min_artisans=bound["min_artisans"], small_pairs=sum(1 for s in stats if s["small_sample"]),
        scatters=scatters, changes=change_views(changes), score=score_rows(score))


def _in_unit(q: Quantity, v: Any) -> float:
    return float(v) * q.scale


def finding_text(metric: Quantity, kpi: Quantity, finding: str, r: Any) -> str:
    """The query's finding in people's words: its column names become the quantities' names."""
    if not finding.startswith("higher "):
        return finding
    return f"higher {metric.name} goes with {'higher' if float(r) > 0 else 'lower'} {kpi.name}"


def scatter_views(hvr: QueryResult, points: QueryResult) -> list[Scatter]:
    stats = {(r["metric"], r["kpi"]): r for r in hvr.dicts()}
    rows = points.dicts()
    out = []
    for metric in METRICS:
        for kpi in KPIS:
            s = stats.get((metric.key, kpi.key))
            if s is None:
                continue
            pts = [(_in_unit(metric, r[metric.key]), _in_unit(kpi, r[kpi.key])) for r in rows
                   if _finite(r[metric.key]) and _finite(r[kpi.key])]
            finding = str(s["finding"])
            interval = (f"[{s['ci_low']:.2f}, {s['ci_high']:.2f}], q = {s['q_value']:.3g}"
                        if s["ci_low"] is not None and s["q_value"] is not None else "")
            quartiles = ""
            if s["worst_quartile_kpi"] is not None and s["best_quartile_kpi"] is not None:
                worst, best = _in_unit(kpi, s["worst_quartile_kpi"]), _in_unit(kpi, s["best_quartile_kpi"])
                quartiles = (f"{kpi.name}: {_fmt(worst)} {kpi.unit} among the worst quartile of "
                             f"{metric.name} "
                             f"vs {_fmt(best)} among the best (difference {_fmt(worst - best)})")
            out.append(Scatter(
                metric=metric, kpi=kpi, n=int(s["n"]),
                r=f"{s['correlation']:.2f}" if _finite(s["correlation"]) else "n/a", interval=interval,
                small=bool(s["small_sample"]), quartiles=quartiles,
                finding=finding_text(metric, kpi, finding, s["correlation"]),
                effect=finding.startswith("higher "),
                svg=pages.svg(charts.scatter_plot(pts, metric.label, kpi.label)) if pts else None))
    return out


def change_views(changes: QueryResult) -> list[Change]:
    out = []
    for c in changes.dicts():
        if not c["calls_before"] and not c["buyers_before"]:
            continue
        groups = []
        for q in BAR_FIELDS:
            before, after = c.get(f"{q.key}_before"), c.get(f"{q.key}_after")
            if before is None or after is None:
                continue
            groups.append((q.name, _in_unit(q, before), _in_unit(q, after)))
        if not groups:
            continue
        out.append(Change(
            change_id=str(c["change_id"]), kind=str(c["kind"]), partner=str(c["partner"]),
            day=str(c["ts"])[:10],
            description=str(c["description"]),
            text="; ".join(f"{name} {b:.1f} % → {a:.1f} %" for name, b, a in groups),
            after_open=not c["after_complete"], svg=pages.svg(charts.before_after_bars(groups, unit="%"))))
    return out


def score_rows(score: QueryResult) -> list[ScoreRow]:
    out = []
    for r in score.dicts():
        status = str(r["status"])
        actual = "n/a" if r["actual"] is None else f"{r['actual']:.2f} {r['unit']}"
        out.append(ScoreRow(str(r["benchmark"]), str(r["target"]), actual, status,
                            {"meets": "meets", "misses": "misses"}.get(status, "na"), str(r["basis"])))
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(float(v))


def _fmt(v: Any) -> str:
    if v is None or not _finite(v):
        return "n/a"
    v = float(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
