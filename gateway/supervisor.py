"""``loomgate serve --workers N``: N gateway processes on one partner port, one of everything else.

The supervisor (this process) reserves the partner port (a socket bound with ``SO_REUSEPORT`` and never
listening, so port 0 resolves once and nothing else takes the port; the kernel balances new connections over
the listening workers only), starts the telemetry writer (the one process that owns the store, and
restarts it if it dies: ``collectors.exporter``), health checks, alerts and the admin listener, then the
workers (``gateway.worker``).  Workers send their records straight to the writer's socket and take partner
rate limits from buckets shared through a file (``gateway.shared_limits``).  The admin listener reports every
worker (``gateway.fleet``), and its store queries go to the writer like those of a single process.

A worker that exits while serving is logged and restarted (``Fleet.restarts``, with a backoff doubling from
``RESTART_DELAY_INITIAL`` to ``RESTART_DELAY_MAX`` while workers keep dying within ``RESTART_STABLE``).  The
first SIGTERM/SIGINT drains: SIGTERM to every worker (each finishes its in-flight requests within
``limits.drain_timeout`` and flushes its records to the writer), then the admin listener closes and
telemetry flushes last.  A second signal kills the workers and exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from collectors.child_process import spawn_module
from gateway.admin import build_admin_app
from gateway.app import PROXY_KEY, build_partner_app
from gateway.config import Config
from gateway.fleet import Fleet, WorkerInit, WorkerStats
from gateway.listener import GatewayRunner
from gateway.server import fd_budget, start_listener
from gateway.services import Services, start_services, stop_services
from gateway.shared_limits import create_buckets
from gateway.startup import StartupError, describe, preflight

log = logging.getLogger("loomgate.supervisor")

WORKER_START_TIMEOUT = 60.0
WORKER_STOP_GRACE = 70.0  # beyond limits.drain_timeout: the worker's telemetry flush (CLOSE_TIMEOUT 60 s)
RESTART_DELAY_INITIAL = 0.5
RESTART_DELAY_MAX = 30.0
RESTART_STABLE = 60.0


def reserve_port(host: str, port: int, where: str) -> tuple[socket.socket, int]:
    """A socket bound to ``host:port`` with SO_REUSEPORT and not listening: it holds the port for the
    workers without taking any of its connections."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(f"{where}: cannot listen on {host}:{port}: {describe(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno).lower() if exc.errno else describe(exc)
        raise StartupError(f"{where}: cannot listen on {host}:{port}: {reason}") from None
    return sock, sock.getsockname()[1]


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    exited: asyncio.Future[int] | None = None
    started_at: float = 0.0
    restart_delay: float = RESTART_DELAY_INITIAL
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class WorkerPool:
    """Starts the workers, restarts those that die, and stops them all with SIGTERM."""

    def __init__(self, n: int, make_init: Callable[[int], WorkerInit], fleet: Fleet, log_level: str) -> None:
        self.slots = [_Slot(i) for i in range(n)]
        self.fleet = fleet
        self.stopping = False
        self._make_init = make_init
        self._log_level = log_level

    async def start(self) -> None:
        try:
            await asyncio.gather(*(self._launch(slot) for slot in self.slots))
        except BaseException:
            await self.stop()
            raise
        for slot in self.slots:
            slot.watcher = asyncio.create_task(self._watch(slot), name=f"worker-{slot.index}-watch")

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    async def _launch(self, slot: _Slot) -> None:
        proc, parent = spawn_module("gateway.worker", "--log-level", self._log_level)
        loop = asyncio.get_running_loop()
        slot.proc, slot.exited, slot.started_at = proc, loop.create_future(), time.monotonic()
        ready: asyncio.Future[tuple[str, object]] = loop.create_future()
        threading.Thread(target=self._read, args=(slot.index, proc, parent, ready, slot.exited, loop),
                         name=f"worker-{slot.index}-reader", daemon=True).start()
        parent.send(self._make_init(slot.index))
        try:
            kind, detail = await asyncio.wait_for(asyncio.shield(ready), WORKER_START_TIMEOUT)
        except TimeoutError:
            proc.kill()
            raise StartupError(f"gateway worker {slot.index} did not start within "
                               f"{WORKER_START_TIMEOUT:.0f} s") from None
        if kind != "ready":
            raise StartupError(f"gateway worker {slot.index}: {detail}")

    def _read(self, index: int, proc: subprocess.Popen[bytes], conn: Connection,
              ready: asyncio.Future[tuple[str, object]], exited: asyncio.Future[int],
              loop: asyncio.AbstractEventLoop) -> None:
        """The worker's messages until it exits, then its exit status (its last snapshot comes first)."""
        def settle(fut: asyncio.Future[object], value: object) -> None:
            def apply() -> None:
                if not fut.done():
                    fut.set_result(value)
            with contextlib.suppress(RuntimeError):  # the loop is gone at interpreter exit
                loop.call_soon_threadsafe(apply)

        try:
            while True:
                msg = conn.recv()
                if msg[0] == "stats" and isinstance(msg[1], WorkerStats):
                    self.fleet.update(msg[1])
                elif msg[0] in ("ready", "failed"):
                    settle(ready, (msg[0], msg[1]))  # type: ignore[arg-type]
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
        code = proc.wait()
        self.fleet.exited(index, proc.pid)
        settle(ready, ("failed", f"exited with status {code} before it was ready"))  # type: ignore[arg-type]
        settle(exited, code)  # type: ignore[arg-type]

    async def _watch(self, slot: _Slot) -> None:
        while not self.stopping:
            assert slot.proc is not None and slot.exited is not None
            code = await slot.exited
            if self.stopping:
                return
            if time.monotonic() - slot.started_at >= RESTART_STABLE:
                slot.restart_delay = RESTART_DELAY_INITIAL
            self.fleet.restarts += 1
            log.error("gateway worker %d (pid %d) exited with status %d; restarting it in %.1f s "
                      "(%d worker restarts since start)", slot.index, slot.proc.pid, code, slot.restart_delay,
                      self.fleet.restarts)
            while not self.stopping:
                await asyncio.sleep(slot.restart_delay)
                slot.restart_delay = min(slot.restart_delay * 2, RESTART_DELAY_MAX)
                if self.stopping:
                    return
                try:
                    await self._launch(slot)
                    log.warning("gateway worker %d restarted (pid %d)", slot.index, slot.proc.pid)
                    break
                except StartupError as exc:
                    log.error("gateway worker %d restart failed: %s", slot.index, exc)

    async def stop(self, timeout: float = WORKER_STOP_GRACE) -> None:
        """SIGTERM every worker and wait for each to drain and flush; kill those still running after."""
        self.stopping = True
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        waits = [s.exited for s in self.slots if s.exited is not None]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout)
            for slot in self.slots:
                if slot.exited in late and slot.proc is not None:
                    log.error("gateway worker %d (pid %d) did not stop in %.0f s; killing it",
                              slot.index, slot.proc.pid, timeout)
                    slot.proc.kill()
            if late:
                await asyncio.wait(late, timeout=10.0)
        for slot in self.slots:
            if slot.watcher is not None:
                slot.watcher.cancel()

    def kill(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()


async def serve_workers(config: Config, n: int, *, log_level: str = "INFO") -> int:
    """Run ``n`` workers until SIGTERM/SIGINT (see the module docstring); 0 after a graceful stop."""
    preflight(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    pool: WorkerPool | None = None

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("received %s: draining %d workers (send it again to exit at once)",
                     signal.Signals(signum).name, n)
            stop.set()
            return
        log.warning("received %s again: exiting at once", signal.Signals(signum).name)
        if pool is not None:
            pool.kill()
        logging.shutdown()
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    runtime = tempfile.mkdtemp(prefix="loomgate-")  # 0700: the writer socket and the shared buckets
    lp, la, src = config.partner_listener, config.admin_listener, config.source
    reservation, port = reserve_port(lp.host, lp.port, f"{src}: listeners.partner")
    services: Services | None = None
    try:
        authkey = secrets.token_bytes(32)
        address = os.path.join(runtime, "writer.sock") if config.telemetry.enabled else ""
        try:
            services = await start_services(config, writer_listen=address, writer_authkey=authkey)
        except Exception as exc:
            raise StartupError(f"cannot start telemetry or health checks: {describe(exc)}") from None
        limits_path = os.path.join(runtime, "rate_limits")
        create_buckets(limits_path, config.partners)
        fleet = Fleet(n, services.telemetry)
        partner_app = build_partner_app(config, services)  # never listens: upstreams and draining for admin
        admin_app = build_admin_app(config, services, partner_app, fleet)
        _, admin_policy = fd_budget(config, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        admin_runner = GatewayRunner(admin_app, admin_policy, config.limits)
        try:
            admin_url = await start_listener(admin_runner, la.host, la.port, f"{src}: listeners.admin")

            def make_init(index: int) -> WorkerInit:
                return WorkerInit(config, index, n, port, address, authkey, limits_path)

            pool = WorkerPool(n, make_init, fleet, log_level)
            await pool.start()
            log.info("loomgate serving partners on %s:%d with %d workers (pids %s), admin on %s",
                     lp.host, port, n, " ".join(map(str, pool.pids())), admin_url)
            await stop.wait()
            partner_app[PROXY_KEY].draining = True
            await pool.stop(config.limits.drain_timeout + WORKER_STOP_GRACE)
        finally:
            await admin_runner.cleanup()
        log.info("loomgate stopped")
        return 0
    finally:
        if services is not None:
            await stop_services(services)  # the writer flushes last, after every worker's records
        reservation.close()
        shutil.rmtree(runtime, ignore_errors=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
