"""Gateway process lifecycle: services, the partner and admin listeners, graceful drain, ``loomgate serve``.

Start order: services (telemetry owns the store) → partner and admin applications → listeners.
Stop order: the partner listener stops accepting, in-flight requests get up to ``limits.drain_timeout`` to
finish (then they are cancelled), the upstream pools close, the admin listener closes, and services stop
last so telemetry flushes every record the requests produced.

Requests aiohttp cannot parse never reach an application; the listeners answer them with the gateway's
JSON error body too (400 when malformed; 431 when the request line or a header is over
``limits.max_line_size`` / ``max_field_size`` or there are more than ``max_headers`` headers), close the
connection, and on the partner listener they get a call record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from time import monotonic_ns
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway.admin import build_admin_app
from gateway.app import PROXY_KEY, build_partner_app
from gateway.config import Config
from gateway.errors import error_body
from gateway.gctune import tune_gc_for_serving
from gateway.headers import request_id
from gateway.proxy import Proxy
from gateway.services import Services, start_services, stop_services

log = logging.getLogger("loomgate.server")

# Bursts of new partner connections queue in the kernel instead of waiting for SYN retries (aiohttp: 128).
_LISTEN_BACKLOG = 2048
_DRAIN_POLL = 0.02
_CANCEL_GRACE = 0.05

# (request, status, error code, request id, ns from the request's first byte to the error response)
ProtocolErrorHook = Callable[[web.BaseRequest, int, str, str, int], None]


# ------------------------------------------------------------------------- JSON for unparseable requests


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse with the gateway's JSON error.

    A rejected request's duration runs from the first byte received while the connection waited for a
    request (aiohttp exposes no parser start time; a connection's waiter is new for each request) to the
    error response, so a slow, oversized header block is recorded with the time it took.
    """

    _parse_waiter: object = None
    _parse_start_ns = 0

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is not None and waiter is not self._parse_waiter:
            self._parse_waiter, self._parse_start_ns = waiter, monotonic_ns()
        super().data_received(data)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; the connection is broken")
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            code, text = "internal_error", "internal gateway error"
        elif isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower()
        ):
            # The parser's message quotes the start of the offending line (maybe a credential): never
            # echoed, never logged.
            status = 431
            code, text = "header_too_large", "request line or header fields over the size limits"
        else:
            code, text = "bad_request", "malformed HTTP request"
        rid = request_id(None)
        resp = web.Response(
            status=status,
            body=error_body(code, text, rid, "gateway"),
            content_type="application/json",
            headers={"X-Request-Id": rid},
        )
        resp.force_close()
        hook: ProtocolErrorHook | None = getattr(self._manager, "on_protocol_error", None)
        if hook is not None and 400 <= status < 500:
            start = self._parse_start_ns
            hook(request, status, code, rid, monotonic_ns() - start if start else 0)
        return resp


class _JsonErrorServer(web.Server):
    on_protocol_error: ProtocolErrorHook | None = None

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests with JSON (see the module docstring)."""

    def __init__(
        self, app: web.Application, *, on_protocol_error: ProtocolErrorHook | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._on_protocol_error = on_protocol_error

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        server = _JsonErrorServer(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        server.on_protocol_error = self._on_protocol_error
        return server


def _runner_kwargs(config: Config) -> dict[str, Any]:
    limits = config.limits
    return {
        "access_log": None,  # no per-request logging: every request is in telemetry instead
        "shutdown_timeout": _CANCEL_GRACE,  # after the drain wait: cancel what is left promptly
        "max_line_size": limits.max_line_size,
        "max_field_size": limits.max_field_size,
        "max_headers": limits.max_headers,
    }


# --------------------------------------------------------------------------------------- the gateway


@dataclass
class RunningGateway:
    """A started gateway: its listeners' URLs, its services, and ``drain()`` for a graceful stop."""

    partner_url: str
    admin_url: str
    services: Services
    proxy: Proxy
    partner_runner: GatewayRunner
    admin_runner: GatewayRunner
    _drain_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def inflight(self) -> int:
        return self.proxy.inflight

    async def drain(self) -> None:
        """Stop accepting partner requests, let in-flight ones finish (bounded), close upstream pools.

        Idempotent; the admin listener stays up (``/readyz`` answers 503 while draining).
        """
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._drain_task)

    async def _drain(self) -> None:
        # The wait is ours rather than aiohttp's shutdown_timeout: aiohttp waits that long twice per
        # connection, which would let in-flight requests run for twice the configured drain timeout.
        self.proxy.draining = True
        for site in list(self.partner_runner.sites):
            await site.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.services.config.limits.drain_timeout
        while self.proxy.inflight and loop.time() < deadline:
            await asyncio.sleep(_DRAIN_POLL)
        await self.partner_runner.cleanup()  # cancels what is still running, closes the pools


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _start_listener(runner: GatewayRunner, host: str, port: int) -> str:
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True, backlog=_LISTEN_BACKLOG).start()
    return _url(runner)


@contextlib.asynccontextmanager
async def run_gateway(config: Config, *, sink: Any = None) -> AsyncIterator[RunningGateway]:
    """Run a gateway for the duration of the block (port 0 = ephemeral; the URLs say which)."""
    services = await start_services(config, sink=sink)
    try:
        partner_app = build_partner_app(config, services)
        proxy = partner_app[PROXY_KEY]
        if services.telemetry is not None:
            services.telemetry.gauges_provider = proxy.gauges
        admin_app = build_admin_app(config, services, partner_app)
        kwargs = _runner_kwargs(config)
        partner_runner = GatewayRunner(partner_app, on_protocol_error=proxy.record_protocol_error, **kwargs)
        admin_runner = GatewayRunner(admin_app, **kwargs)
        gw: RunningGateway | None = None
        try:
            lp, la = config.partner_listener, config.admin_listener
            partner_url = await _start_listener(partner_runner, lp.host, lp.port)
            admin_url = await _start_listener(admin_runner, la.host, la.port)
            gw = RunningGateway(partner_url, admin_url, services, proxy, partner_runner, admin_runner)
            yield gw
        finally:
            if gw is not None:
                await gw.drain()
            else:  # a listener failed to start
                await partner_runner.cleanup()
            await admin_runner.cleanup()
    finally:
        await stop_services(services)


# ------------------------------------------------------------------------------------ loomgate serve


async def serve(config: Config, *, ready: Callable[[RunningGateway], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT: the first drains gracefully (exit 0), a second exits at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("received %s: draining (send it again to exit at once)", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("received %s again: exiting at once", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with run_gateway(config) as gw:
            log.info("loomgate serving partners on %s, admin on %s", gw.partner_url, gw.admin_url)
            tune_gc_for_serving()
            if ready is not None:
                ready(gw)
            await stop.wait()
            await gw.drain()
        log.info("loomgate stopped")
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def cli_main(argv: list[str]) -> int:
    """``loomgate serve --config FILE``."""
    parser = argparse.ArgumentParser(
        prog="loomgate serve",
        description="Run the gateway: partner and admin listeners, telemetry, health checks and alerts.",
    )
    parser.add_argument("--config", "-c", required=True, metavar="FILE", help="gateway YAML config")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from gateway.config_loader import load_config_or_report

    config = load_config_or_report(args.config)  # an unreadable file is one of its problems
    if config is None:
        return 2
    return asyncio.run(serve(config))
