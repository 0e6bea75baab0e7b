"""Telemetry ingest benchmark: sustained rows/s into embedded ClickHouse through the writer process, and
what the pipeline costs the gateway process per record.

    python bench/telemetry_ingest.py --records 400000
    python bench/telemetry_ingest.py --records 400000 --rate 20000   # paced, like a busy gateway
    python bench/telemetry_ingest.py --records 400000 --repeat 5     # best and median of 5 runs
    python bench/telemetry_ingest.py --records 400000 --without-rollups   # the Collector's tables only

Measured in one run:
- ingest: span rows (SERVER + CLIENT) per second from the first submit until every batch is acknowledged
  as inserted (``Telemetry.flush``), counted in ClickHouse afterwards; and the writer process's CPU time
  per row (all threads, chDB included), which stays meaningful on a shared, busy machine;
- gateway CPU: process CPU time of this (gateway) process during ingest ÷ records: the ``submit`` append,
  batch cuts, pickling in the sender thread and acknowledgement handling; the writer is another process;
- submit alone: µs per ``sink.submit`` call on the event loop (the only part on the request path);
- loop stalls (``--probe-loop``): lateness of a 1 ms ticker on the event loop during ingest (what a request
  would wait); the ticker's own CPU then inflates the gateway figure, so measure the two in separate runs.

``--without-rollups`` drops Loomgate's rollup views (per-minute, per-day, per-upstream, SLA) from the fresh
store before the run: what remains is what the Collector's own exporter writes (span rows and the trace-id
lookup), so the run shows the pipeline's ceiling on this machine with no rollup work at all.  A diagnostic
only: the gateway's reports need the rollups.

On a shared machine one run says little: ``--repeat N`` runs N times (fresh store each) and adds the best
and the median of every figure (best = highest rate, lowest CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil
from threads import difference, snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.exporter import start_telemetry
from collectors.record import CallRecord
from gateway.config import AdminListener, Config, Listener, SpoolConfig, TelemetryConfig

# Every view that feeds a Loomgate rollup (queries/schema/003, 004, 006, 012); span and trace-id views stay.
ROLLUP_VIEWS = ("loomgate_calls_1d_mv", "loomgate_calls_1m_mv", "loomgate_upstream_1m_mv",
                "loomgate_sla_1m_mv")


def make_records(n: int, seed: int = 1) -> list[CallRecord]:
    """Realistic mix: 85 % proxied 2xx, 5 % upstream 5xx, 10 % rejected by the gateway (no CLIENT span)."""
    rng = random.Random(seed)
    base = time.time_ns()
    out = []
    for i in range(n):
        roll = rng.random()
        called = roll < 0.9
        status = 200 if roll < 0.85 else (502 if called else 429)
        artisan = f"a{rng.randrange(5000)}"
        dur = int(rng.lognormvariate(-4.5, 0.8) * 1e9)
        out.append(CallRecord(
            base + i * 50_000, dur, f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}", "",
            "PUT", "/v1/artisans/{artisan_id}/listings/{listing_id}/inventory", "sync_inventory",
            f"/v1/artisans/{artisan}/listings/L{i % 997}/inventory", status,
            "" if status == 200 else ("connect_error" if called else "rate_limited"),
            "" if status == 200 else ("upstream" if called else "gateway"), f"p{i % 7}", artisan,
            "inventory" if called else "", f"{rng.getrandbits(64):016x}" if called else "",
            base + i * 50_000 + 100_000 if called else 0, max(dur - 200_000, 0) if called else 0,
            float(rng.randrange(5000)) if called else None, False, "gateway.example:8080", "10.0.0.7",
            "partner-sdk/2.1", 180, 96, f"{rng.getrandbits(64):016x}", "https", 200 if status == 200 else 0,
        ))
    return out


def config(data_dir: str, batch_size: int) -> Config:
    t = replace(TelemetryConfig(data_dir=data_dir, batch_size=batch_size, queue_max_records=10_000_000,
                                spool=SpoolConfig(max_bytes=4 << 30)))
    return Config(source="bench", partner_listener=Listener(port=0), admin_listener=AdminListener(port=0),
                  upstreams=(), routes=(), partners=(), telemetry=t)


async def ticker(stop: asyncio.Event, worst: list[float]) -> None:
    """Largest lateness of a 1 ms sleep: how long the loop was unavailable to requests."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        worst.append(time.perf_counter() - t0 - 0.001)


def submit_cost(recs: list[CallRecord], batch_size: int) -> float:
    """µs per submit with the real sink (cuts included, sender not running: pure loop-side cost)."""
    from collectors.exporter import BatchingSink

    cuts: list[list[CallRecord]] = []
    sink = BatchingSink(batch_size, lambda: cuts.append(sink.take()))
    submit = sink.submit
    t0 = time.perf_counter()
    for r in recs:
        submit(r)
    return (time.perf_counter() - t0) / len(recs) * 1e6


