"""Fixtures for the SLA, health-check, alert and status-page tests: a store with the schema applied, a
real upstream whose behaviour can be flipped at run time, a real webhook receiver, and config builders."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collectors.store import Store, ThreadStore
from gateway.config import AdminListener, Config, Listener, TelemetryConfig


def apply_schema(store: Store) -> None:
    from collectors.schema import migrate

    migrate(store, TelemetryConfig(database=store.database, ttl_days=0))


@pytest.fixture
def sla_store(store: Store) -> Store:
    """A fresh database with the whole versioned schema applied."""
    apply_schema(store)
    return store


@pytest.fixture
def astore(sla_store: Store) -> ThreadStore:
    return ThreadStore(sla_store)


def make_config(**kw: Any) -> Config:
    base: dict[str, Any] = {
        "source": "test.yaml",
        "partner_listener": Listener(port=0),
        "admin_listener": AdminListener(port=0, token="admin-secret"),
        "upstreams": (),
        "routes": (),
        "partners": (),
    }
    base.update(kw)
    return Config(**base)


@pytest.fixture
def config_factory() -> Callable[..., Config]:
    return make_config


@dataclass
class FlipUpstream:
    """A real HTTP upstream on 127.0.0.1 whose /healthz answers per ``mode``: healthy, slow, down, broken."""

    mode: str = "healthy"
    slow_s: float = 0.25
    url: str = ""
    hits: int = 0

    async def healthz(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)
        if self.mode == "down":
            return web.json_response({"status": "down"}, status=503)
        if self.mode == "broken":
            return web.json_response({"status": "maintenance"})
        return web.json_response({"status": "ok", "deps": {"db": "ok"}})

    async def other(self, request: web.Request) -> web.Response:
        if self.mode == "down":
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"ok": True, "path": request.path})


@pytest.fixture
async def flip_upstream() -> AsyncIterator[FlipUpstream]:
    up = FlipUpstream()
    app = web.Application()
    app.router.add_get("/healthz", up.healthz)
    app.router.add_route("*", "/{tail:.*}", up.other)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    up.url = f"http://127.0.0.1:{port}"
    try:
        yield up
    finally:
        await runner.cleanup()


@dataclass
class WebhookReceiver:
    """A real webhook endpoint; ``fail_next`` answers 500 that many times before accepting."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="busy")
        self.received.append(json.loads(body))
        self.event.set()
        return web.Response(text="ok")

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.event.clear()
                await self.event.wait()


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    rec = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


def call(ts: float, *, upstream: str = "inv", route: str = "stock", status: int = 200,
         duration_ms: float = 50.0, error_source: str = "", error_type: str = "",
         sync_lag_ms: float | None = None, seq: int = 0) -> Any:
    """One CallRecord at epoch second ``ts`` (a SERVER span once written)."""
    from collectors.record import CallRecord

    sid = f"{seq:016x}"
    return CallRecord(
        start_ns=int(ts * 1e9), duration_ns=int(duration_ms * 1e6), trace_id=f"{seq:032x}", span_id=sid,
        parent_span_id="", method="GET", route_template=f"/v1/{route}", route_name=route,
        path=f"/v1/{route}", status=status, error_type=error_type, error_source=error_source,
        partner_id="p1", artisan_id="a1", upstream=upstream, upstream_span_id="", upstream_start_ns=0,
        upstream_duration_ns=0, sync_lag_ms=sync_lag_ms, sync_lag_invalid=False, server_address="gw",
        client_address="127.0.0.1", user_agent="test", request_body_size=0, response_body_size=10,
        request_id=sid, scheme="http", upstream_status=status,
    )


def insert_calls(store: Store, records: list[Any], service_name: str = "loomgate") -> None:
    from collectors.rows import SPAN_COLUMNS, span_rows

    for i in range(0, len(records), 5000):
        store.insert("otel_traces", span_rows(records[i:i + 5000], service_name, {}), SPAN_COLUMNS)


def insert_checks(store: Store, rows: list[tuple[float, str, str, str, str]]) -> None:
    """Health rows from (epoch seconds, upstream, outcome, state, reason)."""
    import datetime as dt

    from collectors.health import COLUMNS, TABLE

    store.insert(TABLE, [(dt.datetime.fromtimestamp(t, dt.UTC), up, "http://x/healthz", outcome,
                          200 if outcome != "fail" else 503, 10.0, reason, state, "", 60.0)
                         for t, up, outcome, state, reason in rows], COLUMNS)


