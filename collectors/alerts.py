"""Burn-rate alerts: evaluated on a schedule in the gateway process, delivered to webhooks.

Every ``alerts.evaluate_every`` seconds each SLA's burn rates are computed (``queries/burn_rate.sql``, rules
``collectors.sla.DEFAULT_RULES``) for every signal: requests and probes (availability), and latency when
the SLA has a latency objective (its error budget is the share of requests allowed over the
threshold).  A rule of one SLA and one signal
is an alert, keyed ``<sla>/<signal>/<long>/<short>``; an episode starts when it fires and ends when it
stops firing.  Each webhook gets one message when an episode starts and one when it ends, never more
(the open episodes are reloaded from the history at start, so a restart does not page again).

Deliveries run in background tasks with their own HTTP session: up to ``max_retries`` retries with
exponential backoff (``retry_base * 2**attempt``, capped at ``retry_cap``), each attempt bounded by the
webhook's ``timeout``.  They never run on the request path and a failing webhook never blocks
evaluation or proxying.  State changes and delivery outcomes are stored in ``loomgate_alerts``.

Payloads: ``format: json`` posts the alert as an object (status, alert, sla, upstream, route, severity,
signal, rule, objective (and the latency threshold for the latency signal), burn rates, threshold, message,
at); ``format: slack`` posts ``{"text": message}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from collectors.sla import DEFAULT_RULES, BurnRule, burn_rates, effective_slas, sla_upstream
from collectors.store import AsyncStore
from gateway.config import Config, Sla, Webhook

log = logging.getLogger("loomgate.alerts")

TABLE = "loomgate_alerts"
COLUMNS = ("Timestamp", "AlertKey", "Sla", "Upstream", "Route", "Source", "Severity", "LongWindowS",
           "ShortWindowS", "Factor", "Threshold", "LongRatio", "ShortRatio", "Event", "Webhook", "Attempts",
           "Message")
MAX_DELIVERIES = 1000  # bound on concurrent background deliveries; beyond it new ones are dropped (logged)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert starting (``firing``) or ending (``resolved``)."""

    status: str  # firing | resolved
    key: str
    sla: str
    upstream: str
    route: str
    signal: str  # requests | probes | latency
    severity: str
    rule: str  # e.g. 1h/5m
    long_window_s: int
    short_window_s: int
    factor: float
    threshold: float
    long_ratio: float
    short_ratio: float
    long_burn_rate: float
    short_burn_rate: float
    objective: float  # percent: availability, or requests within latency_threshold_ms for latency
    at: float
    latency_threshold_ms: float | None = None

    @property
    def message(self) -> str:
        where = f"route {self.route}" if self.route else f"upstream {self.upstream}"
        long_w, short_w = self.rule.split("/")
        objective = f"{self.objective:g} %"
        if self.signal == "latency" and self.latency_threshold_ms:
            objective += f" within {self.latency_threshold_ms:g} ms"
        if self.status == "firing":
            return (f"[FIRING] {self.severity}: SLA {self.sla} ({where}, {objective}) is burning "
                    f"its error budget at {self.long_burn_rate:.1f}x over {long_w} and "
                    f"{self.short_burn_rate:.1f}x over {short_w} (limit {self.factor:g}x, {self.signal})")
        return (f"[RESOLVED] {self.severity}: SLA {self.sla} ({where}) burn rate back under "
                f"{self.factor:g}x over {self.rule} ({self.signal})")

    def payload(self, fmt: str) -> dict[str, Any]:
        if fmt == "slack":
            return {"text": self.message}
        return {
            "status": self.status, "alert": self.key, "sla": self.sla, "upstream": self.upstream,
            "route": self.route or None, "signal": self.signal, "severity": self.severity, "rule": self.rule,
            "objective_pct": self.objective, "latency_threshold_ms": self.latency_threshold_ms,
            "factor": self.factor, "threshold": self.threshold,
            "long_error_ratio": self.long_ratio, "short_error_ratio": self.short_ratio,
            "long_burn_rate": self.long_burn_rate, "short_burn_rate": self.short_burn_rate,
            "message": self.message, "at": dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat(),
        }

    def row(self, event: str, webhook: str = "", attempts: int = 0, message: str = "") -> tuple[Any, ...]:
        return (dt.datetime.fromtimestamp(time.time() if event.startswith("deliver") else self.at, dt.UTC),
                self.key, self.sla, self.upstream, self.route, self.signal, self.severity, self.long_window_s,
                self.short_window_s, self.factor, self.threshold, self.long_ratio, self.short_ratio, event,
                webhook, attempts, message or self.message)


