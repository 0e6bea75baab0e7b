"""Where a call record's insert time goes in embedded ClickHouse: the same records inserted into fresh
schemas that differ in one thing each (a materialized view dropped, the skip indexes dropped, views run
one after another instead of in parallel), in-process, without the writer pipeline around it.

    python bench/telemetry_ingest.py ...            # the pipeline end to end (the figure with a target)
    python bench/ingest_breakdown.py --records 150000 --batch 30000

Each variant: one warm-up insert, then the rest of the records in ``--batch``-record inserts through
``collectors.rows.insert_calls`` (as the writer does, with a dedup token per insert).  Printed per
variant: wall and process CPU µs per record (CPU counts ClickHouse's threads) and span rows per second.
Variants run in the order given, alternating with ``all`` when ``--interleave`` is set; the machine's
noise is a few µs per record, so compare variants within one run.  Automatic garbage collection is off, as
in the writer process.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from telemetry_ingest import ROLLUP_VIEWS, make_records

import collectors.rows as rows
from collectors.schema import migrate
from collectors.store import Store
from gateway.config import TelemetryConfig

TRACE_ID_VIEW = "otel_traces_trace_id_ts_mv"
SPAN_VIEWS = ("loomgate_calls_ingest_server_mv", "loomgate_calls_ingest_client_mv")
SKIP_INDEXES = ("idx_trace_id", "idx_res_attr_key", "idx_res_attr_value", "idx_span_attr_key",
                "idx_span_attr_value", "idx_duration", "idx_lower_span_name")


def _drop_views(*views: str) -> Callable[[Store, str], None]:
    def change(store: Store, db: str) -> None:
        for v in views:
            store.command(f"DROP VIEW {db}.{v}")
    return change


def _spans_only_without_skip_indexes(store: Store, db: str) -> None:
    _drop_views(*ROLLUP_VIEWS, TRACE_ID_VIEW)(store, db)
    for idx in SKIP_INDEXES:
        store.command(f"ALTER TABLE {db}.otel_traces DROP INDEX {idx}")


# name -> (schema change, extra insert settings)
VARIANTS: dict[str, tuple[Callable[[Store, str], None] | None, dict[str, int]]] = {
    "all": (None, {}),
    "views_in_sequence": (None, {"parallel_view_processing": 0}),
    "no_calls_1m": (_drop_views("loomgate_calls_1m_mv"), {}),
    "no_calls_1d": (_drop_views("loomgate_calls_1d_mv"), {}),
    "no_upstream_1m": (_drop_views("loomgate_upstream_1m_mv"), {}),
    "no_sla_1m": (_drop_views("loomgate_sla_1m_mv"), {}),
    "no_trace_id_view": (_drop_views(TRACE_ID_VIEW), {}),
    # span rows, the trace-id table and the per-minute call rollup: no per-day, per-upstream or SLA rollups
    "calls_rollup_only": (_drop_views("loomgate_calls_1d_mv", "loomgate_upstream_1m_mv",
                                      "loomgate_sla_1m_mv"), {}),
    "spans_only": (_drop_views(*ROLLUP_VIEWS, TRACE_ID_VIEW), {}),
    "spans_only_no_skip_indexes": (_spans_only_without_skip_indexes, {}),
    "staging_only": (_drop_views(*ROLLUP_VIEWS, TRACE_ID_VIEW, *SPAN_VIEWS), {}),
}


def run_variant(data_dir: str, name: str, records: list, batch: int) -> tuple[float, float, float]:
    change, extra = VARIANTS[name]
    db = f"breakdown_{name}_{uuid.uuid4().hex[:6]}"
    store = Store(f"chdb://{data_dir}", "default")
    store.command(f"CREATE DATABASE {db}")
    store = Store(f"chdb://{data_dir}", db)
    migrate(store, replace(TelemetryConfig(), database=db))
    if change is not None:
        change(store, db)
    base = rows.insert_settings
    rows.insert_settings = lambda token: {**base(token), **extra}  # type: ignore[assignment]
    try:
        rows.insert_calls(store, records[:batch], service_name="bench", resource={}, token=uuid.uuid4().hex)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(batch, len(records), batch):
            rows.insert_calls(store, records[i:i + batch], service_name="bench", resource={},
                              token=uuid.uuid4().hex)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        rows.insert_settings = base  # type: ignore[assignment]
        store.command(f"DROP DATABASE {db}")
    n = len(records) - batch
    span_rows = sum(2 if r.upstream_span_id else 1 for r in records[batch:])
    return wall / n * 1e6, cpu / n * 1e6, span_rows / wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=150_000)
    p.add_argument("--batch", type=int, default=30_000, help="records per insert")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list from: " + ", ".join(VARIANTS))
    p.add_argument("--interleave", action="store_true", help="run 'all' before every other variant")
    args = p.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants: {', '.join(unknown)}")
    if args.interleave:
        names = [x for v in names if v != "all" for x in ("all", v)]
    records = make_records(args.records)
    # As in the writer process, which collects garbage explicitly between batches: automatic collections
    # would walk the records on every few thousand allocations and add their cost to the staging figure.
    gc.collect()
    gc.freeze()
    gc.disable()
    print(f"{args.records:,} records, {args.batch:,} per insert; first insert of each variant is a warm-up")
    print("| variant | wall µs/record | CPU µs/record | span rows/s |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="loomgate-breakdown-") as tmp:
        for name in names:
            wall, cpu, rate = run_variant(tmp, name, records, args.batch)
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rate:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
