"""A bad record is not an outage: telling content errors from availability errors, and isolating them.

A batch the store rejects because of what is *in* it (a string that cannot be encoded, a value of the wrong
type or out of its column's range) fails the same way on every retry, so spooling it would block replay
behind it forever.  Only availability errors (connection, timeout, server or table not there) are worth
retrying.  A batch that fails for its content is split in halves, recursively, until the records the store
rejects stand alone: everything else is stored, the rejected records go to the dead-letter file with the
store's reason, and the ``dead_lettered`` counter counts them.

Exactly once: each part of a split batch is inserted under a token derived from the batch id and the part's
record range (``<batch_id>/<start>-<end>``).  Bisection is deterministic for a given batch, so if an
availability error interrupts it, the whole batch is spooled under its own id, and the replay splits it the
same way: the parts already stored are dropped by deduplication.  Nothing is dead-lettered or counted until
a bisection has finished.

The dead-letter file is JSON Lines (``<data_dir>/deadletter.jsonl``), one rejected record a line:
``{"time": ISO-8601 UTC, "batch_id": ..., "reason": ..., "record": {field: value, ...}}``.  It is written
with ASCII escapes, so a record holding text that is not valid UTF-8 still makes a valid line.  Its size is
bounded (``telemetry.dead_letter_max_bytes``): records that no longer fit are dropped, counted and logged,
like a full spool.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import DataError

from collectors.record import CallRecord
from collectors.spool import Batch

log = logging.getLogger("loomgate.writer")

DEAD_LETTER_FILE = "deadletter.jsonl"

# ClickHouse error codes that mean "this data cannot go in", not "the server cannot take data now".
CONTENT_ERROR_CODES: frozenset[int] = frozenset({
    6,  # CANNOT_PARSE_TEXT
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    43,  # ILLEGAL_TYPE_OF_ARGUMENT
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
})
_CODE = re.compile(r"\bCode: (\d+)\.")
# Raised while the client serialises a batch (encoding, int(), struct.pack): the data, never the network.
_CONTENT_TYPES: tuple[type[BaseException], ...] = (UnicodeError, TypeError, ValueError, OverflowError,
                                                   struct.error, DataError)


def is_content_error(exc: BaseException) -> bool:
    """True when ``exc`` says the batch's content was rejected (retrying the same data cannot help)."""
    seen: BaseException | None = exc
    for _ in range(8):  # the client wraps the serialiser's error (DataError from struct.error, ...)
        if seen is None:
            break
        if isinstance(seen, OSError):  # ConnectionError, TimeoutError: availability, whatever wraps them
            return False
        if isinstance(seen, _CONTENT_TYPES):
            return True
        code = getattr(seen, "code", None)
        if not isinstance(code, int):
            m = _CODE.search(str(seen))
            code = int(m.group(1)) if m else None
        if code in CONTENT_ERROR_CODES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def reason_of(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


@dataclass(frozen=True, slots=True)
class DeadRecord:
    record: tuple[Any, ...]
    reason: str


@dataclass(slots=True)
class Isolation:
    """Outcome of splitting a content-rejected batch: how many records were stored, which were not."""

    stored: int = 0
    dead: list[DeadRecord] = field(default_factory=list)


def part_id(batch_id: str, start: int, end: int) -> str:
    return f"{batch_id}/{start}-{end}"


def isolate(batch: Batch, first_error: BaseException, write: Callable[[Batch], None]) -> Isolation:
    """Store every record of ``batch`` the store accepts, by bisection; ``first_error`` is why the whole
    batch failed.  ``write`` inserts a part (no gauges: the caller stores the batch's gauges once).
    An availability error from ``write`` propagates: nothing is counted, the caller spools the batch."""
    out = Isolation()
    records = batch.records
    # (start, end, error) of ranges known to hold a rejected record; explicit stack, no recursion limit.
    todo: list[tuple[int, int, BaseException]] = [(0, len(records), first_error)]
    while todo:
        start, end, error = todo.pop()
        if end - start == 1:
            out.dead.append(DeadRecord(tuple(records[start]), reason_of(error)))
            continue
        mid = (start + end) // 2
        for lo, hi in ((mid, end), (start, mid)):  # pushed right first: the left half is split first
            part = Batch(part_id(batch.batch_id, lo, hi), batch.cut_ns, records[lo:hi], {})
            try:
                write(part)
            except Exception as exc:
                if not is_content_error(exc):
                    raise
                todo.append((lo, hi, exc))
            else:
                out.stored += hi - lo
    return out


class DeadLetterFile:
    """Append-only JSON Lines file of rejected records, bounded by ``max_bytes``.  Thread-safe."""

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def append(self, batch_id: str, dead: Sequence[DeadRecord]) -> int:
        """Write the records that fit; returns how many were written (the rest are the caller's to count
        as dropped).  An I/O error writes none."""
        when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines = [_line(when, batch_id, d) for d in dead]
        with self._lock:
            try:
                used = self.path.stat().st_size
            except FileNotFoundError:
                used = 0
            fit: list[bytes] = []
            for line in lines:
                if used + len(line) > self.max_bytes:
                    break
                fit.append(line)
                used += len(line)
            if not fit:
                return 0
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "ab") as f:
                    f.write(b"".join(fit))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                log.error("dead-letter file %s not written: %s", self.path, exc)
                return 0
        return len(fit)


def _line(when: str, batch_id: str, dead: DeadRecord) -> bytes:
    rec = dead.record
    record: Any = (dict(zip(CallRecord._fields, rec, strict=True)) if len(rec) == len(CallRecord._fields)
                   else {"fields": list(rec)})
    doc = {"time": when, "batch_id": batch_id, "reason": dead.reason, "record": record}
    # ensure_ascii: lone surrogates become \udcXX escapes, so the line is valid text whatever the record held
    return (json.dumps(doc, ensure_ascii=True, default=repr) + "\n").encode("ascii")
