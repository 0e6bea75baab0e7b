"""Replaying a batch with its deduplication token adds nothing: not to otel_traces, not to the rollups."""

from __future__ import annotations

from collectors.rows import SPAN_COLUMNS, insert_calls, insert_settings, span_rows
from collectors.store import Store

from .conftest import RecordFactory

COUNTS = (
    "SELECT (SELECT count() FROM otel_traces), (SELECT sum(calls) FROM loomgate_calls_1m), "
    "(SELECT sum(bytes_in) FROM loomgate_calls_1m), (SELECT sum(calls) FROM loomgate_upstream_1m), "
    "(SELECT count() FROM otel_traces_trace_id_ts)"
)


def _counts(store: Store) -> tuple[int, ...]:
    return tuple(store.query(COUNTS).rows[0])


def test_replay_with_same_token_is_dropped_everywhere(schema_store: Store, records: RecordFactory) -> None:
    recs = records(1500, seed=21)
    batches = [span_rows(recs[i:i + 500], "loomgate", {}) for i in range(0, 1500, 500)]
    for i, rows in enumerate(batches):
        schema_store.insert("otel_traces", rows, SPAN_COLUMNS, settings=insert_settings(f"b{i}"))
    once = _counts(schema_store)
    assert once[0] == sum(len(b) for b in batches)
    assert once[1] == once[3] == len(recs)

    for i, rows in enumerate(batches):  # a spool replay of everything, in order
        schema_store.insert("otel_traces", rows, SPAN_COLUMNS, settings=insert_settings(f"b{i}"))
    assert _counts(schema_store) == once


def test_a_new_token_is_a_new_batch(schema_store: Store, records: RecordFactory) -> None:
    """The check above can fail: the same rows under another token are stored (and rolled up) again."""
    recs = records(300, seed=22)
    rows = span_rows(recs, "loomgate", {})
    schema_store.insert("otel_traces", rows, SPAN_COLUMNS, settings=insert_settings("first"))
    once = _counts(schema_store)
    schema_store.insert("otel_traces", rows, SPAN_COLUMNS, settings=insert_settings("second"))
    twice = _counts(schema_store)
    assert twice[:4] == tuple(2 * v for v in once[:4])


def test_staged_replay_is_dropped_down_the_whole_chain(schema_store: Store, records: RecordFactory) -> None:
    """insert_calls goes loomgate_calls_ingest (Null) -> two views -> otel_traces -> rollup views: a replayed
    batch must be dropped at every step, and a new token must still count (so the check can fail)."""
    recs = records(1200, seed=23)
    parts = [recs[i:i + 400] for i in range(0, 1200, 400)]
    sla = "SELECT sum(calls) FROM loomgate_sla_1m"
    written = [insert_calls(schema_store, p, service_name="loomgate", resource={}, token=f"s{i}")
               for i, p in enumerate(parts)]
    once = _counts(schema_store)
    assert once[0] == sum(written) > len(recs)
    assert once[1] == once[3] == len(recs)
    assert schema_store.query(sla).rows[0][0] == len(recs)

    for i, p in enumerate(parts):  # replayed in order, then out of order
        insert_calls(schema_store, p, service_name="loomgate", resource={}, token=f"s{i}")
    insert_calls(schema_store, parts[0], service_name="loomgate", resource={}, token="s0")
    assert _counts(schema_store) == once
    assert schema_store.query(sla).rows[0][0] == len(recs)

    insert_calls(schema_store, parts[1], service_name="loomgate", resource={}, token="other")
    again = _counts(schema_store)
    assert again[0] == once[0] + written[1]
    assert again[1] == again[3] == len(recs) + len(parts[1])