@dataclass
class AlertManager:
    config: Config
    store: AsyncStore
    health: Any = None
    rules: tuple[BurnRule, ...] = DEFAULT_RULES
    retry_base: float = 1.0
    retry_cap: float = 60.0
    active: dict[str, AlertEvent] = field(default_factory=dict)  # open episodes by key
    restored: set[str] = field(default_factory=set)  # keys open at start according to the history
    evaluations: int = 0
    evaluation_errors: int = 0
    _deliveries: set[asyncio.Task[None]] = field(default_factory=set)
    _loop_task: asyncio.Task[None] | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self, *, schedule: bool = True) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": "loomgate-alerts/1"})
        await self._restore()
        if schedule:
            self._loop_task = asyncio.create_task(self._run(), name="alerts:evaluate")

    async def _restore(self) -> None:
        try:
            res = await self.store.query(
                f"SELECT AlertKey, argMax(Event, Timestamp) FROM {TABLE} "
                "WHERE Event IN ('firing', 'resolved') GROUP BY AlertKey")
        except Exception as exc:  # no history yet (or store down): start with no open episodes
            log.warning("alert history not readable, starting without open alerts: %s", exc)
            return
        self.restored = {key for key, event in res.rows if event == "firing"}

    async def _run(self) -> None:
        while True:
            try:
                await self.evaluate_once()
            except Exception:
                self.evaluation_errors += 1
                log.exception("burn-rate evaluation failed")
            await asyncio.sleep(self.config.alerts.evaluate_every)

    async def evaluate_once(self, now: float | None = None) -> list[AlertEvent]:
        """Evaluate every rule of every SLA once; notify and record the episodes that start or end."""
        at = time.time() if now is None else now
        changes: list[AlertEvent] = []
        for sla in effective_slas(self.config):
            for row in await burn_rates(self.store, self.config, sla, now=at, rules=self.rules):
                ev = self._event(sla, row, at)
                if row["firing"] and ev.key not in self.active:
                    self.active[ev.key] = ev
                    if ev.key not in self.restored:  # already announced before a restart
                        changes.append(ev)
                elif not row["firing"] and ev.key in self.active:
                    del self.active[ev.key]
                    changes.append(_resolved(ev))
                if not row["firing"]:
                    self.restored.discard(ev.key)
        self.evaluations += 1
        if changes:
            await self._record([c.row(c.status) for c in changes])
            for c in changes:
                log.warning("%s", c.message)
                self._notify(c)
        return changes

    def _event(self, sla: Sla, row: dict[str, Any], at: float) -> AlertEvent:
        key = f"{sla.name}/{row['source']}/{row['label']}"
        return AlertEvent(
            status="firing", key=key, sla=sla.name, upstream=sla_upstream(self.config, sla),
            route=sla.route or "", signal=row["source"], severity=row["severity"], rule=row["label"],
            long_window_s=int(row["long_window_s"]), short_window_s=int(row["short_window_s"]),
            factor=float(row["factor"]), threshold=float(row["threshold"]),
            long_ratio=float(row["long_error_ratio"]), short_ratio=float(row["short_error_ratio"]),
            long_burn_rate=float(row["long_burn_rate"]), short_burn_rate=float(row["short_burn_rate"]),
            objective=float(row["objective_pct"]), at=at,
            latency_threshold_ms=sla.latency.threshold * 1000.0 if sla.latency else None)

    def _notify(self, ev: AlertEvent) -> None:
        for wh in self.config.alerts.webhooks:
            if len(self._deliveries) >= MAX_DELIVERIES:
                log.error("too many pending webhook deliveries; dropping %s to %s", ev.key, wh.name)
                continue
            task = asyncio.create_task(self._deliver(wh, ev), name=f"alerts:deliver:{wh.name}")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, wh: Webhook, ev: AlertEvent) -> None:
        assert self._session is not None
        body = ev.payload(wh.format)
        error = ""
        attempts = 0
        for attempt in range(wh.max_retries + 1):
            attempts = attempt + 1
            try:
                async with self._session.post(wh.url, json=body,
                                              timeout=aiohttp.ClientTimeout(total=wh.timeout)) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        await self._record([ev.row("delivered", wh.name, attempts, ev.message)])
                        return
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < wh.max_retries:
                await asyncio.sleep(min(self.retry_cap, self.retry_base * 2 ** attempt))
        log.error("webhook %s: giving up on %s after %d attempts (%s)", wh.name, ev.key, attempts, error)
        await self._record([ev.row("delivery_failed", wh.name, attempts, error)])

    async def _record(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            await self.store.insert(TABLE, rows, COLUMNS)
        except Exception as exc:  # history is best effort; alerting goes on
            log.warning("storing %d alert history rows failed: %s", len(rows), exc)

    async def wait_deliveries(self, timeout: float) -> None:
        """Wait (bounded) for background deliveries to finish."""
        pending = set(self._deliveries)
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def close(self, grace: float = 5.0) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        await self.wait_deliveries(grace)
        for t in list(self._deliveries):
            t.cancel()
        for t in list(self._deliveries):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._session is not None:
            await self._session.close()
            self._session = None


def _resolved(ev: AlertEvent) -> AlertEvent:
    return replace(ev, status="resolved")


async def start_alerts(config: Config, store: AsyncStore, health: Any = None, *, schedule: bool = True,
                       retry_base: float = 1.0, retry_cap: float = 60.0) -> AlertManager:
    """Start evaluating burn-rate rules every ``alerts.evaluate_every`` seconds; ``close()`` stops."""
    mgr = AlertManager(config, store, health, retry_base=retry_base, retry_cap=retry_cap)
    await mgr.start(schedule=schedule)
    return mgr
