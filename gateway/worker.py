"""One gateway worker of ``loomgate serve --workers N``: the partner listener and nothing else.

Started by ``gateway.supervisor`` as ``python -m gateway.worker --fd FD`` with one end of a socket pair,
on which it receives a ``WorkerInit`` and sends ``("ready", pid)`` (or ``("failed", message)``), a
``WorkerStats`` every ``gateway.fleet.STATS_EVERY`` seconds, and a last one when it stops.  It listens on the
partner port with ``SO_REUSEPORT`` (the kernel spreads new connections over the workers), sends its call
records to the supervisor's telemetry writer (``collectors.writer_client``), and takes partner rate limits
from the shared buckets (``gateway.shared_limits``).  Health checks, alerts and the admin listener run in
the supervisor only.

SIGTERM drains: the listener stops accepting, in-flight requests get ``limits.drain_timeout``, telemetry
flushes every record to the writer, then the process exits 0.  SIGINT is ignored: Ctrl-C reaches the whole
process group, and the supervisor decides.  With ``LOOMGATE_WORKER_PID_HEADER=1`` in the environment every
partner response says which process served it (``X-Loomgate-Worker``), for tests and benchmarks.
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
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from collectors.record import NullSink
from collectors.writer_client import describe_link, start_linked_telemetry
from gateway.app import PROXY_KEY, build_partner_app
from gateway.fleet import STATS_EVERY, WorkerInit, WorkerStats
from gateway.gctune import tune_gc_for_serving
from gateway.listener import GatewayRunner
from gateway.proxy import Proxy
from gateway.quietlog import RepeatLimiter, install_loop_handler
from gateway.server import drain_partner, fd_budget, raise_fd_limit, start_listener
from gateway.services import Services, stop_services
from gateway.shared_limits import SharedRateLimiter, divided_auth_throttle
from gateway.startup import StartupError, describe

log = logging.getLogger("loomgate.worker")

PID_HEADER_ENV = "LOOMGATE_WORKER_PID_HEADER"
PID_HEADER = "X-Loomgate-Worker"


def _snapshot(init: WorkerInit, proxy: Proxy, services: Services) -> WorkerStats:
    telemetry: Any = services.telemetry
    link = describe_link(telemetry)
    return WorkerStats(
        index=init.index, pid=os.getpid(), inflight=proxy.inflight, requests_total=proxy.requests_total,
        draining=proxy.draining,
        upstreams={name: {"circuit": pool.breaker.state,
                          "consecutive_failures": pool.breaker.consecutive_failures}
                   for name, pool in proxy.upstreams.items()},
        telemetry=link.get("local", {}), telemetry_connected=bool(link.get("connected")),
        request_series=telemetry.request_stats.snapshot() if telemetry is not None else {},
    )


async def _say_pid(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[PID_HEADER] = str(os.getpid())


async def run_worker(init: WorkerInit, conn: Connection) -> int:
    config = init.config
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    services = Services(config=config, sink=NullSink())
    limiter: SharedRateLimiter | None = None
    previous_handler = install_loop_handler(loop, RepeatLimiter(log))
    try:
        if init.writer_address:
            services.telemetry = await start_linked_telemetry(config, init.writer_address, init.authkey)
            services.sink = services.telemetry.sink
        app = build_partner_app(config, services)
        proxy = app[PROXY_KEY]
        limiter = SharedRateLimiter(config.partners, init.limits_path)
        proxy.limiter = limiter
        proxy.auth_throttle = divided_auth_throttle(config.limits, init.workers, init.index)
        if services.telemetry is not None:
            services.telemetry.gauges_provider = proxy.gauges
        if os.environ.get(PID_HEADER_ENV) == "1":
            app.on_response_prepare.append(_say_pid)
        policy, _ = fd_budget(config, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        runner = GatewayRunner(app, policy, config.limits, on_protocol_error=proxy.record_protocol_error)
        lp = config.partner_listener
        try:
            await start_listener(runner, lp.host, init.port, f"{config.source}: listeners.partner",
                                 reuse_port=True)
        except BaseException:
            await runner.cleanup()
            raise
        conn.send(("ready", os.getpid()))
        tune_gc_for_serving()
        while not stop.is_set():
            conn.send(("stats", _snapshot(init, proxy, services)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATS_EVERY)
        loop.add_signal_handler(signal.SIGTERM, _exit_now)  # a second SIGTERM: exit at once
        await drain_partner(proxy, runner, config.limits.drain_timeout)
        await stop_services(services)  # every record to the writer, acknowledged or spilled
        services.telemetry = None
        conn.send(("stats", _snapshot(init, proxy, services)))
        return 0
    finally:
        await stop_services(services)
        if limiter is not None:
            limiter.close()
        loop.set_exception_handler(previous_handler)


def _exit_now() -> None:
    logging.shutdown()
    os._exit(128 + signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.worker",
                                description="gateway worker process (started by loomgate serve --workers)")
    p.add_argument("--fd", type=int, required=True, help="inherited socket to the supervisor")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    conn = Connection(args.fd)
    init = conn.recv()
    if not isinstance(init, WorkerInit):
        log.error("expected a worker init message, got %r", type(init))
        return 2
    raise_fd_limit()
    try:
        return asyncio.run(run_worker(init, conn))
    except (StartupError, OSError) as exc:
        message = str(exc) if isinstance(exc, StartupError) else describe(exc)
        with contextlib.suppress(OSError):
            conn.send(("failed", message))
        log.error("worker %d cannot start: %s", init.index, message)
        return 1
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
