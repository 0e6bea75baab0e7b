"""``loomgate demo``: sample upstreams, the gateway and simulated partners in one process, then reports.

What runs, all on loopback:
  * two sample upstreams (``gateway.sample_upstreams``) on ephemeral ports, with the demo's fault plan: a
    slow period, a 5xx burst, an outage, responses dying mid-body;
  * the gateway from ``config/demo.yaml`` with its upstream URLs rewritten to the sample upstreams and its
    telemetry writing to the embedded ClickHouse store under ``--data-dir``;
  * an alert webhook receiver (the config's ``demo-receiver`` webhook points at it);
  * simulated partners (``gateway.demo_traffic``) at a paced rate with bounded concurrency.

At the end (``--duration`` reached, or Ctrl-C) the demo waits until every request it sent has its span in
the store, then prints the per route / partner summary computed by SQL (``queries/demo_summary.sql``), and
the SLA, incident and KPI reports of the features that are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from collectors import resources
from gateway.config import Config
from gateway.demo_traffic import ALL_ARTISANS, DEMO_KEYS, TrafficStats, drive_traffic
from gateway.sample_upstreams import ApiKind, FaultPlan, SampleUpstream, run_fault_plan, sample_upstreams

DEFAULT_CONFIG = resources.example_config("demo.yaml")  # package data, found from any directory
KPI_HISTORY_ARGS = ("--scale", "0.3", "--artisans", "40", "--seed", "7")
RECEIVER_WEBHOOK = "demo-receiver"  # the webhook in demo.yaml that the demo's own receiver replaces
UPSTREAM_APIS: dict[str, ApiKind] = {"inventory": "inventory", "orders": "orders"}  # config name -> API


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float | None  # None: until Ctrl-C
    data_dir: Path
    config_path: Path
    port: int | None  # None: the config's port (or a free one when it is taken)
    admin_port: int | None
    rate: float
    workers: int
    seed: int
    kpi: bool


# ------------------------------------------------------------------------------------------- options
def parse_args(argv: list[str]) -> DemoOptions:
    p = argparse.ArgumentParser(
        prog="loomgate demo",
        description="Run sample upstreams, the gateway and simulated partners on loopback, then print "
                    "reports computed by SQL from the embedded ClickHouse store.")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of traffic (default: until Ctrl-C)")
    p.add_argument("--data-dir", default="./demo-data", help="telemetry data directory (default ./demo-data)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="demo config (default: the demo.yaml shipped with loomgate)")
    p.add_argument("--port", type=int, default=None, help="partner port (0 = any free port)")
    p.add_argument("--admin-port", type=int, default=None, help="admin port (0 = any free port)")
    p.add_argument("--rate", type=float, default=150.0, help="partner requests per second (default 150)")
    p.add_argument("--workers", type=int, default=16, help="requests in flight at most (default 16)")
    p.add_argument("--seed", type=int, default=42, help="traffic seed (default 42)")
    p.add_argument("--no-kpi", action="store_true", help="skip loading the generated KPI history")
    a = p.parse_args(argv)
    if a.duration is not None and a.duration <= 0:
        p.error("--duration must be positive")
    return DemoOptions(duration=a.duration, data_dir=Path(a.data_dir), config_path=Path(a.config),
                       port=a.port, admin_port=a.admin_port, rate=max(1.0, min(a.rate, 2000.0)),
                       workers=max(1, min(a.workers, 256)), seed=a.seed, kpi=not a.no_kpi)


def port_or_free(host: str, port: int) -> int:
    """``port`` when it can be bound on ``host``, else 0 (the listener then takes any free port)."""
    if port == 0:
        return 0
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return 0
    return port


def _pick_port(requested: int | None, host: str, configured: int) -> int:
    return requested if requested is not None else port_or_free(host, configured)


def demo_config(config: Config, upstream_urls: Mapping[str, str], receiver_url: str | None,
                opts: DemoOptions) -> Config:
    """The loaded config, pointed at this run's sample upstreams, receiver, ports and data directory."""
    missing = [name for name in upstream_urls if name not in {u.name for u in config.upstreams}]
    if missing:
        raise ValueError(f"{config.source}: upstreams {', '.join(missing)} are missing; the demo needs "
                         f"upstreams named {', '.join(UPSTREAM_APIS)}")
    upstreams = tuple(replace(u, url=upstream_urls.get(u.name, u.url)) for u in config.upstreams)
    partner, admin = config.partner_listener, config.admin_listener
    partner = replace(partner, port=_pick_port(opts.port, partner.host, partner.port))
    admin = replace(admin, port=_pick_port(opts.admin_port, admin.host, admin.port))
    webhooks = tuple(replace(w, url=receiver_url) if w.name == RECEIVER_WEBHOOK and receiver_url else w
                     for w in config.alerts.webhooks)
    data_dir = opts.data_dir.resolve()
    telemetry = replace(config.telemetry, enabled=True, data_dir=str(data_dir), store="",
                        spool=replace(config.telemetry.spool, dir=str(data_dir / "spool")))
    return replace(config, upstreams=upstreams, partner_listener=partner, admin_listener=admin,
                   telemetry=telemetry, alerts=replace(config.alerts, webhooks=webhooks))


