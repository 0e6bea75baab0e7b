"""Active health checks against a real upstream that flips between healthy, slow and down."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from collectors.health import Outcome, State, Tracker, plan_checks, start_health
from collectors.store import Store, ThreadStore
from gateway.config import HealthCheck, Upstream


def _upstream(url: str, **check: Any) -> Upstream:
    hc = HealthCheck(**{"interval": 60.0, "timeout": 2.0, "failure_threshold": 2, "success_threshold": 2,
                        "conditions": ("[STATUS] == 200", "[BODY].status == ok", "[RESPONSE_TIME] < 150"),
                        **check})
    return Upstream(name="inventory", url=url, health_check=hc)


def test_state_machine_thresholds() -> None:
    t = Tracker(failure_threshold=3, success_threshold=2)
    seq = [
        (Outcome.FAIL, State.UNKNOWN), (Outcome.OK, State.UNKNOWN), (Outcome.OK, State.UP),
        (Outcome.SLOW, State.UP), (Outcome.SLOW, State.UP), (Outcome.OK, State.UP),  # slow blips
        (Outcome.SLOW, State.UP), (Outcome.SLOW, State.UP), (Outcome.SLOW, State.DEGRADED),
        (Outcome.FAIL, State.DEGRADED), (Outcome.FAIL, State.DEGRADED), (Outcome.FAIL, State.DOWN),
        (Outcome.SLOW, State.DOWN), (Outcome.SLOW, State.DEGRADED),  # recovers slow
        (Outcome.OK, State.DEGRADED), (Outcome.OK, State.UP),
        (Outcome.FAIL, State.UP), (Outcome.FAIL, State.UP), (Outcome.FAIL, State.DOWN),
        (Outcome.OK, State.DOWN), (Outcome.FAIL, State.DOWN),
        (Outcome.OK, State.DOWN), (Outcome.OK, State.UP),
    ]
    got = [t.observe(o) for o, _ in seq]
    assert got == [s for _, s in seq]


def test_bad_condition_names_upstream(config_factory: Any) -> None:
    cfg = config_factory(upstreams=(_upstream("http://127.0.0.1:1", conditions=("[STATUS] = 200",)),))
    with pytest.raises(ValueError, match=r"upstreams\.inventory\.health_check\.conditions: .*no operator"):
        plan_checks(cfg)


async def test_degraded_vs_down_transitions(flip_upstream: Any, config_factory: Any,
                                            sla_store: Store) -> None:
    cfg = config_factory(upstreams=(_upstream(flip_upstream.url, degraded_response_time_ms=100.0),))
    mon = await start_health(cfg, ThreadStore(sla_store), schedule=False)
    try:
        assert mon.snapshot()["inventory"].state is State.UNKNOWN
        script = [("healthy", State.UNKNOWN), ("healthy", State.UP),
                  ("slow", State.UP), ("slow", State.DEGRADED),
                  ("healthy", State.DEGRADED), ("healthy", State.UP),
                  ("down", State.UP), ("down", State.DOWN),
                  ("broken", State.DOWN), ("healthy", State.DOWN), ("healthy", State.UP)]
        seen = []
        for mode, _ in script:
            flip_upstream.mode = mode
            res = await mon.check_once("inventory")
            seen.append(res.state)
        assert seen == [s for _, s in script]
        snap = mon.snapshot()["inventory"]
        assert snap.state is State.UP and snap.last is not None and snap.last.status == 200
        await mon.flush()
    finally:
        await mon.close()
    rows = sla_store.query(
        "SELECT Outcome, StatusCode, Reason, State, PreviousState FROM loomgate_health_checks "
        "ORDER BY Timestamp").rows
    assert [r[3] for r in rows] == [str(s) for _, s in script]
    assert [r[0] for r in rows] == ["ok", "ok", "slow", "slow", "ok", "ok",
                                    "fail", "fail", "fail", "ok", "ok"]
    slow_reason = rows[2][2]
    assert "[RESPONSE_TIME] < 150 (actual" in slow_reason and "degraded threshold 100 ms" in slow_reason
    assert rows[6][1] == 503 and "[STATUS] == 200 (actual 503)" in rows[6][2]
    assert "[BODY].status == ok (actual down)" in rows[6][2]
    assert rows[8][2] == "[BODY].status == ok (actual maintenance)"
    assert rows[7][4] == "UP" and rows[7][3] == "DOWN"


async def test_connect_error_and_timeout_are_failures(flip_upstream: Any, config_factory: Any,
                                                      sla_store: Store) -> None:
    closed = Upstream(name="gone", url="http://127.0.0.1:9", health_check=HealthCheck(
        interval=60, timeout=1.0, failure_threshold=1, success_threshold=1))
    slow = Upstream(name="hung", url=flip_upstream.url, health_check=HealthCheck(
        interval=60, timeout=0.1, failure_threshold=1, success_threshold=1))
    flip_upstream.mode, flip_upstream.slow_s = "slow", 0.5
    mon = await start_health(config_factory(upstreams=(closed, slow)), ThreadStore(sla_store), schedule=False)
    try:
        gone, hung = await asyncio.gather(mon.check_once("gone"), mon.check_once("hung"))
    finally:
        await mon.close()
    assert gone.outcome is Outcome.FAIL and gone.state is State.DOWN
    assert gone.reason.startswith("connect error")
    assert hung.outcome is Outcome.FAIL and hung.reason == "timeout after 0.1 s"
    stored = sla_store.query("SELECT Upstream, Reason FROM loomgate_health_checks ORDER BY Upstream").rows
    assert stored == [("gone", gone.reason), ("hung", hung.reason)]


async def test_schedule_runs_checks_and_stores_batches(flip_upstream: Any, config_factory: Any,
                                                       sla_store: Store) -> None:
    cfg = config_factory(upstreams=(_upstream(flip_upstream.url, interval=0.05, failure_threshold=2),))
    mon = await start_health(cfg, ThreadStore(sla_store), flush_interval=0.1)
    try:
        deadline = time.monotonic() + 10
        while mon.snapshot()["inventory"].state is not State.UP and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert mon.snapshot()["inventory"].state is State.UP
        flip_upstream.mode = "down"
        while mon.snapshot()["inventory"].state is not State.DOWN and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert mon.snapshot()["inventory"].state is State.DOWN
    finally:
        await mon.close()
    assert mon.written >= 4 and mon.dropped == 0
    total, downs = sla_store.query(
        "SELECT count(), countIf(State = 'DOWN') FROM loomgate_health_checks").rows[0]
    assert total == mon.written and downs >= 1


async def test_store_failure_keeps_results_buffered(flip_upstream: Any, config_factory: Any,
                                                    store: Store) -> None:
    """No schema yet: inserts fail, results stay buffered and are written once the table exists."""
    from collectors.schema import migrate
    from gateway.config import TelemetryConfig

    cfg = config_factory(upstreams=(_upstream(flip_upstream.url),))
    mon = await start_health(cfg, ThreadStore(store), flush_interval=3600, schedule=False)
    try:
        for _ in range(3):
            await mon.check_once("inventory")
        await mon.flush()
        assert mon.insert_errors == 1 and mon.written == 0
        migrate(store, TelemetryConfig(database=store.database, ttl_days=0))
        await mon.flush()
        assert mon.written == 3
    finally:
        await mon.close()
    assert store.query("SELECT count() FROM loomgate_health_checks").rows[0][0] == 3
