"""Wall time of every query in the library on a generated history in the embedded store.

    python bench/queries_bench.py --data-dir /tmp/lg-bench --scale 100 [--runs 3] [--migrate]

Scale 100 = 10M calls and 1M orders (``loomgate generate``); the history is generated once into
DATA_DIR and reused while its marker file says it has the same scale and seed.  An existing history is
not migrated unless ``--migrate`` is given (schema files added since it was generated are listed).

Each query runs with its default parameters except the window: ``start``/``end`` are the last 30 days of
the history, once on whole UTC days ("days": what a daily report asks) and once shifted off midnight at
both ends ("edges": what ``-30d .. now`` asks, so the partial days come from the per-minute rollup).
``--queries-dir`` times another copy of the library (e.g. an earlier commit's ``queries/``) on the same
data.  Every timing is the median of ``--runs`` runs after one warm-up run; the load average is printed before
and after, because other processes on the machine change the numbers.  Target: < 1 s per query.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

from collectors.generate import generate, load_effects, make_plan
from collectors.querylib import NamedQuery, list_queries, run_query_sync
from collectors.schema import applied_versions, migrate, schema_files
from collectors.store import Store
from gateway.config import TelemetryConfig

END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=30)
EDGE_SHIFT = (dt.timedelta(hours=7, minutes=13, seconds=29), dt.timedelta(hours=3, minutes=17, seconds=41))
COUNTED = ("otel_traces", "loomgate_calls_1m", "loomgate_calls_1d", "kpi_orders", "kpi_cart_events")


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _prepare(store: Store, args: argparse.Namespace, dsn: str) -> None:
    """Generate the history unless the data dir holds it already; migrate it when asked to."""
    tcfg = TelemetryConfig(store=dsn, database="otel", ttl_days=0)
    marker = args.data_dir / "generated.json"
    want = {"scale": args.scale, "seed": args.seed, "end": END.isoformat()}
    if not marker.exists() or json.loads(marker.read_text()) != want:
        migrate(store, tcfg)
        plan = make_plan(args.scale, args.seed, end=END)
        summary = generate(store, plan, load_effects())
        print(f"generated {summary.calls} calls, {summary.kpi_rows.get('orders', 0)} orders in "
              f"{summary.seconds:.0f} s", file=sys.stderr)
        marker.write_text(json.dumps(want))
        return
    if args.migrate:
        t0 = time.perf_counter()
        applied = migrate(store, tcfg)
        print(f"migrated ({', '.join(applied) or 'up to date'}) in {time.perf_counter() - t0:.1f} s")
        return
    missing = [sf.name for sf in schema_files() if sf.version not in applied_versions(store)]
    if missing:
        print(f"schema files not applied to this history (use --migrate): {', '.join(missing)}")


def _windows() -> dict[str, tuple[dt.datetime, dt.datetime]]:
    days = (END - WINDOW, END)
    return {"days": days, "edges": (days[0] + EDGE_SHIFT[0], days[1] - EDGE_SHIFT[1])}


def _time(store: Store, q: NamedQuery, window: tuple[dt.datetime, dt.datetime], runs: int,
          queries_dir: Path | None) -> tuple[float, float, int]:
    """(median s, max s, rows) over ``runs`` runs after a warm-up run."""
    params = {k: w.isoformat() for k, w in zip(("start", "end"), window, strict=True) if k in q.params}
    times: list[float] = []
    rows = 0
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        rows = len(run_query_sync(store, q.name, params, queries_dir=queries_dir).rows)
        times.append(time.perf_counter() - t0)
    measured = times[1:] or times
    return statistics.median(measured), max(measured), rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--scale", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--migrate", action="store_true", help="apply new schema files to an existing history")
    p.add_argument("--queries-dir", type=Path, help="time the .sql files of this directory instead")
    args = p.parse_args(argv)
    dsn = "chdb://" + str((args.data_dir / "clickhouse").resolve())
    store = Store(dsn, "otel")
    try:
        _prepare(store, args, dsn)
        counts = {t: store.query(f"SELECT count() FROM {t}").rows[0][0] for t in COUNTED}
        print(f"rows: {counts}")
        print(f"before: {_load()}")
        windows = _windows()
        print(f"{'query':28} {'days med s':>10} {'max s':>6} {'edges med s':>11} {'max s':>6} {'rows':>6}")
        for q in list_queries(args.queries_dir):
            required = [n for n in q.params if n not in q.defaults and n not in ("start", "end")]
            if required:
                print(f"{q.name:28} skipped: needs {', '.join(required)}")
                continue
            d_med, d_max, rows = _time(store, q, windows["days"], args.runs, args.queries_dir)
            if "start" in q.params or "end" in q.params:
                e_med, e_max, _ = _time(store, q, windows["edges"], args.runs, args.queries_dir)
                edges = f"{e_med:11.3f} {e_max:6.3f}"
            else:
                edges = f"{'-':>11} {'-':>6}"
            print(f"{q.name:28} {d_med:10.3f} {d_max:6.3f} {edges} {rows:6d}")
        print(f"after: {_load()}")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