@pytest.fixture
def history() -> Any:
    """Builders for constructed histories: ``call``, ``insert_calls``, ``insert_checks``."""
    import types

    return types.SimpleNamespace(call=call, insert_calls=insert_calls, insert_checks=insert_checks)


async def _serve_flip() -> tuple[FlipUpstream, web.AppRunner]:
    up = FlipUpstream()
    app = web.Application()
    app.router.add_get("/healthz", up.healthz)
    app.router.add_route("*", "/{tail:.*}", up.other)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    up.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return up, runner


@asynccontextmanager
async def status_gateway(store: Store, config: Config) -> AsyncIterator[Any]:
    """A running gateway whose admin app reads ``store`` and whose health monitor has checked every
    upstream once (no schedule: the state is what the upstreams answered just now)."""
    from collectors.health import start_health
    from collectors.record import ListSink
    from gateway.server import run_gateway

    astore = ThreadStore(store)
    monitor = await start_health(config, astore, schedule=False)
    try:
        for up in config.upstreams:
            await monitor.check_once(up.name)
        await monitor.flush()
        async with run_gateway(config, sink=ListSink()) as gw:
            gw.services.store = astore
            gw.services.health = monitor
            yield gw
    finally:
        await monitor.close()


@dataclass
class StatusEnv:
    """A running gateway whose admin app reads a test store with a constructed history."""

    gw: Any
    config: Config
    now: float
    inv: FlipUpstream
    orders: FlipUpstream
    token: str = "admin-secret"


@pytest.fixture
async def status_env(sla_store: Store) -> AsyncIterator[StatusEnv]:
    """inventory-sync (route stock on upstream inv): outage 2 days ago (30 min DOWN), slow 1 day ago
    (20 min DEGRADED), DOWN right now; 2000 requests of which 30 bad, 10 % slow, sync lag 2-4 s.
    orders-api (upstream orders): all good, in a maintenance window right now."""
    import time

    from collectors.health import start_health
    from collectors.record import ListSink
    from gateway.config import (
        HealthCheck,
        LatencyObjective,
        MaintenanceWindow,
        Recurrence,
        Route,
        Sla,
        Upstream,
    )
    from gateway.server import run_gateway

    inv, inv_runner = await _serve_flip()
    orders, orders_runner = await _serve_flip()
    now = time.time()
    weekday = dt.datetime.fromtimestamp(now, dt.UTC).weekday()
    t_end = now // 60 * 60 - 60
    checks = []
    for i in range(3 * 288):  # every 5 minutes for 3 days
        t = t_end - 3 * 86400 + 300 * i
        age = t_end - t
        if 2 * 86400 - 1800 < age <= 2 * 86400:
            checks.append((t, "inv", "fail", "DOWN", "[STATUS] == 200 (actual 503)"))
        elif 86400 - 1200 < age <= 86400:
            checks.append((t, "inv", "slow", "DEGRADED", "[RESPONSE_TIME] < 300 (actual 850)"))
        else:
            checks.append((t, "inv", "ok", "UP", ""))
        checks.append((t, "orders", "ok", "UP", ""))
    insert_checks(sla_store, checks)
    calls = []
    for i in range(2000):
        t = t_end - 2 * 86400 + 86.4 * i
        bad = i < 30
        calls.append(call(t - 600 if bad else t, status=503 if bad else 200,
                          error_source="upstream" if bad else "", duration_ms=400.0 if i % 10 == 5 else 80.0,
                          sync_lag_ms=2000.0 + (i % 3) * 1000.0, seq=i))
    for i in range(500):
        calls.append(call(t_end - 86400 + 120 * i, upstream="orders", route="orders", seq=5000 + i))
    insert_calls(sla_store, calls)

    hc = HealthCheck(interval=3600, timeout=2.0, failure_threshold=1, success_threshold=1,
                     conditions=("[STATUS] == 200", "[BODY].status == ok", "[RESPONSE_TIME] < 300"))
    config = make_config(
        upstreams=(Upstream("inv", inv.url, health_check=hc),
                   Upstream("orders", orders.url, health_check=hc)),
        routes=(Route("stock", "/v1/stock", ("GET",), "inv"),
                Route("orders", "/v1/orders", ("GET",), "orders")),
        slas=(Sla("inventory-sync", route="stock", availability=99.9, latency=LatencyObjective(0.3, 95.0),
                  sync_lag_p95=5.0),
              Sla("orders-api", upstream="orders", availability=99.5)),
        maintenance=(MaintenanceWindow("orders-db-upgrade", upstreams=("orders",), start=now - 600,
                                       end=now + 3000),
                     # upcoming in 3 days; the previous one was 4 days ago, before the history
                     MaintenanceWindow("weekly-reindex", upstreams=("inv",), recurrence=Recurrence(
                         every="weekly", weekday=(weekday + 3) % 7, at="03:00", duration=1800))),
    )
    store = ThreadStore(sla_store)
    monitor = await start_health(config, store, schedule=False)
    try:
        inv.mode = "down"
        await monitor.check_once("inv")
        await monitor.check_once("orders")
        await monitor.flush()
        async with run_gateway(config, sink=ListSink()) as gw:
            gw.services.store = store
            gw.services.health = monitor
            yield StatusEnv(gw, config, now, inv, orders)
    finally:
        await monitor.close()
        await inv_runner.cleanup()
        await orders_runner.cleanup()


