"""Building blocks for tests (and tools) that run a real gateway against real upstreams on loopback.

* config builders with test-friendly defaults (ephemeral ports, telemetry off, generous rate limits);
* ``RecordingUpstream``: an aiohttp upstream that records every request it receives and echoes it back,
  with room for custom handlers per path;
* ``start_server``: run any aiohttp application on 127.0.0.1 with an ephemeral port;
* ``wait_for_records``: records are submitted when a response is finished, which can be a moment after
  the client has read it;
* ``start_gateway_process``: ``loomgate serve`` in a child process, for signal and memory tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict
from yarl import URL

from collectors.record import CallRecord, ListSink
from gateway.auth import hash_key
from gateway.config import (
    AdminListener,
    ArtisanLookup,
    CircuitBreakerConfig,
    Config,
    Limits,
    Listener,
    Partner,
    RateLimit,
    Route,
    SyncLagLookup,
    TelemetryConfig,
    Timeouts,
    Upstream,
)

if TYPE_CHECKING:
    from gateway.server import RunningGateway

ADMIN_TOKEN = "test-admin-token-0123456789"


# ------------------------------------------------------------------------------------------ config


def make_upstream(
    name: str,
    url: str,
    *,
    connect: float = 2.0,
    read: float = 10.0,
    total: float = 30.0,
    pool_size: int = 100,
    failures: int = 5,
    cooldown: float = 10.0,
) -> Upstream:
    return Upstream(
        name=name,
        url=url,
        timeouts=Timeouts(connect=connect, read=read, total=total),
        pool_size=pool_size,
        circuit_breaker=CircuitBreakerConfig(failures=failures, cooldown=cooldown),
    )


def make_route(
    name: str,
    path: str,
    *,
    upstream: str = "api",
    methods: Sequence[str] = ("GET",),
    artisan: tuple[Literal["path", "header", "query", "json"], str] | None = None,
    artisan_required: bool = True,
    sync_lag: tuple[Literal["header", "json"], str] | None = None,
    max_body_size: int = 1 << 20,
    upstream_path: str | None = None,
) -> Route:
    """``artisan=("path", "artisan_id")``, ``sync_lag=("header", "X-Changed-At")`` and so on."""
    return Route(
        name=name,
        path=path,
        methods=tuple(m.upper() for m in methods),
        upstream=upstream,
        max_body_size=max_body_size,
        artisan=ArtisanLookup(artisan[0], artisan[1], artisan_required) if artisan else None,
        sync_lag=SyncLagLookup(sync_lag[0], sync_lag[1]) if sync_lag else None,
        upstream_path=upstream_path,
    )


def make_partner(
    partner_id: str,
    *keys: str,
    artisans: Sequence[str] | Literal["*"] = "*",
    rps: float = 10_000.0,
    burst: int = 10_000,
) -> Partner:
    return Partner(
        id=partner_id,
        api_key_sha256=tuple(hash_key(k) for k in keys),
        artisans="*" if artisans == "*" else tuple(artisans),
        rate_limit=RateLimit(rps=rps, burst=burst),
    )


def make_config(
    *,
    upstreams: Sequence[Upstream],
    routes: Sequence[Route],
    partners: Sequence[Partner],
    admin_token: str = ADMIN_TOKEN,
    limits: Limits | None = None,
    telemetry: TelemetryConfig | None = None,
    source: str = "<test>",
) -> Config:
    """A Config on ephemeral loopback ports; telemetry disabled unless given (pass a sink instead)."""
    return Config(
        source=source,
        partner_listener=Listener("127.0.0.1", 0),
        admin_listener=AdminListener("127.0.0.1", 0, admin_token),
        upstreams=tuple(upstreams),
        routes=tuple(routes),
        partners=tuple(partners),
        limits=limits or Limits(),
        telemetry=telemetry or TelemetryConfig(enabled=False),
    )


# ---------------------------------------------------------------------------------------- upstreams


@dataclass
class RunningServer:
    url: str
    runner: web.AppRunner

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    got_host, got_port = runner.addresses[0][:2]
    return RunningServer(f"http://{got_host}:{got_port}", runner)


@dataclass
class SeenRequest:
    """One request as the upstream received it."""

    method: str
    raw_path: str  # path and query exactly as sent on the request line
    headers: CIMultiDict[str]
    body: bytes = b""  # kept only by the echo handler, up to ``RecordingUpstream.keep_body`` bytes
    body_size: int = 0
    body_sha256: str = ""
    body_broken: bool = False  # the body ended early (connection lost or malformed framing)
    peer: Any = None  # the sender's (host, port): tells connections apart
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()  # names and values as the bytes on the wire

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]


UpstreamHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RecordingUpstream:
    """Records every request; answers from ``handlers[(METHOD, path)]`` / ``handlers[path]`` or by echo.

    The echo answer is JSON: method, raw path, headers (as a list of pairs) and body size / SHA-256.
    """

    keep_body: int = 1 << 16
    # False: request bodies are recorded as sent (a gzip body stays gzip), not inflated by aiohttp
    auto_decompress: bool = True
    handlers: dict[Any, UpstreamHandler] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)
    server: RunningServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "upstream not started"
        return self.server.url

    @property
    def hits(self) -> int:
        return len(self.requests)

    def hits_where(self, predicate: Callable[[SeenRequest], bool]) -> int:
        return sum(1 for r in self.requests if predicate(r))

    def on(self, path: str, handler: UpstreamHandler, method: str | None = None) -> None:
        self.handlers[(method.upper(), path) if method else path] = handler

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30, handler_args={"auto_decompress": self.auto_decompress})
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self) -> RecordingUpstream:
        self.server = await start_server(self.app())
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        seen = SeenRequest(request.method, request.raw_path, CIMultiDict(request.headers))
        seen.raw_headers = tuple(request.raw_headers)
        if request.transport is not None:
            seen.peer = request.transport.get_extra_info("peername")
        self.requests.append(seen)
        path = request.raw_path.partition("?")[0]
        handler = self.handlers.get((request.method, path)) or self.handlers.get(path)
        if handler is not None:
            return await handler(request)
        return await self._echo(request, seen)

    async def _echo(self, request: web.Request, seen: SeenRequest) -> web.StreamResponse:
        digest = hashlib.sha256()
        kept = bytearray()
        size = 0
        try:
            async for chunk in request.content.iter_any():
                size += len(chunk)
                digest.update(chunk)
                if len(kept) < self.keep_body:
                    kept += chunk[: self.keep_body - len(kept)]
        except (ConnectionError, aiohttp.ClientPayloadError, HttpProcessingError):
            seen.body_broken = True  # the sender gave up mid-body; nothing to answer
            raise web.HTTPBadRequest() from None
        seen.body, seen.body_size, seen.body_sha256 = bytes(kept), size, digest.hexdigest()
        payload = {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_size": size,
            "body_sha256": seen.body_sha256,
        }
        return web.json_response(payload)


# ------------------------------------------------------------------------------------------ records


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for config files that must name a port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_config_yaml(*, admin_port: int, admin_token: str, store_dir: Path | str,
                    admin_host: str = "127.0.0.1", telemetry: Mapping[str, str] | None = None) -> str:
    """A small gateway config file for command-line tests: one route, one partner, an admin listener and an
    embedded store under ``store_dir``; ``telemetry`` adds keys to the telemetry section."""
    extra = "".join(f"  {key}: {value}\n" for key, value in (telemetry or {}).items())
    return f"""\
