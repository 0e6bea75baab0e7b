"""SLA report, burn rates and incidents on constructed histories with known answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from collectors import sla as slamod
from collectors.maintenance import intervals
from collectors.store import Store, ThreadStore
from gateway.config import (
    LatencyObjective,
    MaintenanceWindow,
    Recurrence,
    Route,
    Sla,
    Upstream,
)


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


NOW = ts("2024-05-31T00:00:00")
# Saturdays 10:00-11:00 UTC; 2024-05-25 is a Saturday
WEEKLY = MaintenanceWindow("saturday-upgrade", upstreams=("inv",),
                           recurrence=Recurrence(every="weekly", weekday=5, at="10:00", duration=3600))
OTHER = MaintenanceWindow("orders-move", upstreams=("orders",), start=ts("2024-05-20T00:00:00"),
                          end=ts("2024-05-30T00:00:00"))
SLAS = (
    Sla("stock-ok", route="stock", availability=99.0, latency=LatencyObjective(0.3, 95.0)),
    Sla("inv-breached", upstream="inv", availability=99.9),
    Sla("stock-at-risk", route="stock", availability=99.4),
    Sla("stock-lag", route="stock", availability=90.0, sync_lag_p95=100.0),
)


def _config(config_factory: Any, maintenance: tuple[MaintenanceWindow, ...]) -> Any:
    return config_factory(
        upstreams=(Upstream("inv", "http://127.0.0.1:1"), Upstream("orders", "http://127.0.0.1:2")),
        routes=(Route("stock", "/v1/stock", ("GET",), "inv"),
                Route("orders", "/v1/orders", ("GET",), "orders")),
        slas=SLAS, maintenance=maintenance)


@pytest.fixture
def sla_history(sla_store: Store, history: Any) -> Store:
    h = history
    checks = []
    t = ts("2024-05-20T00:00:00")  # Monday, no maintenance
    for i in range(1000):  # 995 answered (10 of them slow), 5 failed -> 99.5 %
        outcome = "fail" if i % 200 == 199 else ("slow" if i % 100 == 50 else "ok")
        reason = "[STATUS] == 200 (actual 503)" if outcome == "fail" else ""
        checks.append((t + 60 * i, "inv", outcome, "UP", reason))
    for i in range(20):  # inside the Saturday window: excluded
        checks.append((ts("2024-05-25T10:00:00") + 60 * i, "inv", "fail", "DOWN", "connect error"))
    for i in range(30):  # before the 30-day window: excluded
        checks.append((ts("2024-04-01T00:00:00") + 60 * i, "inv", "fail", "DOWN", "connect error"))
    h.insert_checks(sla_store, checks)

    calls = []
    t = ts("2024-05-21T00:00:00")
    for i in range(2000):
        bad = i % 200 == 0  # 10 bad: 503 from upstream, 504 timeouts, aborted mid-stream
        kind = (i // 200) % 3
        status = (503, 504, 0)[kind] if bad else (404 if i % 500 == 7 else 200)
        calls.append(h.call(t + 30 * i, status=status, duration_ms=500.0 if i % 40 == 1 else 100.0,
                            error_source="upstream" if bad else "",
                            error_type=("", "timeout", "connection_reset")[kind] if bad else "",
                            sync_lag_ms=1000.0 * (i % 100 + 1) if i < 1000 else None, seq=i))
    for i in range(50):  # failures during maintenance: excluded
        calls.append(h.call(ts("2024-05-25T10:30:00") + i, status=502, error_source="upstream",
                            error_type="connect_error", seq=10_000 + i))
    for i in range(100):  # failures before the window: excluded
        calls.append(h.call(ts("2024-04-20T00:00:00") + i, status=500, seq=20_000 + i))
    for i in range(300):  # another upstream, all failing: never counted for inv
        calls.append(h.call(t + i, upstream="orders", route="orders", status=500, seq=30_000 + i))
    h.insert_calls(sla_store, calls)
    return sla_store


async def test_sla_report_known_answers(sla_history: Store, config_factory: Any) -> None:
    cfg = _config(config_factory, (WEEKLY, OTHER))
    rows = {r["sla"]: r for r in await slamod.sla_report(ThreadStore(sla_history), cfg, 30 * 86400, NOW)}
    ok = rows["stock-ok"]
    assert ok["checks"] == 1000 and ok["probe_uptime_pct"] == 99.5
    assert ok["requests"] == 2000 and ok["bad_requests"] == 10
    assert ok["request_availability_pct"] == 99.5
    assert ok["latency_compliance_pct"] == 97.5  # 50 of 2000 took 500 ms > 300 ms
    assert ok["p50_ms"] == pytest.approx(100.0) and ok["p99_ms"] == pytest.approx(500.0)
    assert ok["budget_source"] == "requests"
    assert ok["budget_total"] == pytest.approx(20.0)  # 2000 x 1 %
    assert ok["budget_consumed"] == 10 and ok["budget_remaining"] == pytest.approx(10.0)
    assert ok["budget_remaining_pct"] == pytest.approx(50.0)
    assert ok["latency_budget_remaining_pct"] == pytest.approx(50.0)  # 100 allowed, 50 slow
    assert ok["probe_budget_remaining_pct"] == pytest.approx(50.0)  # 10 allowed, 5 failed
    assert ok["status"] == "OK" and ok["status_reason"] == ""
    assert ok["maintenance_s"] == 4 * 3600  # four Saturdays in the window
    assert ok["sync_lag_samples"] == 1000 and ok["sync_lag_p95_ms"] == pytest.approx(95_000, rel=0.02)

    breached = rows["inv-breached"]  # 2000 x 0.1 % = 2 allowed, 10 bad
    assert breached["budget_total"] == pytest.approx(2.0)
    assert breached["budget_remaining_pct"] == pytest.approx(-400.0)
    assert breached["status"] == "BREACHED" and breached["status_reason"] == "availability budget overspent"

    risk = rows["stock-at-risk"]  # 12 allowed, 10 bad -> 16.7 % left < 25 %
    assert risk["budget_remaining_pct"] == pytest.approx(100 * 2 / 12, abs=1e-3)
    assert risk["status"] == "AT RISK" and risk["status_reason"] == "error budget running low"

    lag = rows["stock-lag"]  # p95 ≈ 95 s: above 80 % of the 100 s target
    assert lag["status"] == "AT RISK" and lag["status_reason"] == "sync-lag p95 near target"


async def test_maintenance_exclusion_changes_the_answer(sla_history: Store, config_factory: Any) -> None:
    cfg = _config(config_factory, ())
    rows = {r["sla"]: r for r in await slamod.sla_report(ThreadStore(sla_history), cfg, 30 * 86400, NOW)}
    ok = rows["stock-ok"]
    assert ok["checks"] == 1020 and ok["probe_uptime_pct"] == pytest.approx(round(100 * 995 / 1020, 4))
    assert ok["requests"] == 2050 and ok["bad_requests"] == 60
    assert ok["request_availability_pct"] == pytest.approx(round(100 * (1 - 60 / 2050), 4))
    assert ok["status"] == "BREACHED" and ok["maintenance_s"] == 0


async def test_uptime_is_total_good_over_total_not_mean_of_ratios(sla_store: Store, history: Any,
                                                                  config_factory: Any) -> None:
    """Day 1: 1 request, failed. Day 2: 999 requests, all good. Mean of daily ratios: 50 %; truth: 99.9 %."""
    calls = [history.call(ts("2024-05-28T12:00:00"), status=500, seq=0)]
    calls += [history.call(ts("2024-05-29T00:00:00") + i, seq=i + 1) for i in range(999)]
    history.insert_calls(sla_store, calls)
    cfg = _config(config_factory, ())
    rows = {r["sla"]: r for r in await slamod.sla_report(ThreadStore(sla_store), cfg, 7 * 86400, NOW)}
    assert rows["stock-ok"]["request_availability_pct"] == pytest.approx(99.9)
    assert rows["stock-ok"]["checks"] == 0 and rows["stock-ok"]["probe_uptime_pct"] is None


async def test_no_data_status(sla_store: Store, config_factory: Any) -> None:
    rows = await slamod.sla_report(ThreadStore(sla_store), _config(config_factory, ()), 86400, NOW)
    assert {r["status"] for r in rows} == {"NO DATA"}


def _burn_history(history: Any) -> list[Any]:
    """Requests ending at NOW: 5 min 100 (10 bad); 5-60 min 400 ok; 1-6 h 4500 ok; 6-24 h 5000 ok;
    1-3 d 10000 (40 bad)."""
    calls: list[Any] = []
    seq = 0

    def spread(n: int, start_ago: float, end_ago: float, bad: int) -> None:
        nonlocal seq
        step = (start_ago - end_ago) / n
        for i in range(n):
            calls.append(history.call(NOW - start_ago + i * step, status=503 if i < bad else 200,
                                      error_source="upstream" if i < bad else "", seq=seq))
            seq += 1

    spread(100, 300, 0, 10)
    spread(400, 3600, 2400, 0)
    spread(4500, 6 * 3600, 3600, 0)
    spread(5000, 86400, 6 * 3600, 0)
    spread(10000, 3 * 86400, 86400, 40)
    return calls


async def test_burn_rates_known_answers(sla_store: Store, history: Any, config_factory: Any) -> None:
    history.insert_calls(sla_store, _burn_history(history))
    cfg = _config(config_factory, ())
    sla = Sla("inv", upstream="inv", availability=99.9)
    rows = [r for r in await slamod.burn_rates(ThreadStore(sla_store), cfg, sla, now=NOW)
            if r["source"] == "requests"]
    assert [r["factor"] for r in rows] == pytest.approx([14.4, 6.0, 3.0, 1.0])
    assert [r["threshold"] for r in rows] == pytest.approx([0.0144, 0.006, 0.003, 0.001])
    assert [r["long_events"] for r in rows] == [500, 5000, 10000, 20000]
    assert [r["long_bad"] for r in rows] == [10, 10, 10, 50]
    assert [r["short_events"] for r in rows] == [100, 100, 100 + 400 + 900, 5000]  # 2 h: 1 of the 5 h of 4500
    assert [r["long_error_ratio"] for r in rows] == pytest.approx([0.02, 0.002, 0.001, 0.0025])
    assert rows[0]["short_error_ratio"] == pytest.approx(0.1)
    assert rows[0]["long_burn_rate"] == pytest.approx(20.0)
    assert rows[0]["short_burn_rate"] == pytest.approx(100.0)
    assert [r["firing"] for r in rows] == [True, False, False, True]
    assert [r["severity"] for r in rows] == ["page", "page", "ticket", "ticket"]
    assert [r["label"] for r in rows] == ["1h/5m", "6h/30m", "1d/2h", "3d/6h"]


async def test_burn_factors_follow_the_window(sla_store: Store, history: Any, config_factory: Any) -> None:
    history.insert_calls(sla_store, [history.call(NOW - 60, seq=1)])
    sla = Sla("inv", upstream="inv", availability=99.0, window=7 * 86400)
    cfg = _config(config_factory, ())
    rows = [r for r in await slamod.burn_rates(ThreadStore(sla_store), cfg, sla, now=NOW)
            if r["source"] == "requests"]
    assert [r["factor"] for r in rows] == pytest.approx(
        [0.02 * 168, 0.05 * 168 / 6, 0.1 * 168 / 24, 0.1 * 168 / 72])
    assert rows[0]["threshold"] == pytest.approx(0.02 * 168 * 0.01)
    assert slamod.DEFAULT_RULES[0].factor(30 * 86400) == pytest.approx(14.4)


async def test_latency_burn_rates_known_answers(sla_store: Store, history: Any, config_factory: Any) -> None:
    # last 5 minutes: 50 calls, 45 of them slower than the 300 ms threshold; 40-60 minutes ago: 50 fast
    calls = [history.call(NOW - 300 + 6 * i, duration_ms=900.0 if i < 45 else 50.0, seq=i) for i in range(50)]
    calls += [history.call(NOW - 3600 + 24 * i, duration_ms=299.0, seq=100 + i) for i in range(50)]
    history.insert_calls(sla_store, calls)
    cfg = _config(config_factory, ())
    sla = Sla("inv", upstream="inv", availability=99.9, latency=LatencyObjective(threshold=0.3, target=95.0))
    rows = await slamod.burn_rates(ThreadStore(sla_store), cfg, sla, now=NOW)
    lat = [r for r in rows if r["source"] == "latency"]
    assert [r["objective_pct"] for r in lat] == [95.0] * 4
    assert [r["threshold"] for r in lat] == pytest.approx([14.4 * 0.05, 6 * 0.05, 3 * 0.05, 1 * 0.05])
    assert [r["long_events"] for r in lat] == [100] * 4 and [r["long_bad"] for r in lat] == [45] * 4
    assert [r["short_events"] for r in lat] == [50, 50, 100, 100]
    assert lat[0]["long_error_ratio"] == pytest.approx(0.45)
    assert lat[0]["short_error_ratio"] == pytest.approx(0.9)
    assert lat[0]["long_burn_rate"] == pytest.approx(9.0) and lat[0]["short_burn_rate"] == pytest.approx(18.0)
    assert [r["firing"] for r in lat] == [False, True, True, True]  # 1h/5m needs 72 % slow over the hour
    # availability keeps its own objective; every call succeeded
    assert {r["objective_pct"] for r in rows if r["source"] == "requests"} == {99.9}
    assert not any(r["firing"] for r in rows if r["source"] != "latency")
    # an SLA without a latency objective has no latency signal
    plain = await slamod.burn_rates(ThreadStore(sla_store), cfg, Sla("inv", upstream="inv"), now=NOW)
    assert {r["source"] for r in plain} == {"requests"}  # and no probes in this history


async def test_burn_rate_from_probes(sla_store: Store, history: Any, config_factory: Any) -> None:
    # 60 checks in the last hour, the last 5 (within 5 minutes) failed
    history.insert_checks(sla_store, [(NOW - 3600 + 60 * i, "inv", "fail" if i >= 55 else "ok",
                                       "DOWN" if i >= 57 else "UP", "") for i in range(60)])
    sla = Sla("inv", upstream="inv", availability=99.9)
    cfg = _config(config_factory, ())
    rows = [r for r in await slamod.burn_rates(ThreadStore(sla_store), cfg, sla, now=NOW)
            if r["source"] == "probes"]
    assert rows[0]["long_events"] == 60 and rows[0]["long_bad"] == 5 and rows[0]["short_bad"] == 5
    assert rows[0]["short_events"] == 5 and rows[0]["firing"] is True


async def test_incidents_known_answers(sla_store: Store, history: Any, config_factory: Any) -> None:
    base = ts("2024-05-30T00:00:00")
    states = ["UP", "UP", "DOWN", "DOWN", "DEGRADED", "UP", "UP", "DEGRADED", "DEGRADED", "UP",
              "DOWN", "DOWN"]
    reasons = {2: "connect error: refused", 3: "timeout after 2 s", 4: "[RESPONSE_TIME] < 300 (actual 900)",
               7: "[RESPONSE_TIME] < 300 (actual 450)", 10: "[STATUS] == 200 (actual 503)"}
    rows = [(base + 60 * i, "inv", "fail" if s == "DOWN" else ("slow" if s == "DEGRADED" else "ok"), s,
             reasons.get(i, "")) for i, s in enumerate(states)]
    rows.append((base + 120, "orders", "fail", "DOWN", "elsewhere"))
    history.insert_checks(sla_store, rows)
    maint = MaintenanceWindow("m", upstreams=("inv",), start=base + 7 * 60 + 30, end=base + 8 * 60)
    cfg = _config(config_factory, (maint,))
    got = await slamod.incidents(ThreadStore(sla_store), cfg, base - 86400, base + 3600, upstream="inv")
    assert [(r["started_at"], r["ended_at"], r["duration_s"], r["worst_state"], r["open"]) for r in got] == [
        ("2024-05-30T00:10:00+00:00", None, 3000.0, "DOWN", True),  # open: runs to the end of the range
        ("2024-05-30T00:07:00+00:00", "2024-05-30T00:09:00+00:00", 120.0, "DEGRADED", False),
        ("2024-05-30T00:02:00+00:00", "2024-05-30T00:05:00+00:00", 180.0, "DOWN", False),
    ]
    assert got[2]["reasons"] == sorted([reasons[2], reasons[3], reasons[4]])
    assert got[2]["failed_checks"] == 2 and got[2]["slow_checks"] == 1
    assert [r["during_maintenance"] for r in got] == [False, True, False]
    later = await slamod.incidents(ThreadStore(sla_store), cfg, base + 6 * 60, base + 3600)
    assert {(r["upstream"], r["started_at"]) for r in later} == {
        ("inv", "2024-05-30T00:10:00+00:00"), ("inv", "2024-05-30T00:07:00+00:00"),
        ("orders", "2024-05-30T00:02:00+00:00")}


def test_recurring_maintenance_expansion() -> None:
    daily = MaintenanceWindow("nightly", recurrence=Recurrence(every="daily", at="23:30", duration=3600))
    got = intervals([daily], ts("2024-05-01T00:00:00"), ts("2024-05-03T00:00:00"))
    assert [(i.start, i.end) for i in got] == [
        (ts("2024-04-30T23:30:00"), ts("2024-05-01T00:30:00")),  # still running at the range start
        (ts("2024-05-01T23:30:00"), ts("2024-05-02T00:30:00")),
        (ts("2024-05-02T23:30:00"), ts("2024-05-03T00:30:00")),
    ]
    got = intervals([WEEKLY], ts("2024-05-01T00:00:00"), ts("2024-06-01T00:00:00"))
    assert [dt.datetime.fromtimestamp(i.start, dt.UTC).isoformat() for i in got] == [
        f"2024-05-{d:02d}T10:00:00+00:00" for d in (4, 11, 18, 25)]
    assert all(i.upstream == "inv" for i in got)


def test_parse_window() -> None:
    assert slamod.parse_window("30d") == 30 * 86400
    assert slamod.parse_window("12h") == 12 * 3600
    assert slamod.parse_window("1.5h") == 5400
    for bad in ("", "30", "0d", "-1d", "3y"):
        with pytest.raises(ValueError, match="positive duration"):
            slamod.parse_window(bad)
