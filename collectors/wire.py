"""How call records travel from the gateway process to the writer process, cheaply for the gateway.

A chunk of records goes over the socket as a pickle whose payload is the ``marshal`` encoding of the
records' fields laid end to end (``RECORD_WIDTH`` per record): flattening is one C-level pass, no per-record
tuple is built, marshal writes plain ``str``/``int``/``float``/``None``/``bool`` runs faster than pickle, and
its back-references share repeated strings such as the method or route.  The encoded chunk is also what the
gateway keeps until the writer acknowledges the batch: bytes are a third of the records' size in memory and
are never walked by the garbage collector, which matters when a slow store lets batches pile up.

Unpickling calls ``records_from_marshal``, which regroups the flat values into plain record tuples: the
receiving side gets exactly what it would get from ``pickle.dumps(list_of_tuples)``, so ``pickle.loads``
stays the only decoder it needs.  Both processes run the same interpreter (the writer is started with
``sys.executable``), which marshal requires.
"""

from __future__ import annotations

import marshal
import pickle
from collections.abc import Sequence
from itertools import chain
from typing import Any

from collectors.record import CallRecord

RECORD_WIDTH = len(CallRecord._fields)


def records_from_marshal(blob: bytes) -> list[tuple[Any, ...]]:
    """Record tuples from a marshalled flat list of fields (called by ``pickle.loads``)."""
    flat = marshal.loads(blob)
    if not isinstance(flat, list) or len(flat) % RECORD_WIDTH:
        raise ValueError(f"record chunk is not a list of {RECORD_WIDTH}-field records")
    it = iter(flat)
    return list(zip(*[it] * RECORD_WIDTH, strict=False))  # one iterator N times: groups of N


class _Chunk:
    """Pickles as a call of ``records_from_marshal`` on the marshalled slice."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return records_from_marshal, (self.blob,)


def encode_chunk(records: Sequence[CallRecord]) -> bytes:
    """The wire form of some records: ``pickle.loads`` of it returns them as plain tuples."""
    blob = marshal.dumps(list(chain.from_iterable(records)))
    return pickle.dumps(_Chunk(blob), protocol=pickle.HIGHEST_PROTOCOL)


def decode_chunks(chunks: Sequence[bytes]) -> list[tuple[Any, ...]]:
    """Record tuples from encoded chunks, in order."""
    out: list[tuple[Any, ...]] = []
    for chunk in chunks:
        out.extend(pickle.loads(chunk))
    return out