listeners:
  partner: {{host: 127.0.0.1, port: 0}}
  admin: {{host: {admin_host}, port: {admin_port}, token: {admin_token}}}
upstreams:
  - name: inventory
    url: http://127.0.0.1:9
routes:
  - name: stock
    path: /v1/stock
    methods: [GET]
    upstream: inventory
partners:
  - id: shopsync
    api_keys: [{hash_key("shopsync-key")}]
telemetry:
  store: chdb://{store_dir}
{extra}"""


async def wait_for(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll a sync or async predicate until true (bounded); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def wait_for_records(sink: ListSink, count: int, timeout: float = 5.0) -> list[CallRecord]:
    """The sink's records once it holds at least ``count`` (AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while len(sink.records) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} call records, got {len(sink.records)}")
        await asyncio.sleep(0.01)
    return list(sink.records)


# ------------------------------------------------------------------------------ a standard test stack
# One upstream named "api", routes covering every artisan-id source, three partners.  Tests that need
# something else build their own Config with the helpers above.

ACME_KEY = "acme-key-7f3a9c"  # partner "acme": artisans a1 and a2 only
GLOBEX_KEY = "globex-key-1b2c3d"  # partner "globex": every artisan
TINY_KEY = "tiny-key-000001"  # partner "tiny": every artisan, 0.5 requests/s, burst 2
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
            "search", "/v1/search", upstream=upstream, artisan=("query", "artisan"), artisan_required=False
        ),
        make_route("shop", "/v1/shop", upstream=upstream, artisan=("header", "X-Artisan-Id")),
        make_route(
            "misc",
            "/v1/misc/{name}",
            upstream=upstream,
            methods=("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
            max_body_size=MB,
        ),
        make_route(
            "upload", "/v1/upload", upstream=upstream, methods=("POST", "PUT"), max_body_size=100 * MB
        ),
    ]


