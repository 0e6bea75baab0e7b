"""SLA reports, burn rates and incidents: run the queries in ``queries/`` for the configured SLAs.

SLA definitions come from ``config.slas``; when none are configured every upstream gets an implicit SLA
(named after it, 99.9 % availability over 30 days) so the report is never empty.  Maintenance windows are
expanded for the report window (``collectors.maintenance``) and passed to the SQL as parameters.

``loomgate sla [--config FILE] [--window 30d] [--format table|json|csv]`` prints the report.  With an
embedded store (``chdb://``) only one process may open it, so the command first asks a running gateway
(``GET /api/sla`` on the admin listener with the configured admin token) and opens the store itself only
when no gateway answers.  With a ClickHouse server it queries the server directly.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collectors import cli_store, maintenance
from collectors.querylib import converter_for, jsonable, load_query
from collectors.store import AsyncStore, QueryResult
from gateway.config import Config, Sla

DEFAULT_WINDOW = 30 * 86400.0
_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Windows are bounded so window arithmetic stays inside the store's DateTime64 range (1900-2299).
MIN_WINDOW = 1.0
MAX_WINDOW = 3650 * 86400.0


@dataclass(frozen=True, slots=True)
class BurnRule:
    """One multiwindow burn-rate rule: fire when both windows burn faster than ``factor``."""

    long_s: int
    short_s: int
    budget_fraction: float  # share of the window's error budget this rule lets burn in long_s
    severity: str  # page | ticket

    def factor(self, window_s: float) -> float:
        """factor = budget fraction x window hours ÷ long-window hours."""
        return self.budget_fraction * window_s / self.long_s

    @property
    def label(self) -> str:
        return f"{format_duration(self.long_s)}/{format_duration(self.short_s)}"


# The SRE workbook's rules for a 30-day window (14.4x, 6x, 3x, 1x); factors follow from the SLA's window.
DEFAULT_RULES: tuple[BurnRule, ...] = (
    BurnRule(3600, 300, 0.02, "page"),
    BurnRule(6 * 3600, 1800, 0.05, "page"),
    BurnRule(86400, 2 * 3600, 0.10, "ticket"),
    BurnRule(3 * 86400, 6 * 3600, 0.10, "ticket"),
)


def parse_window(text: str) -> float:
    """``30d`` / ``12h`` / ``90m`` / ``3600s`` / ``2w`` → seconds; ``ValueError`` otherwise."""
    m = _WINDOW_RE.match(text)
    if m is None or float(m[1]) <= 0:
        raise ValueError(f"window {text!r} is not a positive duration like 30d, 12h, 90m or 3600s")
    seconds = float(m[1]) * _UNITS[m[2]]
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise ValueError(f"window {text.strip()!r} is out of range: from 1s to 3650d")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def effective_slas(config: Config) -> tuple[Sla, ...]:
    if config.slas:
        return config.slas
    return tuple(Sla(name=u.name, upstream=u.name) for u in config.upstreams)


def sla_upstream(config: Config, sla: Sla) -> str:
    """The upstream an SLA covers (a route SLA covers its route's upstream)."""
    if sla.upstream:
        return sla.upstream
    for r in config.routes:
        if r.name == sla.route:
            return r.upstream
    raise ValueError(f"sla {sla.name!r}: route {sla.route!r} is not configured")


def maintenance_params(config: Config, start: float, end: float) -> dict[str, list[Any]]:
    ivs = maintenance.intervals(config.maintenance, start, end)
    triples = maintenance.as_param(ivs)
    return {"maint_upstreams": [t[0] for t in triples], "maint_starts": [t[1] for t in triples],
            "maint_ends": [t[2] for t in triples]}


def maintenance_seconds(config: Config, upstream: str, start: float, end: float) -> float:
    """Seconds of [start, end) covered by maintenance for ``upstream`` (overlaps counted once)."""
    spans = sorted((max(i.start, start), min(i.end, end))
                   for i in maintenance.intervals(config.maintenance, start, end) if i.applies_to(upstream))
    total = 0.0
    cur: tuple[float, float] | None = None
    for s, e in spans:
        if cur is not None and s <= cur[1]:
            cur = (cur[0], max(cur[1], e))
            continue
        if cur is not None:
            total += cur[1] - cur[0]
        cur = (s, e)
    if cur is not None:
        total += cur[1] - cur[0]
    return total


def utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


async def run_named(store: AsyncStore, name: str, params: Mapping[str, Any],
                    now: dt.datetime | None = None) -> QueryResult:
    """Run ``queries/NAME.sql`` with typed values; parameters not given take their declared defaults."""
    query = load_query(name)
    now = now or dt.datetime.now(dt.UTC)
    values: dict[str, Any] = {}
    for pname, ptype in query.params.items():
        if pname in params:
            values[pname] = params[pname]
        elif pname in query.defaults:
            values[pname] = converter_for(ptype)(query.defaults[pname], now)
        else:
            raise ValueError(f"query {name!r}: parameter {pname!r} is required")
    return await store.query(query.sql, parameters=values)


def _sla_params(config: Config, sla: Sla, start: float, end: float) -> dict[str, Any]:
    upstream = sla_upstream(config, sla)
    return {
        "sla": sla.name, "upstream": upstream, "route": sla.route or "",
        "availability_target": sla.availability,
        "latency_threshold_ms": sla.latency.threshold * 1000.0 if sla.latency else 0.0,
        "latency_target": sla.latency.target if sla.latency else 95.0,
        "sync_lag_target_ms": (sla.sync_lag_p95 or 0.0) * 1000.0,
        **maintenance_params(config, start, end),
    }


async def sla_report(store: AsyncStore, config: Config, window_s: float | None = None,
                     now: float | None = None) -> list[dict[str, Any]]:
    """One dict per SLA (``window_s`` overrides each SLA's own window), JSON-ready values."""
    end = time.time() if now is None else now
    out = []
    for sla in effective_slas(config):
        window = window_s or sla.window
        start = end - window
        params = {**_sla_params(config, sla, start, end), "start": utc(start), "end": utc(end)}
        res = await run_named(store, "sla_report", params)
        row = {k: jsonable(v) for k, v in res.dicts()[0].items()}
        upstream = params["upstream"]
        row["window_s"] = window
        row["maintenance_s"] = round(maintenance_seconds(config, upstream, start, end), 3)
        active = maintenance.active(config.maintenance, upstream, end)
        row["maintenance_now"] = active.name if active else None
        out.append(row)
    return out


async def burn_rates(store: AsyncStore, config: Config, sla: Sla, *, now: float | None = None,
                     rules: Sequence[BurnRule] = DEFAULT_RULES) -> list[dict[str, Any]]:
    """Every (signal, rule) of one SLA, with the rule's severity and label."""
    end = time.time() if now is None else now
    longest = max(r.long_s for r in rules)
    params = _sla_params(config, sla, end - longest, end)
    latency_objective = params.pop("latency_target")
    for k in ("sla", "availability_target", "sync_lag_target_ms"):
        params.pop(k)
    params.update(now=utc(end), objective=sla.availability, latency_objective=latency_objective,
                  window_hours=sla.window / 3600.0,
                  long_windows_s=[r.long_s for r in rules], short_windows_s=[r.short_s for r in rules],
                  budget_fractions=[r.budget_fraction for r in rules])
    res = await run_named(store, "burn_rate", params)
    out = []
    for row in res.dicts():
        rule = rules[int(row["rule"]) - 1]
        out.append({"sla": sla.name, "severity": rule.severity, "label": rule.label,
                    **{k: jsonable(v) for k, v in row.items()}, "firing": bool(row["firing"])})
    return out


async def incidents(store: AsyncStore, config: Config, start: float, end: float,
                    upstream: str = "") -> list[dict[str, Any]]:
    params = {"start": utc(start), "end": utc(end), "upstream": upstream,
              **maintenance_params(config, start, end)}
    res = await run_named(store, "incidents", params)
    rows = []
    for r in res.dicts():
        d = {k: jsonable(v) for k, v in r.items()}
        d["open"], d["during_maintenance"] = bool(r["open"]), bool(r["during_maintenance"])
        rows.append(d)
    return rows


# ------------------------------------------------------------------------------------------- rendering

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sla", "SLA"), ("upstream", "UPSTREAM"), ("route", "ROUTE"), ("status", "STATUS"),
    ("probe_uptime_pct", "PROBE UP %"), ("request_availability_pct", "AVAIL %"),
    ("availability_target_pct", "TARGET %"), ("latency_compliance_pct", "LAT OK %"),
    ("p50_ms", "P50 ms"), ("p95_ms", "P95 ms"), ("p99_ms", "P99 ms"), ("sync_lag_p95_ms", "LAG P95 ms"),
    ("budget_remaining_pct", "BUDGET LEFT %"), ("requests", "REQUESTS"), ("checks", "CHECKS"),
)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width table of SLA report rows, with the status reason underneath when there is one."""
    header = [h for _, h in TABLE_COLUMNS]
    body = [[_cell(r.get(k)) for k, _ in TABLE_COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(header, widths, strict=True)).rstrip()]
    for cells in body:
        lines.append("  ".join(x.ljust(w) for x, w in zip(cells, widths, strict=True)).rstrip())
    notes = [f"  {r['sla']}: {r['status']} — {r['status_reason']}" for r in rows if r.get("status_reason")]
    notes += [f"  {r['sla']}: {r['maintenance_s']:.0f} s of maintenance excluded"
              for r in rows if r.get("maintenance_s")]
    return "\n".join(lines + notes)


def format_incidents(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "no incidents"
    out = []
    for r in rows:
        end = "ongoing" if r["open"] else r["ended_at"]
        reasons = "; ".join(r["reasons"]) or "-"
        maint = " (maintenance)" if r.get("during_maintenance") else ""
        out.append(f"{r['upstream']}: {r['worst_state']} {r['started_at']} → {end} "
                   f"({r['duration_s']:.0f} s){maint}: {reasons}")
    return "\n".join(out)


def format_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loomgate sla", description="Print the uptime and latency SLA report.")
    p.add_argument("--config", default="loomgate.yaml", help="config file (default: loomgate.yaml)")
    p.add_argument("--window", default=None, help="report window, e.g. 30d, 7d, 12h (default: each SLA's)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--direct", action="store_true",
                   help="open the store directly (embedded stores: only when no gateway runs)")
    return p


def _fetch_from_gateway(target: cli_store.StoreTarget, window: str | None) -> list[dict[str, Any]] | None:
    """The report from a running gateway's admin API, or None when no gateway answers."""
    body = cli_store.admin_get(target, "/api/sla", {"window": window} if window else None, timeout=30)
    return None if body is None else list(body["slas"])


def _report_direct(target: cli_store.StoreTarget, config: Config,
                   window_s: float | None) -> list[dict[str, Any]]:
    import asyncio

    from collectors.store import ThreadStore

    store = cli_store.open_store(target, instead="leave out --direct to ask its admin API")
    try:
        return asyncio.run(sla_report(ThreadStore(store), config, window_s))
    finally:
        store.close()


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        window_s = parse_window(args.window) if args.window else None
    except ValueError as exc:
        print(f"loomgate sla: --window: {exc}", file=sys.stderr)
        return 2
    try:
        target = cli_store.resolve(args.config, None, None)
        config = cli_store.require_config(target)
    except cli_store.StoreTargetError as exc:
        print(f"loomgate sla: {exc}", file=sys.stderr)
        return 2
    from collectors.store import StoreError

    try:
        rows = None
        if target.gateway_owned and not args.direct:
            rows = _fetch_from_gateway(target, args.window)
        if rows is None:
            rows = _report_direct(target, config, window_s)
    except (cli_store.StoreTargetError, StoreError) as exc:
        print(f"loomgate sla: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"slas": rows}, indent=2))
    elif args.format == "csv":
        print(format_csv(rows), end="")
    else:
        print(format_table(rows))
    return 0
