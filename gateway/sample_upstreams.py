"""Sample upstreams for the demo, the benchmark and docker-compose: an inventory-sync API and a partner
orders API, served by aiohttp on loopback, with realistic latency and faults that can be switched at run
time (slow periods, 5xx bursts, going down, dying mid-body).

A ``FaultPlan`` is a schedule of ``FaultPhase``s (seconds relative to the start of the run) applied by
``run_fault_plan``; the demo uses ``FaultPlan.demo`` to show an outage and a slow period.

Standalone: ``python -m gateway.sample_upstreams --port 9001 [--api both] [--plan demo]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

ApiKind = Literal["inventory", "orders", "both"]
FaultKind = Literal["slow", "errors", "down", "die_mid_body"]

_ORDER_STATUSES = ("paid", "packed", "shipped", "delivered", "refunded")


# --------------------------------------------------------------------------------------------- latency
@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Lognormal service time: most answers near the median, a long but capped tail."""

    median_ms: float = 3.0
    sigma: float = 0.45
    max_ms: float = 250.0

    def sample(self, rng: random.Random) -> float:
        """One service time in seconds."""
        if self.median_ms <= 0:
            return 0.0
        ms = self.median_ms * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        return min(ms, self.max_ms) / 1000.0


# ---------------------------------------------------------------------------------------------- faults
@dataclass(frozen=True, slots=True)
class FaultState:
    """What an upstream is suffering right now."""

    extra_latency: float = 0.0  # seconds added to every answer
    error_rate: float = 0.0  # share of requests answered with a 5xx
    die_mid_body_rate: float = 0.0  # share of responses cut off after part of the body
    down: bool = False  # listener closed: new connections are refused, open ones are dropped

    @property
    def healthy(self) -> bool:
        return self == FaultState()


