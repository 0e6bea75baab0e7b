"""The ``/status`` page: what it shows, gathered from the SLA report, incidents, health and the rollups.

``build_status`` collects the figures; ``templates/status.html`` lays them out.  Each quantity keeps one
unit wherever it appears (latency in ms, sync lag in s, availability in %), an overspent error budget is
said as a multiple of the budget, and the banner at the top sums up both the upstreams' current state and
the SLAs, so it is never green while an SLA is breached.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from collectors import maintenance
from collectors import sla as slamod
from collectors.store import AsyncStore
from gateway import charts, pages
from gateway.admin_telemetry import telemetry_unwritten
from gateway.config import Config, Sla

BAR_DAYS = 90
CHART_POINTS = 120  # buckets per latency chart
MIN_CHART_POINTS = 2  # fewer points than this draw no line: the chart says so instead
REFRESH_S = 60
NA = "n/a"
TIMES = "\u00d7"  # the multiplication sign of "overspent 180x"

STATE_CLASS = {"UP": "up", "DEGRADED": "degraded", "DOWN": "down", "UNKNOWN": "unknown",
               "NOT CHECKED": "unknown"}
STATUS_CLASS = {"OK": "up", "AT RISK": "degraded", "BREACHED": "down", "NO DATA": "unknown"}
_SEVERITY = {"up": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # data-metric attribute, the SLA report's column
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    value: str  # "62.5 % left" or "budget overspent 180" + TIMES
    note: str
    fill_pct: float  # width of the bar, clamped to [0, 100]
    overspent: bool


@dataclass(frozen=True, slots=True)
class Chart:
    kind: str  # latency | sync-lag
    title: str
    legend: Markup
    svg: Markup | None  # None: not enough history
    points: int


@dataclass(frozen=True, slots=True)
class Card:
    sla: str
    where: str
    state: str
    state_cls: str
    status: str
    status_cls: str
    since: str
    maintenance: str
    reason: str
    last_check: str
    metrics: tuple[Metric, ...]
    budget: Budget
    bars: Markup
    overall: str
    charts: tuple[Chart, ...]


@dataclass(frozen=True, slots=True)
class Banner:
    cls: str  # up | degraded | down
    text: str


@dataclass(frozen=True, slots=True)
class IncidentRow:
    upstream: str
    state: str
    cls: str
    started: str
    ended: str
    duration: str
    maintenance: bool
    reasons: tuple[str, ...]
    open: bool


@dataclass(frozen=True, slots=True)
class MaintenanceItem:
    name: str
    who: str
    start: str
    end: str
    active: bool


# --------------------------------------------------------------------------------------------- gather


async def build_status(store: AsyncStore, config: Config, states: Mapping[str, Mapping[str, Any]],
                       services: Any, window: float, now: float) -> str:
    """Gather everything the page shows, then render it."""
    report = await slamod.sla_report(store, config, window, now)
    incidents = await slamod.incidents(store, config, now - window, now)
    cards = []
    bucket = max(60, int(window / CHART_POINTS) // 60 * 60)
    day0 = _day_start(now) - (BAR_DAYS - 1) * 86400
    for sla, row in zip(slamod.effective_slas(config), report, strict=True):
        upstream = row["upstream"]
        daily = await slamod.run_named(store, "status_daily_uptime", {
            "start": slamod.utc(day0), "end": slamod.utc(now), "upstream": upstream, "route": sla.route or "",
            **slamod.maintenance_params(config, day0, now)})
        series = await slamod.run_named(store, "status_latency_series", {
            "start": slamod.utc(now - window), "end": slamod.utc(now), "bucket_s": bucket,
            "upstream": upstream, "route": sla.route or ""})
        cards.append(card(sla, row, states.get(upstream, {}), daily.dicts(), series.dicts(), day0,
                          (now - window, now)))
    open_n = sum(1 for i in incidents if i["open"])
    return pages.render(
        "status.html", current="Status", refresh_s=REFRESH_S, window=slamod.format_duration(window),
        updated=when(iso(now)), unwritten=await telemetry_unwritten(services) or "",
        banner=banner(report, states), cards=cards, open_incidents=open_n,
        incidents=incident_rows(incidents), maintenance=maintenance_items(config, now))


def _day_start(t: float) -> float:
    return (t // 86400) * 86400


# --------------------------------------------------------------------------------------------- banner


def banner(report: Sequence[Mapping[str, Any]], states: Mapping[str, Mapping[str, Any]]) -> Banner:
    """Upstream state and SLA state in one line; its colour is the worse of the two."""
    down = sorted(n for n, s in states.items() if s["state"] == "DOWN")
    degraded = sorted(n for n, s in states.items() if s["state"] == "DEGRADED")
    checked = [n for n, s in states.items() if s["state"] not in ("NOT CHECKED", "UNKNOWN")]
    if down:
        cls, parts = "down", [f"Down: {', '.join(down)}"]
    elif degraded:
        cls, parts = "degraded", [f"Degraded: {', '.join(degraded)}"]
    elif checked:
        cls, parts = "up", ["All checked upstreams are up"]
    else:
        cls, parts = "up", ["No upstream has a health check"]
    breached = [str(r["sla"]) for r in report if r["status"] == "BREACHED"]
    at_risk = [str(r["sla"]) for r in report if r["status"] == "AT RISK"]
    if breached:
        cls = "down"
        parts.append(f"SLA breached: {', '.join(breached)}")
    if at_risk:
        cls = max(cls, "degraded", key=_SEVERITY.__getitem__)
        parts.append(f"SLA at risk: {', '.join(at_risk)}")
    if report and not breached and not at_risk:
        measured = [r for r in report if r["status"] == "OK"]
        parts.append("all SLAs met" if len(measured) == len(report) else
                     f"SLAs met: {len(measured)} of {len(report)} (the others have no data)")
    return Banner(cls, " · ".join(parts))


# ---------------------------------------------------------------------------------------------- cards


def pct(v: Any, digits: int = 3) -> str:
    return NA if v is None else f"{v:.{digits}f} %"


def ms(v: Any) -> str:
    """Latency, always in milliseconds."""
    if v is None:
        return NA
    return f"{v:.1f} ms" if v < 10 else f"{v:,.0f} ms"


def seconds(v_ms: Any) -> str:
    """Sync lag, always in seconds (the report carries milliseconds)."""
    return NA if v_ms is None else f"{v_ms / 1000:.2f} s"


def budget(row: Mapping[str, Any]) -> Budget:
    remaining, consumed, total = row["budget_remaining_pct"], row["budget_consumed"], row["budget_total"]
    note = f"{consumed:,} bad of {total:,.1f} allowed {row['budget_source'] or 'events'}"
    if remaining is None:
        return Budget(NA, note, 0.0, False)
    if remaining >= 0:
        return Budget(f"{remaining:.1f} % left", note, min(100.0, float(remaining)), False)
    if not total:
        return Budget("budget overspent", note + " (the target allows none)", 0.0, True)
    times = consumed / total
    return Budget(f"budget overspent {times:.0f}{TIMES}" if times >= 10 else
                  f"budget overspent {times:.1f}{TIMES}", note, 0.0, True)


def _bar_color(value: float | None, target: float) -> str:
    if value is None:
        return charts.GREY
    if value >= target:
        return charts.GREEN
    return charts.AMBER if value >= target - 1.0 else charts.RED


def uptime_bars(daily: Sequence[Mapping[str, Any]], day0: float, target: float) -> tuple[Markup, str]:
    by_day = {str(r["day"]): r for r in daily}
    data, good, total = [], 0, 0
    for i in range(BAR_DAYS):
        day = dt.datetime.fromtimestamp(day0 + i * 86400, dt.UTC).date().isoformat()
        r = by_day.get(day)
        value, detail = None, "no data"
        if r is not None and r["checks"]:
            value = r["probe_uptime_pct"]
            detail = f"{value:.3f} % of {r['checks']} checks answered"
            good, total = good + r["answered"], total + r["checks"]
        elif r is not None and r["requests"]:
            value = r["request_availability_pct"]
            detail = f"{value:.3f} % of {r['requests']} requests good"
        if r is not None and r["requests"] and r["checks"]:
            detail += f"; requests {r['request_availability_pct']:.3f} % of {r['requests']}"
        data.append(charts.Bar(day, value, _bar_color(value, target), detail))
    overall = f"{100 * good / total:.3f} % probe uptime over {BAR_DAYS} days" if total else f"{BAR_DAYS} days"
    return pages.svg(charts.bars(data, width=760, height=34)), overall


def card(sla: Sla, row: Mapping[str, Any], state: Mapping[str, Any], daily: Sequence[Mapping[str, Any]],
         series: Sequence[Mapping[str, Any]], day0: float, x_range: tuple[float, float]) -> Card:
    st = str(state.get("state", "UNKNOWN"))
    status = str(row["status"])
    where = f"route {sla.route} · upstream {row['upstream']}" if sla.route else f"upstream {row['upstream']}"
    since = state.get("since")
    last = state.get("last_check")
    last_txt = ""
    if last:
        last_txt = (f"last check {when(iso(last['at']))}: {last['outcome']}, HTTP {last['status_code']}, "
                    f"{last['response_time_ms']:.0f} ms" + (f" — {last['reason']}" if last["reason"] else ""))
    lat_target = (f"{row['latency_target_pct']:g} % ≤ {ms(row['latency_threshold_ms'])}"
                  if row.get("latency_threshold_ms") else "")
    avail_target = f"target {row['availability_target_pct']:g} %"
    metrics = (
        Metric("probe_uptime_pct", "Probe uptime", pct(row["probe_uptime_pct"]), avail_target),
        Metric("request_availability_pct", "Request availability", pct(row["request_availability_pct"]),
               avail_target),
        Metric("latency_compliance_pct", "Latency compliance", pct(row["latency_compliance_pct"]),
               f"target {lat_target}" if lat_target else ""),
        Metric("p50_ms", "p50", ms(row["p50_ms"])),
        Metric("p95_ms", "p95", ms(row["p95_ms"])),
        Metric("p99_ms", "p99", ms(row["p99_ms"])),
        Metric("sync_lag_p95_ms", "Sync-lag p95", seconds(row["sync_lag_p95_ms"]),
               f"target {seconds(row['sync_lag_target_ms'])}" if row.get("sync_lag_target_ms") else ""),
    )
    bars_svg, overall = uptime_bars(daily, day0, float(row["availability_target_pct"]))
    return Card(
        sla=sla.name, where=where, state=st, state_cls=STATE_CLASS.get(st, "unknown"), status=status,
        status_cls=STATUS_CLASS.get(status, "unknown"), since=when(iso(since)) if since else "",
        maintenance=str(state.get("maintenance") or row.get("maintenance_now") or ""),
        reason=str(row.get("status_reason") or ""), last_check=last_txt, metrics=metrics, budget=budget(row),
        bars=bars_svg, overall=overall, charts=latency_charts(row, series, x_range))


def latency_charts(row: Mapping[str, Any], series: Sequence[Mapping[str, Any]],
                   x_range: tuple[float, float]) -> tuple[Chart, ...]:
    def pts(key: str, scale: float = 1.0) -> list[tuple[float, float | None]]:
        return [(epoch(r["bucket"]), None if r[key] is None else r[key] * scale) for r in series]

    def count(points: Sequence[tuple[float, float | None]]) -> int:
        return sum(1 for _, y in points if y is not None)

    lat = [charts.Series("p50", pts("p50_ms"), charts.BLUE), charts.Series("p95", pts("p95_ms"), "#d9782d")]
    thr = row.get("latency_threshold_ms")
    n = max(count(s.points) for s in lat)
    lat_svg = charts.line_chart(lat, x_range=x_range, width=760, height=170, y_label="ms", threshold=thr,
                                threshold_label=f"objective {ms(thr)}" if thr else "",
                                css_class="chart latency")
    out = [Chart("latency", "Latency (ms)", pages.svg(charts.legend(lat)),
                 pages.svg(lat_svg) if n >= MIN_CHART_POINTS else None, n)]
    tgt_ms = row.get("sync_lag_target_ms")
    if any(r["sync_lag_samples"] for r in series) or tgt_ms:
        lag = [charts.Series("sync-lag p95", pts("sync_lag_p95_ms", 1 / 1000), "#7b5cc4")]
        n = count(lag[0].points)
        lag_svg = charts.line_chart(lag, x_range=x_range, width=760, height=150, y_label="s",
                                    threshold=tgt_ms / 1000 if tgt_ms else None,
                                    threshold_label=f"target {seconds(tgt_ms)}" if tgt_ms else "",
                                    css_class="chart sync-lag")
        out.append(Chart("sync-lag", "Sync lag (s)", pages.svg(charts.legend(lag)),
                         pages.svg(lag_svg) if n >= MIN_CHART_POINTS else None, n))
    return tuple(out)


def epoch(v: Any) -> float:
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
    return float(v)


# ---------------------------------------------------------------------------- incidents, maintenance


def incident_rows(incidents: Sequence[Mapping[str, Any]]) -> list[IncidentRow]:
    ordered = sorted(incidents, key=lambda i: i["started_at"], reverse=True)
    return [IncidentRow(
        upstream=str(r["upstream"]), state=str(r["worst_state"]),
        cls=STATE_CLASS.get(r["worst_state"], "unknown"),
        started=when(r["started_at"]), ended="ongoing" if r["open"] else when(r["ended_at"]),
        duration=duration(r["duration_s"]), maintenance=bool(r["during_maintenance"]),
        reasons=tuple(str(x) for x in r["reasons"]), open=bool(r["open"]))
        for r in sorted(ordered, key=lambda i: not i["open"])[:50]]


def maintenance_items(config: Config, now: float) -> list[MaintenanceItem]:
    return [MaintenanceItem(iv.name, "all upstreams" if iv.upstream == "*" else iv.upstream,
                            when(iso(iv.start)), when(iso(iv.end)), iv.contains(now))
            for iv in maintenance.intervals(config.maintenance, now, now + 7 * 86400)[:30]]


def when(value: Any) -> str:
    """ISO-8601 text from the queries as 'YYYY-MM-DD HH:MM:SS UTC'."""
    return dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
