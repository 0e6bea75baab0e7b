"""Replaying a batch with its deduplication token adds nothing: not to otel_traces, not to the rollups."""

from __future__ import annotations

from collectors.rows import SPAN_COLUMNS, insert_settings, span_rows
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