async def run(args: argparse.Namespace) -> dict[str, float | None]:
    recs = make_records(args.records)
    client_spans = sum(1 for r in recs if r.upstream_span_id)
    with tempfile.TemporaryDirectory(prefix="lg-ingest-") as d:
        tel = await start_telemetry(config(d, args.batch_size))
        assert tel.store is not None
        if args.without_rollups:
            for view in ROLLUP_VIEWS:
                await tel.store.command(f"DROP VIEW {view}")
        writer = psutil.Process(tel.writer_pid)
        wcpu0 = sum(writer.cpu_times()[:2])
        threads0 = snapshot({"writer": [tel.writer_pid]})
        stop, lags = asyncio.Event(), []
        # the probe itself costs loop CPU (1,000 wake-ups/s), so it only runs when asked for
        tick = asyncio.create_task(ticker(stop, lags)) if args.probe_loop else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        step = 500
        interval = step / args.rate if args.rate else 0.0
        for i in range(0, len(recs), step):
            for r in recs[i:i + step]:
                tel.sink.submit(r)
            if interval:
                await asyncio.sleep(max(0.0, t0 + (i + step) / args.rate - time.perf_counter()))
            else:
                await asyncio.sleep(0)
        ok = await tel.flush(timeout=600)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        wcpu = sum(writer.cpu_times()[:2]) - wcpu0
        threads = difference(threads0, snapshot({"writer": [tel.writer_pid]}))
        stop.set()
        if tick is not None:
            await tick
        res = await tel.store.query("SELECT count() FROM otel_traces")
        rows = int(res.rows[0][0])
        counters = tel.counters()
        await tel.close()
    lags.sort()
    expected = len(recs) + client_spans
    return {
        "records": len(recs), "span_rows": rows, "expected_rows": expected, "flushed": float(ok),
        "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed),
        "records_per_s": round(len(recs) / elapsed),
        # CPU the writer process spent per span row (all its threads, chDB included): the capacity of one
        # otherwise idle core is 1e6 / this, whatever else the machine was doing during the run
        "writer_cpu_us_per_row": round(wcpu / rows * 1e6, 2),
        "rows_per_writer_cpu_s": round(rows / wcpu),
        "gateway_cpu_us_per_record": round(cpu / len(recs) * 1e6, 2),
        "submit_us_per_record": round(submit_cost(recs[:200_000], args.batch_size), 3),
        "loop_stall_p99_ms": round(lags[int(len(lags) * 0.99)] * 1e3, 3) if lags else None,
        "loop_stall_max_ms": round(lags[-1] * 1e3, 3) if lags else None,
        # where the writer's CPU went: µs per span row per thread group (name, scheduling policy)
        "writer_threads_us_per_row": {f"{k.thread} ({k.policy})": round(u.cpu_s / rows * 1e6, 2)
                                      for k, u in sorted(threads.items(), key=lambda kv: -kv[1].cpu_s)
                                      if u.cpu_s / rows * 1e6 >= 0.05},
        "written": counters["written"], "dropped": counters["dropped"], "spooled": counters["spooled"],
    }


_LOWER_IS_BETTER = ("cpu_us", "stall", "seconds")


def summarise(runs: list[dict[str, float | None]]) -> dict[str, object]:
    """Per figure: the best run's value and the median over runs."""
    best: dict[str, float] = {}
    median: dict[str, float] = {}
    for key in runs[0]:
        values = [float(v) for r in runs if isinstance(v := r[key], int | float)]
        if len(values) != len(runs):
            continue
        low = any(s in key for s in _LOWER_IS_BETTER)
        best[key] = min(values) if low else max(values)
        median[key] = statistics.median(values)
    return {"runs": runs, "best": best, "median": median}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=400_000)
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--rate", type=float, default=0.0, help="records/s to submit at (0 = as fast as possible)")
    p.add_argument("--probe-loop", action="store_true",
                   help="measure event-loop stalls with a 1 ms ticker (its CPU adds to the gateway figure)")
    p.add_argument("--without-rollups", action="store_true",
                   help="drop the rollup views first: the Collector's tables only (a ceiling, not a target)")
    p.add_argument("--repeat", type=int, default=1, help="runs, each with a fresh store (best and median)")
    args = p.parse_args()
    runs = []
    for _ in range(max(1, args.repeat)):
        result = asyncio.run(run(args))
        result["cpus"] = os.cpu_count() or 0
        runs.append(result)
    print(json.dumps(runs[0] if len(runs) == 1 else summarise(runs), indent=2))
    return 0 if all(r["span_rows"] == r["expected_rows"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
