"""A health check the gateway cannot run for want of its own resources (no file descriptor left) is a
gateway-side check error: stored as such, the upstream's state unchanged, left out of its availability.
Real upstream on loopback, real descriptor exhaustion (this process's soft limit, lowered briefly),
rows read back from the embedded store."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import time
from collections.abc import Iterator

from aiohttp import web

from collectors import querylib
from collectors.health import Outcome, State, start_health
from collectors.schema import migrate
from collectors.store import Store, ThreadStore
from gateway.config import AdminListener, Config, HealthCheck, Listener, TelemetryConfig, Upstream
from gateway.testing import start_server


@contextlib.contextmanager
def _no_descriptors_left() -> Iterator[None]:
    """Every descriptor this process may open is taken until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, highest + 32), hard))
    held: list[int] = []
    try:
        try:
            while len(held) < 10_000:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _config(url: str) -> Config:
    check = HealthCheck(interval=60.0, timeout=2.0, failure_threshold=1, success_threshold=1,
                        conditions=("[STATUS] == 200",))
    return Config(source="test.yaml", partner_listener=Listener(port=0),
                  admin_listener=AdminListener(port=0, token="admin-secret"),
                  upstreams=(Upstream(name="inventory", url=url, health_check=check),),
                  routes=(), partners=())


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def test_running_out_of_descriptors_is_a_check_error_not_down(store: Store) -> None:
    migrate(store, TelemetryConfig(database=store.database, ttl_days=0))
    app = web.Application()
    app.router.add_get("/healthz", _ok)
    server = await start_server(app)
    mon = await start_health(_config(server.url), ThreadStore(store), schedule=False)
    t0 = time.time()
    try:
        first = await mon.check_once("inventory")
        assert (first.outcome, first.state) == (Outcome.OK, State.UP)
        with _no_descriptors_left():
            starved = await mon.check_once("inventory")
        assert starved.outcome == "check_error", starved  # a str: also readable before the outcome existed
        assert starved.state is State.UP and "EMFILE" in starved.reason
        assert mon.snapshot()["inventory"].state is State.UP
        again = await mon.check_once("inventory")
        assert (again.outcome, again.state) == (Outcome.OK, State.UP)
        await mon.flush()
    finally:
        await mon.close()
        await server.close()
    rows = store.query("SELECT Outcome, State FROM loomgate_health_checks ORDER BY Timestamp").rows
    assert rows == [("ok", "UP"), ("check_error", "UP"), ("ok", "UP")]
    # The upstream answered every check it was sent: its probe availability stays whole.
    sla = querylib.run_query_sync(store, "sla_report", {
        "upstream": "inventory", "start": str(t0 - 60), "end": str(time.time() + 60)})
    report = dict(zip(sla.columns, sla.rows[0], strict=True))
    assert report["probe_uptime_pct"] == 100.0, report
