"""Admin routes for uptime and SLAs: JSON API and the server-rendered status page.

* ``GET /api/sla?window=30d`` — the SLA report (``collectors.sla.sla_report``); without ``window`` each SLA
  uses its own compliance window.
* ``GET /api/incidents?window=30d&upstream=NAME`` — DOWN/DEGRADED periods overlapping the window.
* ``GET /api/checks?upstream=NAME&limit=20`` — current health per upstream and the latest results.
* ``GET /status?window=30d`` — the status page: per SLA its upstream's current state, the SLA status and
  figures, 90 daily uptime bars, latency p50/p95 and sync-lag p95 charts over the window, open and recent
  incidents, and maintenance in force or coming within a week.  HTML only, charts are inline SVG
  (``gateway.charts``), the stylesheet is ``/static/status.css``; it refreshes itself every minute.

All of them sit behind the admin token (bearer header or the login cookie; see ``gateway.admin``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web

from collectors import maintenance
from collectors import sla as slamod
from collectors.store import AsyncStore
from gateway import charts, errors
from gateway.admin_telemetry import telemetry_unwritten, unwritten_banner
from gateway.appkeys import SERVICES_KEY
from gateway.config import Config, Sla
from gateway.headers import request_id

STATIC_DIR = Path(__file__).resolve().parent / "static"
BAR_DAYS = 90
CHART_POINTS = 120  # buckets per latency chart
REFRESH_S = 60
NA = "n/a"


class StoreUnavailable(errors.GatewayError):
    status, code, error_type = 503, "store_unavailable", "store_unavailable"


def setup(app: web.Application) -> None:
    app.router.add_get("/api/sla", api_sla)
    app.router.add_get("/api/incidents", api_incidents)
    app.router.add_get("/api/checks", api_checks)
    app.router.add_get("/status", status_page)
    app.router.add_get("/static/status.css", status_css)


# ------------------------------------------------------------------------------------------- helpers


def _error(request: web.Request, exc: errors.GatewayError) -> web.Response:
    return errors.error_response(exc, request_id(request.headers.get("X-Request-Id")))


def _store(request: web.Request) -> AsyncStore:
    store = request.app[SERVICES_KEY].store
    if store is None:
        raise StoreUnavailable("telemetry store is not configured (telemetry.enabled is false)")
    return store


def _window(request: web.Request, default: float | None) -> float | None:
    text = request.query.get("window")
    if text is None or text == "":
        return default
    try:
        return slamod.parse_window(text)
    except ValueError as exc:
        raise errors.BadRequest(f"query parameter window: {exc}") from None


def _config(request: web.Request) -> Config:
    return request.app[SERVICES_KEY].config


async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.GatewayError as exc:
        return _error(request, exc)


# --------------------------------------------------------------------------------------------- JSON API


async def api_sla(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        window = _window(req, None)
        rows = await slamod.sla_report(_store(req), _config(req), window)
        return web.json_response({"window_s": window, "generated_at": _iso(time.time()), "slas": rows})

    return await _guard(request, handle)


async def api_incidents(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        window = _window(req, slamod.DEFAULT_WINDOW) or slamod.DEFAULT_WINDOW
        end = time.time()
        rows = await slamod.incidents(_store(req), _config(req), end - window, end,
                                      req.query.get("upstream", ""))
        return web.json_response({"window_s": window, "incidents": rows})

    return await _guard(request, handle)


async def api_checks(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        try:
            limit = int(req.query.get("limit", "20"))
        except ValueError:
            raise errors.BadRequest("query parameter limit: not an integer") from None
        if not 1 <= limit <= 1000:
            raise errors.BadRequest("query parameter limit: must be between 1 and 1000")
        upstream = req.query.get("upstream", "")
        params = {"upstream": upstream, "per_upstream": limit}
        res = await slamod.run_named(_store(req), "recent_checks", params)
        recent: dict[str, list[dict[str, Any]]] = {}
        for r in res.dicts():
            recent.setdefault(r.pop("upstream"), []).append({k: _jsonable(v) for k, v in r.items()})
        states = _states(req.app[SERVICES_KEY], _config(req))
        ups = [{**s, "recent": recent.get(s["upstream"], [])} for s in states
               if not upstream or s["upstream"] == upstream]
        return web.json_response({"upstreams": ups})

    return await _guard(request, handle)


def _states(services: Any, config: Config) -> list[dict[str, Any]]:
    """Current health per configured upstream; upstreams without a check are ``NOT CHECKED``."""
    snap = services.health.snapshot() if services.health is not None else {}
    out = []
    now = time.time()
    for up in config.upstreams:
        if up.name in snap:
            out.append(snap[up.name].as_dict())
        else:
            mw = maintenance.active(config.maintenance, up.name, now)
            out.append({"upstream": up.name, "state": "NOT CHECKED", "since": None,
                        "maintenance": mw.name if mw else None, "last_check": None})
    return out


def _jsonable(v: Any) -> Any:
    from collectors.querylib import jsonable

    return jsonable(v)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


async def status_css(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "status.css", headers={"Cache-Control": "max-age=300"})


# ------------------------------------------------------------------------------------------ status page


async def status_page(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        config = _config(req)
        window = _window(req, slamod.DEFAULT_WINDOW) or slamod.DEFAULT_WINDOW
        page = await build_status(_store(req), config, req.app[SERVICES_KEY], window, time.time())
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    return await _guard(request, handle)


async def build_status(store: AsyncStore, config: Config, services: Any, window: float, now: float) -> str:
    """Gather everything the page shows, then render it."""
    report = await slamod.sla_report(store, config, window, now)
    incidents = await slamod.incidents(store, config, now - window, now)
    states = {s["upstream"]: s for s in _states(services, config)}
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
        cards.append(_card(sla, row, states.get(upstream, {}), daily.dicts(), series.dicts(), day0,
                           (now - window, now)))
    banner = unwritten_banner(await telemetry_unwritten(services))
    return _page(config, report, states, cards, incidents, window, now, banner)


def _day_start(t: float) -> float:
    return (t // 86400) * 86400


STATE_CLASS = {"UP": "up", "DEGRADED": "degraded", "DOWN": "down", "UNKNOWN": "unknown",
               "NOT CHECKED": "unknown"}
STATUS_CLASS = {"OK": "up", "AT RISK": "degraded", "BREACHED": "down", "NO DATA": "unknown"}


def _pct(v: Any, digits: int = 3) -> str:
    return NA if v is None else f"{v:.{digits}f} %"


def _ms(v: Any) -> str:
    if v is None:
        return NA
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def _metric(name: str, label: str, value: str, target: str = "", note: str = "") -> str:
    text = f"target {target}" if target else note
    tgt = f'<div class="target">{escape(text)}</div>' if text else ""
    return (f'<div class="metric"><div class="label">{escape(label)}</div>'
            f'<div class="value" data-metric="{name}">{escape(value)}</div>{tgt}</div>')


def _bar_color(value: float | None, target: float) -> str:
    if value is None:
        return charts.GREY
    if value >= target:
        return charts.GREEN
    return charts.AMBER if value >= target - 1.0 else charts.RED


def _uptime_bars(daily: Sequence[Mapping[str, Any]], day0: float, target: float) -> tuple[str, str]:
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
    return charts.bars(data, width=760, height=34), overall


def _card(sla: Sla, row: Mapping[str, Any], state: Mapping[str, Any], daily: Sequence[Mapping[str, Any]],
          series: Sequence[Mapping[str, Any]], day0: float, x_range: tuple[float, float]) -> str:
    st = str(state.get("state", "UNKNOWN"))
    status = str(row["status"])
    where = f"route {sla.route} · upstream {row['upstream']}" if sla.route else f"upstream {row['upstream']}"
    maint = state.get("maintenance") or row.get("maintenance_now")
    maint_badge = (f'<span class="badge maintenance" data-maintenance="{escape(str(maint))}">'
                   f'MAINTENANCE: {escape(str(maint))}</span>') if maint else ""
    since = state.get("since")
    since_txt = f" since {_iso(since)}" if since else ""
    last = state.get("last_check")
    last_txt = ""
    if last:
        last_txt = (f'<div class="last">last check {_when(_iso(last["at"]))}: {escape(last["outcome"])}, '
                    f'HTTP {last["status_code"]}, {last["response_time_ms"]:.0f} ms'
                    f'{" — " + escape(last["reason"]) if last["reason"] else ""}</div>')
    lat_target = (f"{row['latency_target_pct']:g} % ≤ {_ms(row['latency_threshold_ms'])}"
                  if row.get("latency_threshold_ms") else "")
    metrics = "".join([
        _metric("probe_uptime_pct", "Probe uptime", _pct(row["probe_uptime_pct"]),
                f"{row['availability_target_pct']:g} %"),
        _metric("request_availability_pct", "Request availability", _pct(row["request_availability_pct"]),
                f"{row['availability_target_pct']:g} %"),
        _metric("latency_compliance_pct", "Latency compliance", _pct(row["latency_compliance_pct"]),
                lat_target),
        _metric("p50_ms", "p50", _ms(row["p50_ms"])),
        _metric("p95_ms", "p95", _ms(row["p95_ms"])),
        _metric("p99_ms", "p99", _ms(row["p99_ms"])),
        _metric("sync_lag_p95_ms", "Sync-lag p95", _ms(row["sync_lag_p95_ms"]),
                _ms(row["sync_lag_target_ms"]) if row.get("sync_lag_target_ms") else ""),
        _metric("budget_remaining_pct", "Error budget left", _pct(row["budget_remaining_pct"], 1),
                note=f"{row['budget_consumed']} bad of {row['budget_total']:.1f} allowed "
                     f"{row['budget_source'] or 'events'}"),
    ])
    bars_svg, overall = _uptime_bars(daily, day0, float(row["availability_target_pct"]))
    charts_html = _latency_charts(sla, row, series, x_range)
    reason = f'<span class="reason">{escape(row["status_reason"])}</span>' if row.get("status_reason") else ""
    st_cls, status_cls = STATE_CLASS.get(st, "unknown"), STATUS_CLASS.get(status, "unknown")
    return f"""