# ------------------------------------------------------------------------------ headless Chromium (CDP)

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


class Cdp:
    """A minimal Chrome DevTools Protocol client over the browser websocket (aiohttp), one page session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.session: str | None = None

    async def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True,
                   timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if page and self.session:
            msg["sessionId"] = self.session
        await self.ws.send_json(msg)
        async with asyncio.timeout(timeout):
            while True:
                reply = await self.ws.receive_json()
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))

    async def open_page(self) -> None:
        target = await self.send("Target.createTarget", {"url": "about:blank"}, page=False)
        att = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                              page=False)
        self.session = att["sessionId"]
        await self.send("Page.enable")
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": 1400, "height": 1800, "deviceScaleFactor": 1, "mobile": False})

    async def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Emulate a screen: ``mobile`` applies the page's viewport meta as a phone does."""
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    async def sign_in(self, url: str, token: str) -> None:
        """Open ``url``; the login form comes first, filled in and sent like a person would."""
        from yarl import URL

        path = json.dumps(URL(url).path)
        await self.navigate(url)
        await self.wait_for("location.pathname === '/login' && document.querySelector('#token') !== null")
        await self.evaluate(f"document.querySelector('#token').value = {json.dumps(token)};"
                            "document.querySelector('form').submit(); true")
        await self.wait_for(f"location.pathname === {path} && document.readyState === 'complete'", 60)

    async def evaluate(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll a page expression until it is truthy (bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    value = await self.evaluate(expression)
                except RuntimeError:  # navigation in progress: the context went away
                    value = None
                if value:
                    return value
                await asyncio.sleep(0.1)

    async def screenshot(self, path: Any) -> None:
        import base64

        res = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(res["data"]))


def find_chromium() -> str | None:
    import os
    import shutil

    for c in CHROMIUM_CANDIDATES:
        if os.path.exists(c):
            return c
    return shutil.which("chromium")


@pytest.fixture
async def browser(tmp_path: Any) -> AsyncIterator[Cdp]:
    """Headless Chromium driven over CDP; skipped only without Chromium (and CI does not require it)."""
    import os

    exe = find_chromium()
    if exe is None:
        if os.environ.get("LOOMGATE_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (LOOMGATE_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    proc = await asyncio.create_subprocess_exec(
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1", "--window-size=1400,1800", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if proc.returncode is not None:
                    raise RuntimeError(f"chromium exited with {proc.returncode}")
                await asyncio.sleep(0.05)
        port, ws_path = port_file.read_text().splitlines()[:2]
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"ws://127.0.0.1:{port}{ws_path}", max_msg_size=64 << 20) as ws:
            cdp = Cdp(ws)
            await cdp.open_page()
            yield cdp
            with contextlib.suppress(Exception):
                await cdp.send("Browser.close", page=False, timeout=5)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
