"""A standard gateway stack for the proxy tests: one recording upstream, a few routes, three partners."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from collectors.record import CallRecord, ListSink
from gateway.config import Config, Limits, Route, Upstream
from gateway.server import RunningGateway
from gateway.testing import (
    RecordingUpstream,
    make_config,
    make_partner,
    make_route,
    make_upstream,
    wait_for_records,
)

ACME_KEY = "acme-key-7f3a9c"
GLOBEX_KEY = "globex-key-1b2c3d"
TINY_KEY = "tiny-key-000001"
MB = 1 << 20


def standard_routes(upstream: str = "api") -> list[Route]:
    return [
        make_route(
            "listings",
            "/v1/artisans/{artisan_id}/listings",
            upstream=upstream,
            methods=("GET", "POST", "DELETE"),
            artisan=("path", "artisan_id"),
        ),
        make_route(
            "inventory",
            "/v1/artisans/{artisan_id}/listings/{listing_id}/inventory",
            upstream=upstream,
            methods=("PUT",),
            artisan=("path", "artisan_id"),
            sync_lag=("header", "X-Source-Updated-At"),
        ),
        make_route(
            "orders",
            "/v1/orders",
            upstream=upstream,
            methods=("POST",),
            artisan=("json", "order.artisan_id"),
            sync_lag=("json", "changed_at"),
            max_body_size=64 * 1024,
        ),
        make_route(
            "search",
            "/v1/search",
            upstream=upstream,
            artisan=("query", "artisan"),
            artisan_required=False,
        ),
        make_route("shop", "/v1/shop", upstream=upstream, artisan=("header", "X-Artisan-Id")),
        make_route(
            "misc",
            "/v1/misc/{name}",
            upstream=upstream,
            methods=("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
            max_body_size=MB,
        ),
        make_route("upload", "/v1/upload", upstream=upstream, methods=("POST", "PUT"), max_body_size=100 * MB),
    ]


def standard_partners() -> list[Any]:
    return [
        make_partner("acme", ACME_KEY, artisans=("a1", "a2")),
        make_partner("globex", GLOBEX_KEY),
        make_partner("tiny", TINY_KEY, rps=0.5, burst=2),
    ]


def standard_config(upstream_url: str, *, upstream: Upstream | None = None, limits: Limits | None = None) -> Config:
    return make_config(
        upstreams=[upstream or make_upstream("api", upstream_url, failures=3, cooldown=0.5)],
        routes=standard_routes(),
        partners=standard_partners(),
        limits=limits,
    )


@dataclass
class Stack:
    up: RecordingUpstream
    gw: RunningGateway
    http: aiohttp.ClientSession

    @property
    def sink(self) -> ListSink:
        sink = self.gw.services.sink
        assert isinstance(sink, ListSink)
        return sink

    @property
    def url(self) -> str:
        return self.gw.partner_url

    def request(
        self, method: str, path: str, *, key: str | None = ACME_KEY, headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs.setdefault("Authorization", f"Bearer {key}")
        return self.http.request(method, self.url + path, headers=hdrs, allow_redirects=False, **kw)

    async def records(self, count: int) -> list[CallRecord]:
        return await wait_for_records(self.sink, count)


def client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session() as session:
        yield session


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(upstream_server: Any, gateway: Any, http: aiohttp.ClientSession) -> StackFactory:
    """``await make_stack(upstream=None, config=None)``; ``config`` may be a function of the upstream URL."""

    async def build(
        upstream: RecordingUpstream | None = None, config: Callable[[str], Config] | None = None
    ) -> Stack:
        up = await upstream_server(upstream)
        cfg = (config or standard_config)(up.url)
        gw = await gateway(cfg)
        return Stack(up, gw, http)

    return build


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()