def partner_scopes(config: Config) -> dict[str, tuple[str, ...]]:
    """Artisans each demo partner may act for, from the config ("*" = every demo artisan)."""
    scopes = {}
    for p in config.partners:
        if p.id in DEMO_KEYS:
            scopes[p.id] = ALL_ARTISANS if p.artisans == "*" else tuple(p.artisans)
    return scopes


def check_demo_keys(config: Config) -> list[str]:
    """Partners whose demo key no longer matches the config's digest (someone edited demo.yaml)."""
    digests = {p.id: set(p.api_key_sha256) for p in config.partners}
    return [pid for pid, key in DEMO_KEYS.items()
            if hashlib.sha256(key.encode()).hexdigest() not in digests.get(pid, set())]


# ------------------------------------------------------------------------------------------ progress
@dataclass
class Progress:
    """One status line on stderr: rewritten in place on a terminal, every few seconds otherwise."""

    stats: TrafficStats
    plan: FaultPlan
    started: float
    duration: float | None
    out: TextIO = field(default_factory=lambda: sys.stderr)
    _last_plain: float = 0.0
    _width: int = 0

    @property
    def tty(self) -> bool:
        return bool(getattr(self.out, "isatty", lambda: False)())

    def line(self) -> str:
        t = time.monotonic() - self.started
        s = self.stats
        share = 100.0 * s.errors / s.sent if s.sent else 0.0
        clock = f"{t:5.1f}s/{self.duration:g}s" if self.duration else f"{t:5.1f}s"
        return (f"[{clock}] {s.sent:,} requests  {s.errors:,} errors ({share:.1f}%)  "
                f"{s.rps():.0f} req/s  phase: {self.plan.label(t)}")

    def update(self) -> None:
        text = self.line()
        if self.tty:
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.out.flush()
        elif time.monotonic() - self._last_plain >= 5.0:
            self._last_plain = time.monotonic()
            print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        """Print a message above the status line."""
        if self.tty:
            self.out.write("\r" + " " * self._width + "\r")
        print(text, file=self.out, flush=True)
        if self.tty:
            self.update()

    def finish(self) -> None:
        """Leave the final counts on their own line."""
        if self.tty:
            self.update()
            self.out.write("\n")
        else:
            print(self.line(), file=self.out)
        self.out.flush()


class ProgressLogHandler(logging.Handler):
    """Routes the gateway's warnings (alerts firing, health changes) above the live status line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(level=logging.WARNING)
        self.progress = progress
        self.setFormatter(logging.Formatter("  %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # logging must never break the demo
            self.progress.note(self.format(record))


@contextlib.contextmanager
def logs_above(progress: Progress) -> Iterator[None]:
    handler = ProgressLogHandler(progress)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


# ------------------------------------------------------------------------------------ alert receiver
@dataclass
class AlertReceiver:
    """Collects what the alert manager delivers to the demo's webhook (listed in the closing report)."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response({"ok": False}, status=400)
        if isinstance(payload, dict):
            self.received.append(payload)
        return web.json_response({"ok": True})


