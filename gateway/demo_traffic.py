"""Simulated partners for the demo: shop platforms, a POS system, a shipping tool and a survey tool calling
the gateway on behalf of their artisans, with bounded concurrency and a paced request rate.

The mix is realistic rather than uniform: inventory syncs with varied sync lag (two artisans lag
chronically, > 5 s), order reads and writes, and a trickle of mistakes a gateway must refuse (a rotated
key, artisans outside the partner's scope, oversize and malformed bodies).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

# Demo-only credentials: config/demo.yaml stores only their SHA-256 digests.
DEMO_KEYS: dict[str, str] = {
    "shopsync": "demo-shopsync-key-5f1c0a",
    "tillpoint": "demo-tillpoint-key-93be27",
    "parcelpath": "demo-parcelpath-key-0d4e81",
    "feedbackloop": "demo-feedbackloop-key-c27a6f",
}
ROTATED_KEY = "demo-tillpoint-key-OLD-rotated"  # a key that was removed from the config: always 401

# Artisans whose source system pushes changes late; everyone else syncs within a second or two.
CHRONIC_LAGGERS = frozenset({"art-0007", "art-0010"})


@dataclass(frozen=True, slots=True)
class Call:
    """One request a simulated partner makes."""

    kind: str  # label for the live counters
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class PartnerProfile:
    id: str
    weight: float  # share of the traffic
    actions: tuple[tuple[str, float], ...]  # (action name, weight)


PROFILES: tuple[PartnerProfile, ...] = (
    PartnerProfile("shopsync", 0.40,
                   (("inventory_put", 4.0), ("inventory_patch", 1.5), ("listings", 2.0), ("orders", 2.0),
                    ("order_create", 1.0), ("out_of_scope", 0.25), ("invalid_json", 0.1))),
    PartnerProfile("tillpoint", 0.25,
                   (("inventory_bulk", 3.0), ("inventory_patch", 2.0), ("order_create", 1.5),
                    ("rotated_key", 0.25), ("oversize", 0.15))),
    PartnerProfile("parcelpath", 0.20,
                   (("order_search", 3.0), ("orders", 2.0), ("missing_artisan", 0.1))),
    PartnerProfile("feedbackloop", 0.15,
                   (("feed", 3.0), ("orders", 1.0), ("out_of_scope", 0.2))),
)
# The demo's artisans (ids as `loomgate generate` names them, so live and generated data line up).
ALL_ARTISANS = tuple(f"art-{i:04d}" for i in range(1, 13))
# Which artisans each partner may act for: the demo passes the config's partners; this mirrors demo.yaml.
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "shopsync": ALL_ARTISANS[:8],
    "tillpoint": ("art-0003", "art-0004", "art-0009", "art-0010", "art-0011"),
    "parcelpath": ALL_ARTISANS,
    "feedbackloop": ALL_ARTISANS[:5],
}


def sync_lag_seconds(artisan_id: str, rng: random.Random) -> float:
    """How late the source change reaches the gateway: lognormal, ~6-15 s for chronic laggers."""
    if artisan_id in CHRONIC_LAGGERS:
        return min(30.0, 8.0 * math.exp(0.3 * rng.gauss(0, 1)))
    return min(4.5, 0.6 * math.exp(0.6 * rng.gauss(0, 1)))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CallFactory:
    """Builds the next call of a randomly chosen partner; deterministic for a seed.

    ``scopes`` maps partner id to the artisans it may act for (``ALL_ARTISANS`` stands for "*").
    """

    def __init__(self, seed: int, scopes: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.rng = random.Random(seed)
        self.scopes = dict(scopes or DEFAULT_SCOPES)

    def next_call(self) -> tuple[str, Call]:
        profile = self.rng.choices(PROFILES, weights=[p.weight for p in PROFILES])[0]
        names = [a for a, _ in profile.actions]
        action = self.rng.choices(names, weights=[w for _, w in profile.actions])[0]
        artisan = self.rng.choice(self.scopes[profile.id])
        call = getattr(self, "_" + action)(profile, artisan)
        key = ROTATED_KEY if action == "rotated_key" else DEMO_KEYS[profile.id]
        call.headers.setdefault("X-Api-Key", key)
        call.headers.setdefault("User-Agent", f"{profile.id}-connector/2.3")
        return profile.id, call

    # -- actions (one per name in PROFILES)
    def _listing(self) -> str:
        return f"L{self.rng.randint(1, 9):03d}"

    def _json(self, payload: dict[str, Any]) -> bytes:
        return json.dumps(payload).encode()

    def _inventory_put(self, p: PartnerProfile, artisan: str) -> Call:
        source = time.time() - sync_lag_seconds(artisan, self.rng)
        body = {"artisan_id": artisan, "quantity": self.rng.randint(0, 40), "source_updated_at": _iso(source)}
        return Call("inventory sync", "PUT", f"/v1/artisans/{artisan}/listings/{self._listing()}/inventory",
                    {"Content-Type": "application/json"}, self._json(body))

    def _inventory_patch(self, p: PartnerProfile, artisan: str) -> Call:
        source = time.time() - sync_lag_seconds(artisan, self.rng)
        body = {"artisan_id": artisan, "delta": self.rng.choice((-2, -1, -1, 1, 3)),
                "source_updated_at": _iso(source)}
        return Call("inventory sync", "PATCH", f"/v1/artisans/{artisan}/listings/{self._listing()}/inventory",
                    {"Content-Type": "application/json"}, self._json(body))

    def _inventory_bulk(self, p: PartnerProfile, artisan: str) -> Call:
        # The POS sends its change time as epoch milliseconds in a header.
        source_ms = int((time.time() - sync_lag_seconds(artisan, self.rng)) * 1000)
        items = [{"listing_id": self._listing(), "quantity": self.rng.randint(0, 25)}
                 for _ in range(self.rng.randint(1, 8))]
        return Call("inventory sync", "POST", "/v1/inventory/bulk",
                    {"Content-Type": "application/json", "X-Source-Updated-At": str(source_ms)},
                    self._json({"artisan_id": artisan, "items": items}))

    def _listings(self, p: PartnerProfile, artisan: str) -> Call:
        return Call("listings", "GET", f"/v1/artisans/{artisan}/listings")

    def _feed(self, p: PartnerProfile, artisan: str) -> Call:
        return Call("listings", "GET", "/v1/feed/listings?limit=5", {"X-Artisan-Id": artisan})

    def _orders(self, p: PartnerProfile, artisan: str) -> Call:
        return Call("orders", "GET", f"/v1/artisans/{artisan}/orders?limit=10")

    def _order_create(self, p: PartnerProfile, artisan: str) -> Call:
        return Call("orders", "POST", f"/v1/artisans/{artisan}/orders", {"Content-Type": "application/json"},
                    self._json({"items": self.rng.randint(1, 4), "channel": p.id}))

    def _order_search(self, p: PartnerProfile, artisan: str) -> Call:
        status = self.rng.choice(("paid", "shipped", ""))
        return Call("orders", "GET", f"/v1/orders/search?artisan_id={artisan}&status={status}")

    def _out_of_scope(self, p: PartnerProfile, artisan: str) -> Call:
        outsiders = [a for a in ALL_ARTISANS if a not in self.scopes[p.id]] or ["art-9999"]
        outsider = self.rng.choice(outsiders)
        return Call("refused", "GET", f"/v1/artisans/{outsider}/orders")

    def _rotated_key(self, p: PartnerProfile, artisan: str) -> Call:
        return Call("refused", "GET", f"/v1/artisans/{artisan}/listings")

    def _oversize(self, p: PartnerProfile, artisan: str) -> Call:
        items = [{"listing_id": f"L{i:05d}", "quantity": 1, "note": "x" * 40} for i in range(6000)]
        return Call("refused", "POST", "/v1/inventory/bulk",
                    {"Content-Type": "application/json", "X-Source-Updated-At": str(int(time.time() * 1000))},
                    self._json({"artisan_id": artisan, "items": items}))

    def _invalid_json(self, p: PartnerProfile, artisan: str) -> Call:
        truncated = b'{"artisan_id": "' + artisan.encode() + b'", "quant'
        return Call("refused", "PUT", f"/v1/artisans/{artisan}/listings/L001/inventory",
                    {"Content-Type": "application/json"}, truncated)

    def _missing_artisan(self, p: PartnerProfile, artisan: str) -> Call:
        return Call("refused", "GET", "/v1/orders/search?status=paid")


# ------------------------------------------------------------------------------------------- counters
@dataclass
class TrafficStats:
    """What the simulated partners saw (for the live line only: the report comes from ClickHouse)."""

    sent: int = 0
    answered: int = 0
    failed: int = 0  # no HTTP answer (connection error, client timeout)
    by_class: Counter[str] = field(default_factory=Counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    @property
    def errors(self) -> int:
        return self.failed + self.by_class["4xx"] + self.by_class["5xx"]

    def record(self, status: int | None) -> None:
        now = time.monotonic()
        self.recent.append(now)
        if status is None:
            self.failed += 1
            return
        self.answered += 1
        self.by_class[f"{status // 100}xx"] += 1

    def rps(self, window: float = 2.0) -> float:
        now = time.monotonic()
        n = sum(1 for t in reversed(self.recent) if now - t <= window)
        return n / window


# ------------------------------------------------------------------------------------------------ run
async def _send(session: aiohttp.ClientSession, base_url: str, call: Call, stats: TrafficStats) -> None:
    stats.sent += 1
    try:
        async with session.request(call.method, base_url + call.path, headers=call.headers,
                                   data=call.body) as resp:
            await resp.read()
            stats.record(resp.status)
    except (aiohttp.ClientError, TimeoutError):
        stats.record(None)


async def drive_traffic(base_url: str, stats: TrafficStats, stop: asyncio.Event, *, rate: float = 150.0,
                        workers: int = 16, seed: int = 42,
                        scopes: Mapping[str, tuple[str, ...]] | None = None,
                        on_tick: Callable[[], None] | None = None) -> None:
    """Send ``rate`` requests per second with at most ``workers`` in flight until ``stop`` is set."""
    factory = CallFactory(seed, scopes)
    tickets: asyncio.Queue[tuple[str, Call] | None] = asyncio.Queue(maxsize=workers)
    timeout = aiohttp.ClientTimeout(total=10, connect=3)
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while (item := await tickets.get()) is not None:
                await _send(session, base_url, item[1], stats)

        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        try:
            await _pace(tickets, factory, stop, rate, on_tick)
        finally:
            for _ in tasks:
                await tickets.put(None)
            await asyncio.gather(*tasks, return_exceptions=True)


async def _pace(tickets: asyncio.Queue[tuple[str, Call] | None], factory: CallFactory, stop: asyncio.Event,
                rate: float, on_tick: Callable[[], None] | None) -> None:
    """Hand out tickets at a steady rate; when workers are all busy the queue bounds the backlog."""
    interval = 1.0 / max(rate, 1.0)
    next_at = time.monotonic()
    last_tick = 0.0
    while not stop.is_set():
        await tickets.put(factory.next_call())
        next_at += interval
        now = time.monotonic()
        if next_at < now - 1.0:  # fell behind (slow upstream): don't burst to catch up
            next_at = now
        if on_tick is not None and now - last_tick >= 0.25:
            on_tick()
            last_tick = now
        delay = next_at - now
        if delay > 0:
            await asyncio.sleep(delay)