<section class="card state-{st_cls}" data-sla="{escape(sla.name)}" data-state="{escape(st)}"
         data-status="{escape(status)}">
  <header>
    <h2>{escape(sla.name)}</h2><span class="where">{escape(where)}</span>
    <span class="badge {st_cls}" data-role="state" title="current state{since_txt}">{escape(st)}</span>
    <span class="badge {status_cls} outline" data-role="status">SLA {escape(status)}</span>
    {maint_badge}{reason}
  </header>
  {last_txt}
  <div class="metrics">{metrics}</div>
  <div class="strip"><div class="strip-head"><span>{BAR_DAYS} days ago</span><span>{escape(overall)}</span>
    <span>today</span></div>{bars_svg}</div>
  {charts_html}
</section>"""


def _latency_charts(sla: Sla, row: Mapping[str, Any], series: Sequence[Mapping[str, Any]],
                    x_range: tuple[float, float]) -> str:
    def pts(key: str) -> list[tuple[float, float | None]]:
        return [(_epoch(r["bucket"]), r[key]) for r in series]

    lat = [charts.Series("p50", pts("p50_ms"), charts.BLUE), charts.Series("p95", pts("p95_ms"), "#d9782d")]
    thr = row.get("latency_threshold_ms")
    lat_svg = charts.line_chart(lat, x_range=x_range, width=760, height=170, y_label="ms", threshold=thr,
                                threshold_label=f"objective {_ms(thr)}" if thr else "",
                                css_class="chart latency")
    out = (f'<div class="chart-box"><h3>Latency</h3>{charts.legend(lat)}{lat_svg}</div>')
    if any(r["sync_lag_samples"] for r in series) or row.get("sync_lag_target_ms"):
        lag = [charts.Series("sync-lag p95", pts("sync_lag_p95_ms"), "#7b5cc4")]
        tgt = row.get("sync_lag_target_ms")
        lag_svg = charts.line_chart(lag, x_range=x_range, width=760, height=150, y_label="ms", threshold=tgt,
                                    threshold_label=f"target {_ms(tgt)}" if tgt else "",
                                    css_class="chart sync-lag")
        out += f'<div class="chart-box"><h3>Sync lag</h3>{charts.legend(lag)}{lag_svg}</div>'
    return out


def _epoch(v: Any) -> float:
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
    return float(v)


def _incidents_html(incidents: Sequence[Mapping[str, Any]]) -> str:
    if not incidents:
        return '<p class="empty" data-role="no-incidents">No incidents in this window.</p>'
    rows = []
    ordered = sorted(incidents, key=lambda i: i["started_at"], reverse=True)
    for r in sorted(ordered, key=lambda i: not i["open"])[:50]:
        cls = STATE_CLASS.get(r["worst_state"], "unknown")
        end = "ongoing" if r["open"] else _when(r["ended_at"])
        maint = ' <span class="badge maintenance small">maintenance</span>' if r["during_maintenance"] else ""
        reasons = "<br>".join(escape(x) for x in r["reasons"]) or NA
        rows.append(
            f'<tr data-incident="{escape(r["upstream"])}" data-open="{str(r["open"]).lower()}">'
            f'<td>{escape(r["upstream"])}</td>'
            f'<td><span class="badge {cls}">{escape(r["worst_state"])}</span>{maint}</td>'
            f'<td>{_when(r["started_at"])}</td><td>{end}</td>'
            f'<td>{_duration(r["duration_s"])}</td><td class="reasons">{reasons}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("Upstream", "State", "Started", "Ended", "Duration", "Reasons"))
    return f'<table class="incidents"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _when(iso: Any) -> str:
    """ISO-8601 text from the queries as 'YYYY-MM-DD HH:MM:SS UTC'."""
    t = dt.datetime.fromisoformat(str(iso))
    return escape(t.strftime("%Y-%m-%d %H:%M:%S") + " UTC")


def _duration(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _maintenance_html(config: Config, now: float) -> str:
    ivs = maintenance.intervals(config.maintenance, now, now + 7 * 86400)
    if not ivs:
        return '<p class="empty">No maintenance scheduled in the next 7 days.</p>'
    items = []
    for iv in ivs[:30]:
        active = iv.contains(now)
        who = "all upstreams" if iv.upstream == "*" else iv.upstream
        items.append(f'<li data-maintenance-window="{escape(iv.name)}" data-active="{str(active).lower()}">'
                     f'{"<strong>IN PROGRESS</strong> " if active else ""}{escape(iv.name)} — {escape(who)}: '
                     f'{_when(_iso(iv.start))} → {_when(_iso(iv.end))}</li>')
    return ('<ul class="maintenance">' + "".join(items) + "</ul>"
            '<p class="note">Checks keep running during maintenance; '
            'SLA figures leave those periods out.</p>')


def _summary(report: Sequence[Mapping[str, Any]], states: Mapping[str, Mapping[str, Any]]) -> str:
    down = sorted(n for n, s in states.items() if s["state"] == "DOWN")
    degraded = sorted(n for n, s in states.items() if s["state"] == "DEGRADED")
    breached = [r["sla"] for r in report if r["status"] == "BREACHED"]
    if down:
        cls, text = "down", f"Down: {', '.join(down)}"
    elif degraded:
        cls, text = "degraded", f"Degraded: {', '.join(degraded)}"
    else:
        cls, text = "up", "All checked upstreams are up"
    extra = f" · SLA breached: {', '.join(breached)}" if breached else ""
    return f'<div class="summary {cls}" data-role="summary">{escape(text + extra)}</div>'


def _page(config: Config, report: Sequence[Mapping[str, Any]], states: Mapping[str, Mapping[str, Any]],
          cards: Sequence[str], incidents: Sequence[Mapping[str, Any]], window: float, now: float,
          banner: str = "") -> str:
    open_n = sum(1 for i in incidents if i["open"])
    updated = _when(_iso(now))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>Loomgate status</title>
<link rel="stylesheet" href="/static/status.css">
</head><body>
<main>
<div class="top"><h1>Loomgate status</h1>
<span class="meta">window {escape(slamod.format_duration(window))} · updated {updated}</span></div>
{banner}{_summary(report, states)}
{"".join(cards)}
<section class="panel"><h2>Incidents <span class="count" data-role="open-incidents">{open_n} open</span></h2>
{_incidents_html(incidents)}</section>
<section class="panel"><h2>Maintenance</h2>{_maintenance_html(config, now)}</section>
</main></body></html>"""
