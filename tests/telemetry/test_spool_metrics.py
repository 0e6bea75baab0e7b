"""Spool segments (budget, order, corruption, crash leftovers) and per-batch metric aggregation."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from collectors.metrics import (
    DURATION_BUCKETS,
    batch_metric_rows,
    gauge_rows,
    pipeline_rows,
    project,
    status_class,
)
from collectors.rows import METRIC_GAUGE_COLUMNS, METRIC_HISTOGRAM_COLUMNS, METRIC_SUM_COLUMNS
from collectors.spool import Batch, Spool, SpoolCorrupt


def _batch(i: int, n: int = 10) -> Batch:
    return Batch(f"b{i}", 1_000 + i, [(i, j, "x" * 50) for j in range(n)], {"active_requests": i})


def test_segments_round_trip_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    for i in range(5):
        assert spool.append(_batch(i))
    segs = spool.segments()
    assert [spool.read(s).batch_id for s in segs] == ["b0", "b1", "b2", "b3", "b4"]
    assert spool.read(segs[2]) == _batch(2)
    spool.remove(segs[0])
    oldest = spool.oldest()
    assert oldest is not None and spool.read(oldest).batch_id == "b1"
    assert spool.bytes_used() == sum(s.size for s in spool.segments())


def test_budget_is_shared_by_every_writer_of_the_directory(tmp_path: Path) -> None:
    probe = Spool(tmp_path / "probe", 1 << 20)
    assert probe.append(_batch(0))
    size = probe.segments()[0].size  # every _batch(i) with one-digit i has this size
    a, b = Spool(tmp_path / "s", 3 * size + 10), Spool(tmp_path / "s", 3 * size + 10)
    results = [a.append(_batch(1)), b.append(_batch(2)), a.append(_batch(3)), b.append(_batch(4))]
    assert results == [True, True, True, False]
    assert a.bytes_used() <= 3 * size + 10
    assert len(a.segments()) == 3


def test_corrupt_segment_is_detected_and_quarantined(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(_batch(1))
    spool.append(_batch(2))
    seg = spool.segments()[0]
    data = bytearray(seg.path.read_bytes())
    data[-3] ^= 0xFF
    seg.path.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupt, match="checksum"):
        spool.read(seg)
    moved = spool.quarantine(seg)
    assert moved.parent.name == "corrupt" and moved.exists()
    assert [spool.read(s).batch_id for s in spool.segments()] == ["b2"]


def test_stale_partial_writes_are_cleaned_and_fresh_ones_kept(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".tmp-old.seg", tmp_path / ".tmp-new.seg"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    spool = Spool(tmp_path, 1 << 20)
    assert not stale.exists() and fresh.exists()
    assert spool.segments() == []


def test_duration_buckets_are_upper_inclusive(kit: SimpleNamespace) -> None:
    recs = kit.make_records(1)
    samples = [0.005, 0.0050001, 10.0, 10.5, 0.0]
    batch = [recs[0]._replace(duration_ns=round(s * 1e9)) for s in samples]
    rows = batch_metric_rows(batch, {}, service_name="svc", resource={"service.name": "svc"},
                             start_ns=2_000_000_000_000_000_000, time_ns=2_000_000_000_000_000_000)
    (h,) = rows.histograms
    expected = [0] * (len(DURATION_BUCKETS) + 1)
    expected[0] = 2  # 0.0 and exactly 0.005
    expected[1] = 1  # just above 0.005
    expected[len(DURATION_BUCKETS) - 1] = 1  # exactly 10
    expected[-1] = 1  # overflow bucket
    assert h["BucketCounts"] == expected
    assert h["Count"] == 5 and h["Sum"] == pytest.approx(sum(samples))
    assert (h["Min"], h["Max"]) == (0.0, 10.5)
    assert h["StartTimeUnix"].timestamp() == pytest.approx(recs[0].start_ns / 1e9)


def test_histogram_points_carry_only_low_cardinality_attributes(kit: SimpleNamespace) -> None:
    recs = kit.make_records(300, seed=2)
    rows = batch_metric_rows(recs, {}, service_name="svc", resource={}, start_ns=0, time_ns=1)
    assert sum(h["Count"] for h in rows.histograms) == 300
    allowed = {"http.route", "http.request.method", "http.response.status_code", "loomgate.status_class",
               "loomgate.upstream", "error.type"}
    for h in rows.histograms:
        assert set(h["Attributes"]) <= allowed
        code = h["Attributes"].get("http.response.status_code")
        if code:
            assert h["Attributes"]["loomgate.status_class"] == code[0] + "xx"
    # distinct attribute sets, each once
    keys = [tuple(sorted(h["Attributes"].items())) for h in rows.histograms]
    assert len(keys) == len(set(keys))
    assert status_class(503) == "5xx" and status_class(0) == ""


def test_metric_rows_fit_the_collector_columns(kit: SimpleNamespace) -> None:
    gauges = gauge_rows({"active_requests": 4, "circuit_states": {"a": "half_open", "b": "bogus"}},
                        service_name="svc", resource={}, time_ns=10**18)
    assert [(g["MetricName"], g["Value"]) for g in gauges] == [
        ("http.server.active_requests", 4.0), ("loomgate.circuit_breaker.state", 1.0)]
    pipe = pipeline_rows({"queued": 5, "written": 3, "dropped": 2}, service_name="svc", resource={},
                         start_ns=10**18, time_ns=10**18 + 5)
    assert {p["Attributes"]["loomgate.pipeline.outcome"]: p["Value"] for p in pipe} == {
        "queued": 5.0, "written": 3.0, "spooled": 0.0, "dropped": 2.0, "replayed": 0.0, "dead_lettered": 0.0}
    assert all(p["IsMonotonic"] and p["AggregationTemporality"] == 2 for p in pipe)
    # every column of the Collector tables is produced (project raises KeyError otherwise)
    assert len(project(gauges, METRIC_GAUGE_COLUMNS)[0]) == len(METRIC_GAUGE_COLUMNS)
    assert len(project(pipe, METRIC_SUM_COLUMNS)[0]) == len(METRIC_SUM_COLUMNS)
    hist = batch_metric_rows(kit.make_records(20), {}, service_name="svc", resource={}, start_ns=0,
                             time_ns=0).histograms
    assert all(len(row) == len(METRIC_HISTOGRAM_COLUMNS) for row in project(hist, METRIC_HISTOGRAM_COLUMNS))
    assert batch_metric_rows([], {}, service_name="svc", resource={}, start_ns=0, time_ns=0).histograms == []