@dataclass(frozen=True, slots=True)
class FaultPhase:
    """One fault on one upstream from ``start`` to ``end`` (seconds since the plan started)."""

    name: str
    upstream: str
    kind: FaultKind
    start: float
    end: float
    value: float = 0.0  # slow: added seconds; errors / die_mid_body: rate in [0, 1]; down: unused

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def apply(self, state: FaultState) -> FaultState:
        if self.kind == "slow":
            return replace(state, extra_latency=state.extra_latency + self.value)
        if self.kind == "errors":
            return replace(state, error_rate=max(state.error_rate, self.value))
        if self.kind == "die_mid_body":
            return replace(state, die_mid_body_rate=max(state.die_mid_body_rate, self.value))
        return replace(state, down=True)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A schedule of faults; with ``period`` set it repeats (a demo that runs until Ctrl-C)."""

    phases: tuple[FaultPhase, ...] = ()
    period: float | None = None

    def _t(self, t: float) -> float:
        return t % self.period if self.period else t

    def active(self, t: float) -> tuple[FaultPhase, ...]:
        tt = self._t(t)
        return tuple(p for p in self.phases if p.active(tt))

    def state_for(self, upstream: str, t: float) -> FaultState:
        state = FaultState()
        for phase in self.active(t):
            if phase.upstream == upstream:
                state = phase.apply(state)
        return state

    def label(self, t: float) -> str:
        names = [p.name for p in self.active(t)]
        return ", ".join(names) if names else "steady"

    def upstreams(self) -> set[str]:
        return {p.upstream for p in self.phases}

    @classmethod
    def demo(cls, duration: float | None, *, inventory: str = "inventory",
             orders: str = "orders") -> FaultPlan:
        """The demo's story, scaled to ``duration`` (or repeating every 60 s when it runs until Ctrl-C).

        Steady start, then orders slow, inventory 5xx burst, orders down, inventory dying mid-body,
        steady end, so the closing reports have a clean stretch on both sides of each incident.
        """
        span = duration if duration and duration > 0 else 60.0
        shape: tuple[tuple[str, str, FaultKind, float, float, float], ...] = (
            ("orders slow (+120 ms)", orders, "slow", 0.15, 0.28, 0.120),
            ("inventory 5xx burst (35%)", inventory, "errors", 0.33, 0.46, 0.35),
            ("orders down", orders, "down", 0.52, 0.68, 0.0),
            ("inventory dying mid-body (15%)", inventory, "die_mid_body", 0.74, 0.82, 0.15),
        )
        phases = tuple(FaultPhase(n, u, k, round(a * span, 3), round(b * span, 3), v)
                       for n, u, k, a, b, v in shape)
        return cls(phases=phases, period=None if duration else span)


# ------------------------------------------------------------------------------------------ data model
def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Listing:
    listing_id: str
    title: str
    quantity: int
    price_cents: int
    updated_at: str
    source_updated_at: str | None = None


@dataclass
class _Catalogue:
    """Per-artisan listings and orders, created on first use with a deterministic seed."""

    seed: int
    listings: dict[str, dict[str, _Listing]] = field(default_factory=dict)
    orders: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    order_seq: int = 0

    def artisan_listings(self, artisan_id: str) -> dict[str, _Listing]:
        found = self.listings.get(artisan_id)
        if found is None:
            rng = random.Random(f"{self.seed}:{artisan_id}:listings")
            items = ("mug", "scarf", "bowl", "ring", "candle", "tote", "print", "vase")
            found = {}
            for i in range(rng.randint(4, 9)):
                lid = f"L{i + 1:03d}"
                found[lid] = _Listing(lid, f"hand-made {rng.choice(items)}", rng.randint(0, 40),
                                      rng.randint(900, 12900), _now_iso())
            self.listings[artisan_id] = found
        return found

    def artisan_orders(self, artisan_id: str) -> deque[dict[str, Any]]:
        found = self.orders.get(artisan_id)
        if found is None:
            rng = random.Random(f"{self.seed}:{artisan_id}:orders")
            found = deque(maxlen=200)  # bounded: a long demo must not grow memory
            for _ in range(rng.randint(2, 6)):
                found.append(self._order(artisan_id, rng.choice(_ORDER_STATUSES), rng.randint(1, 3)))
            self.orders[artisan_id] = found
        return found

    def _order(self, artisan_id: str, status: str, items: int) -> dict[str, Any]:
        self.order_seq += 1
        return {"order_id": f"O{self.order_seq:07d}", "artisan_id": artisan_id, "status": status,
                "items": items, "created_at": _now_iso()}

    def add_order(self, artisan_id: str, items: int) -> dict[str, Any]:
        orders = self.artisan_orders(artisan_id)
        order = self._order(artisan_id, "paid", items)
        orders.append(order)
        return order


def _listing_json(listing: _Listing) -> dict[str, Any]:
    return {"listing_id": listing.listing_id, "title": listing.title, "quantity": listing.quantity,
            "price_cents": listing.price_cents, "updated_at": listing.updated_at,
            "source_updated_at": listing.source_updated_at}


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": f"http_{status}", "message": message}}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": {"message": f"invalid JSON: {exc}"}}),
                                 content_type="application/json") from exc
    if not isinstance(body, dict):
        raise web.HTTPUnprocessableEntity(text='{"error": {"message": "body must be a JSON object"}}',
                                          content_type="application/json")
    return body


def _quantity(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1_000_000
    return value if ok else None


# --------------------------------------------------------------------------------------------- server
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SampleUpstream:
    """One sample API server on loopback whose faults can be changed while it runs."""

    def __init__(self, name: str, api: ApiKind = "both", *, host: str = "127.0.0.1", port: int = 0,
                 latency: LatencyModel | None = None, seed: int = 7) -> None:
        self.name = name
        self.api = api
        self.host = host
        self.port = port  # 0 until started on an ephemeral port; kept while down so it comes back there
        self.latency = latency or LatencyModel()
        self.faults = FaultState()
        self.hits = 0  # requests that reached a handler (down or not)
        self._rng = random.Random(seed)
        self._catalogue = _Catalogue(seed)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_listening(self) -> bool:
        return self._site is not None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, backlog=1024)
        await site.start()
        self._site = site
        server = site._server  # the bound asyncio server: the only place the ephemeral port is known
        if self.port == 0 and server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._site = None

    async def set_faults(self, state: FaultState) -> None:
        """Switch to ``state``; going down closes the listener and drops every open connection."""
        was_down = self.faults.down
        self.faults = state
        if state.down and not was_down:
            await self._go_down()
        elif was_down and not state.down:
            await self._listen()

    async def _go_down(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for conn in self._runner.server.connections:
                conn.force_close()

    # -- application
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware], client_max_size=4 << 20)
        app.router.add_get("/healthz", self._healthz)
        if self.api in ("inventory", "both"):
            app.router.add_get("/v1/artisans/{artisan_id}/listings", self._get_listings)
            app.router.add_route("PUT", "/v1/artisans/{artisan_id}/listings/{listing_id}/inventory",
                                 self._put_inventory)
            app.router.add_route("PATCH", "/v1/artisans/{artisan_id}/listings/{listing_id}/inventory",
                                 self._patch_inventory)
            app.router.add_post("/v1/inventory/bulk", self._bulk_inventory)
            app.router.add_get("/v1/feed/listings", self._listing_feed)
        if self.api in ("orders", "both"):
            app.router.add_get("/v1/artisans/{artisan_id}/orders", self._get_orders)
            app.router.add_post("/v1/artisans/{artisan_id}/orders", self._post_order)
            app.router.add_get("/v1/orders/search", self._search_orders)
        return app

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits += 1
        faults = self.faults
        if faults.down:  # a request that raced the listener closing: drop it like a dead process would
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        await asyncio.sleep(self.latency.sample(self._rng) + faults.extra_latency)
        if faults.error_rate and self._rng.random() < faults.error_rate:
            status = self._rng.choice((500, 502, 503, 503))
            return _problem(status, f"{self.name} is having a bad moment")
        response = await handler(request)
        if (faults.die_mid_body_rate and isinstance(response, web.Response) and response.body
                and self._rng.random() < faults.die_mid_body_rate):
            return await self._die_mid_body(request, response)
        return response

    async def _die_mid_body(self, request: web.Request, response: web.Response) -> web.StreamResponse:
        """Announce the full length, send half, then drop the connection."""
        body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b"{}" * 64
        stream = web.StreamResponse(status=response.status, headers={"Content-Type": "application/json"})
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: max(1, len(body) // 2)])
        if request.transport is not None:
            request.transport.abort()
        return stream

    # -- handlers
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.name, "time": _now_iso()})

    async def _get_listings(self, request: web.Request) -> web.Response:
        artisan_id = request.match_info["artisan_id"]
        listings = self._catalogue.artisan_listings(artisan_id)
        return web.json_response({"artisan_id": artisan_id,
                                  "listings": [_listing_json(x) for x in listings.values()]})

    async def _listing_feed(self, request: web.Request) -> web.Response:
        artisan_id = request.headers.get("X-Artisan-Id", "")
        if not artisan_id:
            return _problem(400, "X-Artisan-Id header is required")
        listings = sorted(self._catalogue.artisan_listings(artisan_id).values(),
                          key=lambda x: x.updated_at, reverse=True)
        limit = _int_param(request, "limit", 5)
        return web.json_response({"artisan_id": artisan_id,
                                  "listings": [_listing_json(x) for x in listings[:limit]]})

    async def _put_inventory(self, request: web.Request) -> web.Response:
        return await self._update_inventory(request, delta=False)

    async def _patch_inventory(self, request: web.Request) -> web.Response:
        return await self._update_inventory(request, delta=True)

    async def _update_inventory(self, request: web.Request, *, delta: bool) -> web.Response:
        artisan_id = request.match_info["artisan_id"]
        listing_id = request.match_info["listing_id"]
        body = await _json_body(request)
        if body.get("artisan_id") not in (None, artisan_id):
            return _problem(422, "artisan_id in the body does not match the path")
        listings = self._catalogue.artisan_listings(artisan_id)
        listing = listings.get(listing_id)
        if listing is None:
            listing = listings[listing_id] = _Listing(listing_id, "new listing", 0, 1500, _now_iso())
        if delta:
            change = body.get("delta")
            if not isinstance(change, int) or isinstance(change, bool):
                return _problem(422, "PATCH needs an integer 'delta'")
            listing.quantity = max(0, listing.quantity + change)
        else:
            quantity = _quantity(body.get("quantity"))
            if quantity is None:
                return _problem(422, "PUT needs 'quantity', an integer from 0 to 1000000")
            listing.quantity = quantity
        listing.updated_at = _now_iso()
        listing.source_updated_at = str(body.get("source_updated_at") or "") or None
        return web.json_response({"accepted_at": listing.updated_at, **_listing_json(listing)})

    async def _bulk_inventory(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        artisan_id = body.get("artisan_id")
        items = body.get("items")
        if not isinstance(artisan_id, str) or not isinstance(items, list):
            return _problem(422, "body needs 'artisan_id' (string) and 'items' (list)")
        listings = self._catalogue.artisan_listings(artisan_id)
        accepted = 0
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("listing_id"), str):
                continue
            quantity = _quantity(item.get("quantity"))
            if quantity is None:
                continue
            listing = listings.setdefault(item["listing_id"],
                                          _Listing(item["listing_id"], "new listing", 0, 1500, _now_iso()))
            listing.quantity = quantity
            listing.updated_at = _now_iso()
            accepted += 1
        return web.json_response({"artisan_id": artisan_id, "accepted": accepted,
                                  "rejected": len(items) - accepted, "accepted_at": _now_iso()})

    async def _get_orders(self, request: web.Request) -> web.Response:
        artisan_id = request.match_info["artisan_id"]
        orders = list(self._catalogue.artisan_orders(artisan_id))
        status = request.query.get("status")
        if status:
            orders = [o for o in orders if o["status"] == status]
        limit = _int_param(request, "limit", 20)
        return web.json_response({"artisan_id": artisan_id, "orders": orders[-limit:][::-1]})

    async def _post_order(self, request: web.Request) -> web.Response:
        artisan_id = request.match_info["artisan_id"]
        body = await _json_body(request)
        items = body.get("items", 1)
        if not isinstance(items, int) or isinstance(items, bool) or not 1 <= items <= 100:
            return _problem(422, "'items' must be an integer from 1 to 100")
        order = self._catalogue.add_order(artisan_id, items)
        return web.json_response(order, status=201)

    async def _search_orders(self, request: web.Request) -> web.Response:
        artisan_id = request.query.get("artisan_id", "")
        if not artisan_id:
            return _problem(400, "query parameter artisan_id is required")
        status = request.query.get("status", "")
        orders = [o for o in self._catalogue.artisan_orders(artisan_id)
                  if not status or o["status"] == status]
        return web.json_response({"artisan_id": artisan_id, "total": len(orders), "orders": orders[-10:]})


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        return max(1, min(200, int(request.query.get(name, default))))
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------- fault driver
async def apply_plan_at(plan: FaultPlan, upstreams: Mapping[str, SampleUpstream], t: float) -> None:
    """Bring every upstream named in the plan to the state the plan wants at time ``t``."""
    for name, upstream in upstreams.items():
        wanted = plan.state_for(name, t)
        if wanted != upstream.faults:
            await upstream.set_faults(wanted)


async def run_fault_plan(plan: FaultPlan, upstreams: Mapping[str, SampleUpstream], *,
                         started: float | None = None, tick: float = 0.05,
                         until: float | None = None) -> None:
    """Apply ``plan`` every ``tick`` seconds until cancelled (or ``until`` seconds have passed)."""
    t0 = time.monotonic() if started is None else started
    while until is None or time.monotonic() - t0 < until:
        await apply_plan_at(plan, upstreams, time.monotonic() - t0)
        await asyncio.sleep(tick)


@contextlib.asynccontextmanager
async def sample_upstreams(specs: Iterable[tuple[str, ApiKind]], *, seed: int = 7,
                           latency: LatencyModel | None = None) -> AsyncIterator[dict[str, SampleUpstream]]:
    """Start one ``SampleUpstream`` per (name, api) on ephemeral loopback ports; stop them all after."""
    started: dict[str, SampleUpstream] = {}
    try:
        for i, (name, api) in enumerate(specs):
            up = SampleUpstream(name, api, latency=latency, seed=seed + i)
            await up.start()
            started[name] = up
        yield started
    finally:
        for up in started.values():
            await up.stop()


# ------------------------------------------------------------------------------------------------ CLI
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gateway.sample_upstreams",
                                description="Serve a sample inventory-sync / partner orders API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--api", choices=("inventory", "orders", "both"), default="both")
    p.add_argument("--name", default="sample")
    p.add_argument("--median-ms", type=float, default=3.0, help="median simulated service time")
    p.add_argument("--plan", choices=("none", "demo"), default="none",
                   help="'demo' cycles the demo's faults on this upstream every 60 s")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    up = SampleUpstream(args.name, args.api, host=args.host, port=args.port,
                        latency=LatencyModel(median_ms=args.median_ms))
    await up.start()
    print(f"sample upstream {args.name!r} ({args.api}) on {up.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    driver = None
    if args.plan == "demo":
        base = FaultPlan.demo(None)
        plan = FaultPlan(tuple(replace(p, upstream=args.name) for p in base.phases), base.period)
        driver = asyncio.create_task(run_fault_plan(plan, {args.name: up}))
    await stop.wait()
    if driver is not None:
        driver.cancel()
    await up.stop()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
