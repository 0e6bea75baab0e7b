"""Wall time of every query in the library on a generated history in the embedded store.

    python bench/queries_bench.py --data-dir /tmp/lg-bench --scale 100 [--runs 3]

Scale 100 = 10M calls and 1M orders (``loomgate generate``); the history is generated once into
DATA_DIR and reused while its marker file says it has the same scale and seed.  Each query runs with its
default parameters except the window end, which is the generated history's end; the first run warms
caches and the median of the others is reported.  Target: < 1 s per query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

from collectors.generate import generate, load_effects, make_plan
from collectors.querylib import list_queries, run_query_sync
from collectors.schema import migrate
from collectors.store import Store
from gateway.config import TelemetryConfig

END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--scale", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    dsn = "chdb://" + str((args.data_dir / "clickhouse").resolve())
    store = Store(dsn, "otel")
    marker = args.data_dir / "generated.json"
    want = {"scale": args.scale, "seed": args.seed, "end": END.isoformat()}
    if not marker.exists() or json.loads(marker.read_text()) != want:
        migrate(store, TelemetryConfig(store=dsn, database="otel", ttl_days=0))
        plan = make_plan(args.scale, args.seed, end=END)
        summary = generate(store, plan, load_effects())
        print(f"generated {summary.calls} calls, {summary.kpi_rows.get('orders', 0)} orders in "
              f"{summary.seconds:.0f} s", file=sys.stderr)
        marker.write_text(json.dumps(want))
    counts = {t: store.query(f"SELECT count() FROM {t}").rows[0][0]
              for t in ("otel_traces", "loomgate_calls_1m", "kpi_orders", "kpi_cart_events")}
    print(f"rows: {counts}")
    print(f"{'query':28} {'median s':>9} {'max s':>7} {'rows':>6}")
    for q in list_queries():
        required = [p for p in q.params if p not in q.defaults and p not in ("start", "end")]
        if required:
            print(f"{q.name:28} skipped: needs {', '.join(required)}")
            continue
        params = {k: END.isoformat() for k in q.params if k == "end"}
        if "start" in q.params:
            params["start"] = (END - dt.timedelta(days=30)).isoformat()
        times: list[float] = []
        rows = 0
        for _ in range(args.runs + 1):
            t0 = time.perf_counter()
            rows = len(run_query_sync(store, q.name, params).rows)
            times.append(time.perf_counter() - t0)
        measured = times[1:] or times
        print(f"{q.name:28} {statistics.median(measured):9.3f} {max(measured):7.3f} {rows:6d}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