@contextlib.asynccontextmanager
async def alert_receiver() -> AsyncIterator[AlertReceiver]:
    receiver = AlertReceiver()
    app = web.Application()
    app.router.add_post("/alerts", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # the bound asyncio server: the only place the ephemeral port is known
    port = server.sockets[0].getsockname()[1] if server is not None and server.sockets else 0
    receiver.url = f"http://127.0.0.1:{port}/alerts"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def describe_alert(payload: Mapping[str, Any]) -> str:
    """A one-line rendering of a webhook payload whatever its exact shape."""
    inner = payload.get("alert") if isinstance(payload.get("alert"), Mapping) else payload
    for key in ("summary", "message", "text"):
        if isinstance(inner.get(key), str) and inner[key]:
            return inner[key]
    parts = [str(inner.get(k)) for k in ("state", "status", "severity", "name", "sla", "upstream")
             if inner.get(k) not in (None, "")]
    return " ".join(parts) if parts else json.dumps(payload)[:160]


# ----------------------------------------------------------------------------------------- reporting
async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def wait_for_spans(store: Any, expected: int, start: datetime, service: str,
                         timeout: float = 30.0) -> int:
    """Poll until the store holds ``expected`` SERVER spans since ``start`` (or the timeout passes)."""
    from collectors.querylib import run_query

    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        result = await run_query(store, "demo_span_count", {"start": start.isoformat(), "service": service})
        count = int(result.rows[0][0]) if result.rows else 0
        if count >= expected:
            break
        await asyncio.sleep(0.5)
    return count


SUMMARY_LEGEND = (
    "errors = err_gateway + err_upstream + err_client (who failed: the gateway refused or failed the call,\n"
    "the upstream failed, or the partner stalled); status_4xx / status_5xx / aborted count answers by HTTP\n"
    "status, errors or not (an upstream's own 4xx passed through, such as 404, is not an error).")
SCORECARD_LEGEND = (
    "integration uptime is probe uptime: the time every upstream's health checks found it up, over the\n"
    "scorecard's window (the last 30 days, generated history included). The SLA report above counts the\n"
    "demo's run only, per SLA, and its request availability also counts failed requests, so the two can\n"
    "disagree: an upstream can answer its health check while requests through it fail.")


def _heading(title: str, out: TextIO) -> None:
    print(f"\n== {title} " + "=" * max(3, 72 - len(title)), file=out)


async def print_summary(store: Any, start: datetime, end: datetime, service: str, out: TextIO) -> int:
    """The per route / partner table, computed by SQL; returns its number of rows."""
    from collectors.querylib import render, run_query

    result = await run_query(store, "demo_summary", {"start": start.isoformat(), "end": end.isoformat()})
    _heading("Calls per route and partner (SQL over the call rollup: queries/demo_summary.sql)", out)
    print(render(result, "table"), file=out, end="")
    print(SUMMARY_LEGEND, file=out)
    lag = await run_query(store, "demo_sync_lag", {"start": start.isoformat(), "end": end.isoformat(),
                                                   "service": service, "target_s": "5"})
    _heading("Inventory sync lag per artisan, target < 5 s (queries/demo_sync_lag.sql)", out)
    print(render(lag, "table"), file=out, end="")
    return len(result.rows)


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


async def print_sla(store: Any, config: Config, start: datetime, end: datetime, out: TextIO) -> None:
    """SLA report and incidents over the demo's run (when the SLA feature is installed)."""
    sla = _module("collectors.sla")
    if sla is None or not hasattr(sla, "sla_report"):
        return
    # Request counts come from per-minute rollups, counted when the minute starts inside the window: start
    # the window at the minute the demo started so its first minute is in.
    first_minute = start.replace(second=0, microsecond=0)
    window = max(60.0, (end - first_minute).total_seconds())
    rows = await _maybe_await(sla.sla_report(store, config, window, now=end.timestamp()))
    _heading(f"SLA report since {first_minute:%H:%M} UTC, the demo's first minute (collectors.sla)", out)
    print(sla.format_table(rows), file=out)
    if hasattr(sla, "incidents"):
        found = await _maybe_await(sla.incidents(store, config, start.timestamp(), end.timestamp()))
        _heading("Incidents seen by the health checks", out)
        print(sla.format_incidents(found), file=out)


async def print_insights(store: Any, out: TextIO) -> None:
    """Health-vs-retention findings and the benchmark scorecard, when those named queries exist."""
    querylib = _module("collectors.querylib")
    if querylib is None:
        return
    available = {q.name for q in querylib.list_queries()}
    for name, title in (("health_vs_retention", "Integration health vs artisan retention"),
                        ("benchmark_scorecard", "KPI scorecard against the marketplace's benchmarks")):
        if name not in available:
            continue
        result = await querylib.run_query(store, name, {})
        if name == "health_vs_retention" and result.rows:
            first = result.dicts()[0]
            title += f", {first['tests']} tests, FDR {100 * first['fdr']:g} %"
        _heading(f"{title} (queries/{name}.sql)", out)
        print(querylib.render(result, "table"), file=out, end="")
        if name == "benchmark_scorecard":
            print(SCORECARD_LEGEND, file=out)


KPI_MARKER = ".demo-kpi-history"  # in the data dir: the history is generated once per data directory


async def load_kpi_history(config: Config, out: TextIO) -> None:
    """Generate a KPI and call history for the demo's artisans into the store, once per data directory.

    Runs ``loomgate generate`` as a child process *before* the gateway starts: an embedded store can be
    open in one process at a time.  Skipped when the generator is not installed.
    """
    if importlib.util.find_spec("collectors.generate") is None:
        return
    data_dir = Path(config.telemetry.data_dir)
    marker = data_dir / KPI_MARKER
    if marker.exists():
        print(f"  KPI history   already loaded ({marker.read_text().strip()})", file=out, flush=True)
        return
    print("  KPI history   generating 90 days of calls and 180 days of KPIs for 40 artisans "
          "(first run only) ...", file=out, flush=True)
    cmd = [sys.executable, "-m", "gateway.cli", "generate", "--data-dir", str(data_dir),
           "--database", config.telemetry.database, "--service-name", config.telemetry.service_name,
           *KPI_HISTORY_ARGS, "--no-progress"]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        print("  KPI history   not loaded: the generator took longer than 300 s", file=out, flush=True)
        return
    text = output.decode(errors="replace").strip()
    if proc.returncode != 0:
        print(f"  KPI history   not loaded: generator exited {proc.returncode}: {text[-500:]}", file=out)
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(text.splitlines()[-1] + "\n" if text else "done\n")
    print("  KPI history   " + (text.splitlines()[-1] if text else "done"), file=out, flush=True)


# ------------------------------------------------------------------------------------------------ run
def _install_signals(stop: asyncio.Event, progress_note: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # second Ctrl-C: leave at once
            os._exit(130)
        progress_note("stopping: flushing telemetry and computing the reports (Ctrl-C again to quit now)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)


async def _run_until(stop: asyncio.Event, duration: float | None) -> None:
    if duration is None:
        await stop.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    stop.set()


def _banner(gw: Any, config: Config, opts: DemoOptions, ups: Mapping[str, SampleUpstream],
            out: TextIO) -> None:
    print("Loomgate demo", file=out)
    print(f"  partner API   {gw.partner_url}", file=out)
    print(f"  status page   {gw.admin_url}/status   (admin token: {config.admin_listener.token})", file=out)
    for name, up in ups.items():
        print(f"  upstream      {name:<10} {up.url}", file=out)
    print(f"  telemetry     {config.store_dsn}  (database {config.telemetry.database})", file=out)
    keys = ", ".join(f"{pid}={key}" for pid, key in DEMO_KEYS.items())
    print(f"  demo API keys {keys}", file=out)
    when = f"for {opts.duration:g} s" if opts.duration else "until Ctrl-C"
    print(f"  traffic       ~{opts.rate:g} req/s from 4 partners for 12 artisans, {when}",
          file=out, flush=True)


async def run_demo(config: Config, opts: DemoOptions, *, out: TextIO = sys.stdout,
                   err: TextIO = sys.stderr,
                   ready: Callable[[Any], Awaitable[None] | None] | None = None) -> int:
    from gateway.server import run_gateway
    from gateway.startup import preflight

    stats = TrafficStats()
    plan = FaultPlan.demo(opts.duration)
    stop = asyncio.Event()
    specs: list[tuple[str, ApiKind]] = list(UPSTREAM_APIS.items())
    async with sample_upstreams(specs, seed=opts.seed) as ups, alert_receiver() as receiver:
        cfg = demo_config(config, {n: u.url for n, u in ups.items()}, receiver.url, opts)
        progress = Progress(stats, plan, time.monotonic(), opts.duration, err)
        receiver.on_alert = lambda payload: progress.note("ALERT " + describe_alert(payload))
        _install_signals(stop, progress.note)
        preflight(cfg)  # before the KPI history opens the store
        if opts.kpi:
            await load_kpi_history(cfg, out)
        async with run_gateway(cfg) as gw:
            _banner(gw, cfg, opts, ups, out)
            store = gw.services.store
            if ready is not None:
                await _maybe_await(ready(gw))
            started_wall = datetime.now(UTC)
            progress.started = time.monotonic()
            faults = asyncio.create_task(run_fault_plan(plan, ups, started=progress.started))
            traffic = asyncio.create_task(drive_traffic(gw.partner_url, stats, stop, rate=opts.rate,
                                                        workers=opts.workers, seed=opts.seed,
                                                        scopes=partner_scopes(cfg),
                                                        on_tick=progress.update))
            try:
                with logs_above(progress):
                    await _run_until(stop, opts.duration)
                    await traffic
            finally:
                stop.set()
                faults.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await faults
                progress.finish()
            ended_wall = datetime.now(UTC)
            if store is None:
                print("telemetry has no store: no SQL reports", file=err)
                return 1
            return await _report(store, cfg, stats, started_wall, ended_wall, receiver, out, err)


async def _report(store: Any, cfg: Config, stats: TrafficStats, start: datetime, end: datetime,
                  receiver: AlertReceiver, out: TextIO, err: TextIO) -> int:
    service = cfg.telemetry.service_name
    print("waiting for telemetry to reach the store ...", file=err, flush=True)
    stored = await wait_for_spans(store, stats.sent, start, service)
    print(f"{stored:,} spans stored for {stats.sent:,} requests sent "
          f"({stats.answered:,} answered, {stats.failed:,} without an HTTP answer)", file=err, flush=True)
    rows = await print_summary(store, start, datetime.now(UTC), service, out)
    await print_sla(store, cfg, start, end, out)
    if receiver.received:
        _heading(f"Alerts delivered to the demo webhook ({len(receiver.received)})", out)
        for payload in receiver.received:
            print("  " + describe_alert(payload), file=out)
    await print_insights(store, out)
    out.flush()
    return 0 if rows else 1


def cli_main(argv: list[str]) -> int:
    opts = parse_args(argv)
    from gateway.config_loader import load_config_or_report

    config = load_config_or_report(opts.config_path)
    if config is None:
        return 2
    stale = check_demo_keys(config)
    if stale:
        print(f"{opts.config_path}: partners {', '.join(stale)}: api_keys no longer match the demo keys in "
              "gateway/demo_traffic.py", file=sys.stderr)
        return 2
    from gateway.startup import StartupError, describe

    try:
        return asyncio.run(run_demo(config, opts))
    except ValueError as exc:
        print(f"loomgate demo: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"loomgate demo: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a sample upstream's or the alert receiver's port
        print(f"loomgate demo: cannot start: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
