"""Gateway process lifecycle: services, the partner and admin listeners, graceful drain, ``loomgate serve``.

Start order: services (telemetry owns the store) → partner and admin applications → listeners.
Stop order: the partner listener stops accepting, in-flight requests get up to ``limits.drain_timeout`` to
finish (then they are cancelled), the upstream pools close, the admin listener closes, and services stop
last so telemetry flushes every record the requests produced.

Connections (timeouts, caps, JSON answers to unparseable requests) are ``gateway.listener``'s.  Each
listener's cap is fitted to the process's descriptor limit (``fd_budget``) with descriptors kept in reserve
for the upstream pools, the store and the health checks, so a partner flood can never starve the admin
listener or make a health check fail for want of a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.admin import build_admin_app
from gateway.app import PROXY_KEY, build_partner_app
from gateway.config import Config
from gateway.gctune import tune_gc_for_serving
from gateway.listener import ConnectionPolicy, GatewayRunner
from gateway.proxy import Proxy
from gateway.quietlog import RepeatLimiter, install_loop_handler
from gateway.services import Services, start_services, stop_services
from gateway.startup import StartupError, describe, preflight

log = logging.getLogger("loomgate.server")

# Bursts of new partner connections queue in the kernel instead of waiting for SYN retries (aiohttp: 128).
_LISTEN_BACKLOG = 2048
_DRAIN_POLL = 0.02
# Descriptors kept free beyond the listeners' caps and the upstream pools: store, spool, health checks,
# alert webhooks, logs.
_FD_RESERVE = 128
_MIN_CAP = 8


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fd_budget(config: Config, nofile: int) -> tuple[ConnectionPolicy, ConnectionPolicy]:
    """The partner and admin listeners' policies, their caps fitted into ``nofile`` descriptors.

    The admin cap is served first (it is small), so partner traffic can never take its descriptors.
    """
    limits = config.limits
    available = nofile - _FD_RESERVE - sum(u.pool_size for u in config.upstreams)
    admin = max(_MIN_CAP, min(limits.admin_max_connections, available // 4))
    partner = max(_MIN_CAP, min(limits.max_connections, available - admin))
    if partner < limits.max_connections or admin < limits.admin_max_connections:
        log.warning(
            "open-file limit %d: listener caps lowered to %d partner / %d admin connections "
            "(limits.max_connections %d, limits.admin_max_connections %d)",
            nofile, partner, admin, limits.max_connections, limits.admin_max_connections,
        )  # fmt: skip

    def policy(name: str, cap: int) -> ConnectionPolicy:
        return ConnectionPolicy(
            name, limits.header_timeout, limits.body_idle_timeout, limits.keepalive_timeout, cap
        )

    return policy("partner", partner), policy("admin", admin)


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
        await drain_partner(self.proxy, self.partner_runner, self.services.config.limits.drain_timeout)


async def drain_partner(proxy: Proxy, runner: GatewayRunner, timeout: float) -> None:
    """Stop accepting, let in-flight requests finish for up to ``timeout`` s, then cancel the rest."""
    # The wait is ours rather than aiohttp's shutdown_timeout: aiohttp waits that long twice per
    # connection, which would let in-flight requests run for twice the configured drain timeout.
    proxy.draining = True
    for site in list(runner.sites):
        await site.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while proxy.inflight and loop.time() < deadline:
        await asyncio.sleep(_DRAIN_POLL)
    await runner.cleanup()  # cancels what is still running, closes the pools


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def start_listener(runner: GatewayRunner, host: str, port: int, where: str, *,
                         reuse_port: bool = False) -> str:
    """Set ``runner`` up and listen; ``reuse_port``: share the port with the other gateway workers."""
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None,
                          backlog=_LISTEN_BACKLOG).start()
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else describe(exc)
        raise StartupError(f"{where}: cannot listen on {host}:{port}: {reason}") from None
    return _url(runner)


@contextlib.asynccontextmanager
async def run_gateway(config: Config, *, sink: Any = None) -> AsyncIterator[RunningGateway]:
    """Run a gateway for the duration of the block (port 0 = ephemeral; the URLs say which).

    Raises ``StartupError`` (one sentence) when it cannot start.
    """
    if sink is None:
        preflight(config)
    try:
        services = await start_services(config, sink=sink)
    except Exception as exc:
        raise StartupError(f"cannot start telemetry or health checks: {describe(exc)}") from None
    loop = asyncio.get_running_loop()
    previous_handler = install_loop_handler(loop, RepeatLimiter(log))
    try:
        partner_app = build_partner_app(config, services)
        proxy = partner_app[PROXY_KEY]
        if services.telemetry is not None:
            services.telemetry.gauges_provider = proxy.gauges
        admin_app = build_admin_app(config, services, partner_app)
        partner_policy, admin_policy = fd_budget(config, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        partner_runner = GatewayRunner(
            partner_app, partner_policy, config.limits, on_protocol_error=proxy.record_protocol_error
        )
        admin_runner = GatewayRunner(admin_app, admin_policy, config.limits)
        gw: RunningGateway | None = None
        try:
            lp, la = config.partner_listener, config.admin_listener
            src = config.source
            partner_url = await start_listener(partner_runner, lp.host, lp.port, f"{src}: listeners.partner")
            admin_url = await start_listener(admin_runner, la.host, la.port, f"{src}: listeners.admin")
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
        loop.set_exception_handler(previous_handler)


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


def _worker_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers: {text!r} is not a whole number") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"--workers: {n} is out of range (1 to 256)")
    return n


def cli_main(argv: list[str]) -> int:
    """``loomgate serve --config FILE``."""
    parser = argparse.ArgumentParser(
        prog="loomgate serve",
        description="Run the gateway: partner and admin listeners, telemetry, health checks and alerts.",
    )
    parser.add_argument("--config", "-c", required=True, metavar="FILE", help="gateway YAML config")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--workers", "-w", type=_worker_count, default=1, metavar="N",
                        help="gateway processes sharing the partner port (default 1: a single process); "
                             "with N > 1 a supervisor runs the admin listener, health checks, alerts and the "
                             "one telemetry writer, and restarts workers that die")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from gateway.config_loader import load_config_or_report

    config = load_config_or_report(args.config)  # an unreadable file is one of its problems
    if config is None:
        return 2
    raise_fd_limit()
    try:
        if args.workers > 1:
            from gateway.supervisor import serve_workers

            return asyncio.run(serve_workers(config, args.workers, log_level=args.log_level))
        return asyncio.run(serve(config))
    except StartupError as exc:
        print(f"loomgate serve: {exc}", file=sys.stderr)
        return 1
