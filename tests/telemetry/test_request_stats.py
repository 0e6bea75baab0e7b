"""RequestStats: the request series of /metrics, folded from telemetry batches."""

from __future__ import annotations

from collectors.metrics import DURATION_BUCKETS
from collectors.record import CallRecord
from collectors.request_stats import RequestStats, SeriesKey

BASE = CallRecord(
    1_767_225_600 * 10**9, 0, "0" * 32, "1" * 16, "", "GET", "/v1/x", "listings", "/v1/x", 200, "", "",
    "acme", "a1", "api", "", 0, 0, None, False, "", "127.0.0.1", "", 0, 0, "r", "http", 200,
)  # fmt: skip


def test_buckets_are_upper_inclusive_and_labels_bounded() -> None:
    stats = RequestStats()
    durations_s = [0.005, 0.0051, 10.0, 10.5, 0.0]
    stats.observe([BASE._replace(duration_ns=round(s * 1e9)) for s in durations_s])
    # plain tuples (records decoded from the spool) fold the same way
    stats.observe([tuple(BASE._replace(status=503, partner_id="", duration_ns=1))])
    stats.observe([BASE._replace(status=0, route_name="", error_type="client_abort", duration_ns=1)])
    snap = stats.snapshot()
    assert set(snap) == {SeriesKey("listings", "acme", "2xx"), SeriesKey("listings", "", "5xx"),
                         SeriesKey("", "acme", "none")}
    ok = snap[SeriesKey("listings", "acme", "2xx")]
    first, second, last = 0, 1, len(DURATION_BUCKETS)
    assert ok.buckets[first] == 2  # 0.0 and exactly 0.005 s: le="0.005"
    assert ok.buckets[second] == 1  # 0.0051 s
    assert ok.buckets[last - 1] == 1 and ok.buckets[last] == 1  # exactly 10 s; over 10 s: +Inf only
    assert ok.count == 5 and abs(ok.sum_seconds - sum(durations_s)) < 1e-9


def test_snapshot_is_a_copy() -> None:
    stats = RequestStats()
    stats.observe([BASE])
    snap = stats.snapshot()
    stats.observe([BASE, BASE])
    assert snap[SeriesKey("listings", "acme", "2xx")].count == 1
    assert stats.snapshot()[SeriesKey("listings", "acme", "2xx")].count == 3
