"""The Insights page: do integration problems cost buyers?  Server-rendered HTML with inline SVG charts.

Three sections, all computed by the query library (so the page and ``loomgate query`` agree):
per-artisan scatter plots of each health metric against each KPI with the correlation and sample size
(``health_vs_retention`` for r/n/finding, per-artisan points from the same window), before/after bars
for integration changes (``integration_change_impact``) and the benchmark scorecard
(``benchmark_scorecard``).  No JavaScript; every number is also in the DOM as text for tests and
screen readers.
"""

from __future__ import annotations

import asyncio
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from collectors import querylib
from collectors.store import AsyncStore, QueryResult

METRICS = (("sync_lag_p95_s", "sync-lag p95 (s)"), ("error_rate", "error rate"),
           ("latency_p50_ms", "latency p50 (ms)"))
KPIS = (("cart_abandonment", "cart abandonment"), ("repeat_purchase", "repeat purchase"),
        ("survey_response_rate", "survey response rate"), ("nps", "NPS"), ("aov", "AOV"))
BAR_FIELDS = (("error_rate", "error rate"), ("repeat_purchase", "repeat purchase"),
              ("cart_abandonment", "cart abandonment"))

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

PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2430;background:#fafbfc}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1rem}
figure{margin:0;background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.5rem}
figcaption{font-size:.85rem}.finding{color:#5a6675}.effect{color:#b3261e;font-weight:600}
table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #dde2e8;padding:.3rem .6rem;text-align:left}
.meets{color:#1b7f3a;font-weight:600}.misses{color:#b3261e;font-weight:600}.na{color:#5a6675}
.small{color:#8a5a00}
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
    hvr_q = querylib.load_query("health_vs_retention")
    bound = querylib.bind_params(hvr_q, window)
    points = await store.query(POINTS_SQL, parameters={k: bound[k] for k in
                                                       ("start", "end", "min_calls", "min_events",
                                                        "nps_kinds")})
    stats = hvr.dicts()
    tests = stats[0]["tests"] if stats else 0
    fdr = bound["fdr"]
    body = [
        "<h1>Insights: integration health vs retention</h1>",
        f"<p>Window {html.escape(str(bound['start'])[:19])} to {html.escape(str(bound['end'])[:19])} UTC; "
        "one point per artisan.</p>",
        '<section id="scatter"><h2>Health metrics vs KPIs</h2>',
        f'<p class="fdr">{tests} tests, FDR {100 * fdr:g} %: a pair is a finding when its Benjamini-Hochberg '
        "q-value is at most the FDR; r with its 95 % interval (Fisher z).</p>",
        '<div class="grid">',
        *_scatters(hvr, points),
        "</div></section>",
        '<section id="changes"><h2>Integration changes: before vs after</h2><div class="grid">',
        *_change_bars(changes),
        "</div></section>",
        '<section id="scorecard"><h2>Benchmark scorecard</h2>',
        _scorecard(score),
        "</section>",
    ]
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Loomgate insights</title>"
            f"<style>{PAGE_CSS}</style></head><body>{''.join(body)}</body></html>")


def _scatters(hvr: QueryResult, points: QueryResult) -> list[str]:
    stats = {(r["metric"], r["kpi"]): r for r in hvr.dicts()}
    rows = points.dicts()
    out = []
    for metric, mlabel in METRICS:
        for kpi, klabel in KPIS:
            s = stats.get((metric, kpi))
            pts = [(float(r[metric]), float(r[kpi])) for r in rows
                   if r[metric] is not None and r[kpi] is not None and _finite(r[metric]) and _finite(r[kpi])]
            if s is None:
                continue
            finding = str(s["finding"])
            if not pts:
                out.append(f'<figure class="scatter" data-metric="{metric}" data-kpi="{kpi}" data-n="0">'
                           f"<figcaption><b>{html.escape(mlabel)} vs {html.escape(klabel)}</b>: "
                           f'<span class="finding">{html.escape(finding)}</span></figcaption></figure>')
                continue
            cls = "effect" if finding.startswith("higher ") else "finding"
            ci = (f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}], q = {s['q_value']:.3g}"
                  if s["ci_low"] is not None and s["q_value"] is not None else "")
            r_text = f"{s['correlation']:.2f}" if _finite(s["correlation"]) else "n/a"
            out.append(
                f'<figure class="scatter" data-metric="{metric}" data-kpi="{kpi}" data-n="{s["n"]}" '
                f'data-r="{html.escape(r_text)}">'
                f"{scatter_svg(pts, mlabel, klabel)}"
                f"<figcaption><b>{html.escape(mlabel)} vs {html.escape(klabel)}</b>: r = "
                f'<span class="r">{html.escape(r_text)}</span>{html.escape(ci)}, '
                f'n = <span class="n">{s["n"]}</span>'
                f"{' (small sample)' if s['small_sample'] else ''}; worst quartile "
                f"{_fmt(s['worst_quartile_kpi'])} vs best {_fmt(s['best_quartile_kpi'])} "
                f'(difference {_fmt(s["difference"])}). <span class="{cls}">{html.escape(finding)}</span>'
                "</figcaption></figure>")
    return out or ["<p>No artisans with enough calls and KPI data in this window.</p>"]