def standard_partners() -> list[Partner]:
    return [
        make_partner("acme", ACME_KEY, artisans=("a1", "a2")),
        make_partner("globex", GLOBEX_KEY),
        make_partner("tiny", TINY_KEY, rps=0.5, burst=2),
    ]


def standard_config(
    upstream_url: str,
    *,
    upstream: Upstream | None = None,
    limits: Limits | None = None,
    telemetry: TelemetryConfig | None = None,
) -> Config:
    return make_config(
        upstreams=[upstream or make_upstream("api", upstream_url, failures=3, cooldown=0.5)],
        routes=standard_routes(),
        partners=standard_partners(),
        limits=limits,
        telemetry=telemetry,
    )


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """A test client that changes nothing: no decompression, no cookies kept, no redirects followed."""
    kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=60))
    return aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), **kwargs)


@dataclass
class Stack:
    """A running upstream + gateway pair with a client session; ``request`` adds acme's key by default."""

    up: RecordingUpstream
    gw: RunningGateway
    http: aiohttp.ClientSession

    @property
    def sink(self) -> ListSink:
        sink = self.gw.services.sink
        assert isinstance(sink, ListSink), "the gateway was not started with a ListSink"
        return sink

    @property
    def url(self) -> str:
        return self.gw.partner_url

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = ACME_KEY,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs.setdefault("Authorization", f"Bearer {key}")
        # encoded=True: the path and query go on the request line exactly as written (no client-side
        # normalisation of '..', '//' or escapes), so tests see what the gateway does with them.
        url = URL(self.url + path, encoded=True)
        return self.http.request(method, url, headers=hdrs, allow_redirects=False, **kwargs)

    async def records(self, count: int) -> list[CallRecord]:
        return await wait_for_records(self.sink, count)


# ------------------------------------------------------------------------------ gateway in a thread


class BackgroundGateway:
    """A RecordingUpstream and a gateway (ListSink) on their own event loop in a thread.

    For synchronous clients: raw sockets, ``http.client``, property-based tests that cannot await.
    ``config_for`` maps the upstream URL to the gateway's Config.
    """

    def __init__(
        self, config_for: Callable[[str], Config], upstream: RecordingUpstream | None = None
    ) -> None:
        self.upstream = upstream or RecordingUpstream()
        self.sink = ListSink()
        self._config_for = config_for
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gateway-loop", daemon=True)
        self._cm: Any = None
        self.gw: RunningGateway | None = None

    def call(self, coro: Awaitable[Any], timeout: float = 60.0) -> Any:
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def __enter__(self) -> BackgroundGateway:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _start(self) -> None:
        from gateway.server import run_gateway

        await self.upstream.start()
        self._cm = run_gateway(self._config_for(self.upstream.url), sink=self.sink)
        self.gw = await self._cm.__aenter__()

    async def _stop(self) -> None:
        try:
            if self._cm is not None:
                await self._cm.__aexit__(None, None, None)
        finally:
            await self.upstream.close()

    @property
    def partner_address(self) -> tuple[str, int]:
        assert self.gw is not None
        url = URL(self.gw.partner_url)
        assert url.host is not None and url.port is not None
        return url.host, url.port


# ---------------------------------------------------------------------------------- gateway process

_SERVING = re.compile(r"serving partners on (\S+), admin on (\S+)")


@dataclass
class GatewayProcess:
    """``loomgate serve`` in a child process (its RSS is its own); stderr lines are collected."""

    proc: asyncio.subprocess.Process
    partner_url: str
    admin_url: str
    stderr_lines: list[str]
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait(self, timeout: float) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return rc

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


async def start_gateway_process(
    config_path: str, *, env: dict[str, str] | None = None, timeout: float = 60.0
) -> GatewayProcess:
    """Start ``loomgate serve --config PATH`` and wait for its start-up line (its listener URLs)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--config",
        config_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            raw = await asyncio.wait_for(proc.stderr.readline(), max(remaining, 0.01))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("gateway process did not start:\n" + "".join(lines)) from None
        if not raw:
            await proc.wait()
            raise AssertionError(f"gateway process exited with {proc.returncode}:\n" + "".join(lines))
        line = raw.decode(errors="replace")
        lines.append(line)
        m = _SERVING.search(line)
        if m:
            break

    async def collect() -> None:
        assert proc.stderr is not None
        async for more in proc.stderr:
            lines.append(more.decode(errors="replace"))

    gp = GatewayProcess(proc, m.group(1).rstrip(","), m.group(2), lines)
    gp._reader = asyncio.ensure_future(collect())
    return gp
