"""The gateway → writer record encoding: what the writer unpickles is exactly the records as plain tuples."""

from __future__ import annotations

import pickle
import threading

import pytest

from collectors.exporter import _Pending
from collectors.wire import RECORD_WIDTH, decode_chunks, encode_chunk, records_from_marshal
from tests.telemetry.conftest import make_records


def test_chunk_unpickles_to_plain_record_tuples() -> None:
    recs = make_records(300)
    loaded = pickle.loads(encode_chunk(recs))
    assert loaded == [tuple(r) for r in recs]
    assert all(type(t) is tuple and len(t) == RECORD_WIDTH for t in loaded)
    # field types survive: None, bool and float stay what they were (not 0 / 1 / int)
    assert [type(x) for x in loaded[0]] == [type(x) for x in recs[0]]


def test_chunks_decode_in_order_and_empty_chunk_is_empty() -> None:
    recs = make_records(10, seed=3)
    assert decode_chunks([encode_chunk(recs[:4]), encode_chunk([]), encode_chunk(recs[4:])]) == [
        tuple(r) for r in recs
    ]


def test_truncated_field_list_is_refused() -> None:
    import marshal

    with pytest.raises(ValueError):
        records_from_marshal(marshal.dumps(list(make_records(1)[0])[:-1]))


def test_pending_batch_spools_the_same_rows_before_and_after_it_was_encoded() -> None:
    recs = make_records(7, seed=5)
    lock = threading.Lock()
    pend = _Pending("b1", 123, {}, list(recs))
    before = pend.to_batch(lock)
    pend.wire, pend.records = [encode_chunk(recs[:3]), encode_chunk(recs[3:])], None
    after = pend.to_batch(lock)
    assert before.records == after.records == [tuple(r) for r in recs]
    assert (after.batch_id, after.cut_ns, pend.n) == ("b1", 123, 7)