def _change_bars(changes: QueryResult) -> list[str]:
    out = []
    for c in changes.dicts():
        if not c["calls_before"] and not c["buyers_before"]:
            continue
        groups = []
        for field, label in BAR_FIELDS:
            before, after = c.get(f"{field}_before"), c.get(f"{field}_after")
            if before is None or after is None:
                continue
            groups.append((label, float(before), float(after)))
        if not groups:
            continue
        out.append(
            f'<figure class="change" data-change="{html.escape(str(c["change_id"]))}">'
            f"{bars_svg(groups)}<figcaption><b>{html.escape(str(c['change_id']))}</b> "
            f"({html.escape(str(c['kind']))}, {html.escape(str(c['partner']))}, "
            f"{html.escape(str(c['ts'])[:10])}): {html.escape(str(c['description']))}. "
            + "; ".join(f"{label} {_pct(b)} → {_pct(a)}" for label, b, a in groups)
            + f"{'' if c['after_complete'] else ' (after window still open)'}</figcaption></figure>")
    return out or ["<p>No integration changes with data on both sides.</p>"]


def _scorecard(score: QueryResult) -> str:
    rows = ["<table><thead><tr><th>benchmark</th><th>target</th><th>actual</th><th>status</th>"
            "<th>based on</th></tr></thead><tbody>"]
    for r in score.dicts():
        status = str(r["status"])
        cls = {"meets": "meets", "misses": "misses"}.get(status, "na")
        actual = "n/a" if r["actual"] is None else f"{r['actual']:.2f} {r['unit']}".replace(" %", "%")
        name, basis = html.escape(str(r["benchmark"])), html.escape(str(r["basis"]))
        rows.append(f'<tr data-benchmark="{name}"><td>{name}'
                    f"</td><td>{html.escape(str(r['target']))}</td><td>{html.escape(actual)}</td>"
                    f'<td class="{cls}">{html.escape(status)}</td><td>{basis}</td></tr>')
    rows.append("</tbody></table>")
    return "".join(rows)


# --------------------------------------------------------------------------------------------- SVG

def scatter_svg(points: Sequence[tuple[float, float]], xlabel: str, ylabel: str, *, width: int = 300,
                height: int = 200) -> str:
    """A scatter plot with axes, min/max tick labels and a least-squares line."""
    left, bottom, top, right = 44, 30, 10, 10
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = _span(xs)
    y0, y1 = _span(ys)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5"/>' for x, y in points)
    line = ""
    fit = _fit(xs, ys)
    if fit is not None:
        a, b = fit
        line = (f'<line class="fit" x1="{sx(x0):.1f}" y1="{sy(a + b * x0):.1f}" x2="{sx(x1):.1f}" '
                f'y2="{sy(a + b * x1):.1f}" stroke="#b3261e" stroke-width="1.5"/>')
    return (
        f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{html.escape(xlabel)} vs {html.escape(ylabel)}">'
        f'<g stroke="#8895a7"><line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}"/><line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/></g>'
        f'<g fill="#2f6fb3" fill-opacity="0.6">{dots}</g>{line}'
        f'<g font-size="9" fill="#5a6675"><text x="{left}" y="{height - bottom + 11}">{_fmt(x0)}</text>'
        f'<text x="{width - right}" y="{height - bottom + 11}" text-anchor="end">{_fmt(x1)}</text>'
        f'<text x="{left - 3}" y="{height - bottom}" text-anchor="end">{_fmt(y0)}</text>'
        f'<text x="{left - 3}" y="{top + 8}" text-anchor="end">{_fmt(y1)}</text>'
        f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">{html.escape(xlabel)}'
        f"</text></g></svg>")


def bars_svg(groups: Sequence[tuple[str, float, float]], *, width: int = 300, height: int = 180) -> str:
    """Grouped before/after bars (grey = before, blue = after), values as labels above the bars."""
    left, bottom, top = 10, 34, 16
    top_value = max([max(b, a) for _, b, a in groups] + [1e-9])
    slot = (width - 2 * left) / len(groups)
    bar_w = slot / 3
    parts = []
    for i, (label, before, after) in enumerate(groups):
        x = left + i * slot + slot / 6
        bars = ((before, "#9aa5b4", "before"), (after, "#2f6fb3", "after"))
        for j, (value, colour, cls) in enumerate(bars):
            h = value / top_value * (height - top - bottom)
            bx = x + j * bar_w
            y = height - bottom - h
            parts.append(f'<rect class="{cls}" x="{bx:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"/><text x="{bx + bar_w / 2 - 1:.1f}" '
                         f'y="{y - 3:.1f}" font-size="9" text-anchor="middle">{_pct(value)}</text>')
        parts.append(f'<text x="{x + bar_w:.1f}" y="{height - bottom + 13}" font-size="10" '
                     f'text-anchor="middle">{html.escape(label)}</text>')
    legend = (f'<g font-size="9"><rect x="{left}" y="{height - 12}" width="8" height="8" fill="#9aa5b4"/>'
              f'<text x="{left + 11}" y="{height - 5}">before</text><rect x="{left + 50}" y="{height - 12}" '
              f'width="8" height="8" fill="#2f6fb3"/><text x="{left + 61}" y="{height - 5}">after</text></g>')
    return (f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-label="before and after">{"".join(parts)}{legend}</svg>')


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return (max(lo - 1, 0.0) if lo >= 0 else lo - 1), hi + 1
    pad = (hi - lo) * 0.05
    # Rates, latencies and lags are never negative: padding must not invent negative axis values.
    return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(float(v))


def _fmt(v: Any) -> str:
    if v is None or not _finite(v):
        return "n/a"
    v = float(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"
