"""Bounded on-disk spool for telemetry batches the store could not take (yet).

Layout: one directory, one sealed segment file per batch, named so that a plain sort is arrival order::

    <dir>/<time_ns:020d>-<pid>-<seq:08d>-<batch_id>[.solo].seg   sealed, replayable
    <dir>/replay.group                              the replay group being inserted (see below)
    <dir>/.tmp-...                                  being written (ignored; stale ones removed at open)
    <dir>/corrupt/                                  segments that failed their checksum (kept for inspection)
    <dir>/.lock                                     flock: serialises "check budget + write" between processes

A segment is ``MAGIC | u32 crc32(payload) | u64 len(payload) | payload`` where the payload is the pickled
``Batch`` (records as plain tuples).  Segments are never modified after they are sealed, only deleted once
the store has acknowledged them, so a crash at any point leaves either a complete segment or a ``.tmp``.

Fsync policy: the segment file is fsynced before the rename that seals it, and the directory is fsynced after
the rename.  Spooling only happens while the store is unavailable or behind, so this costs one or two fsyncs
per batch (≤ a few per second) exactly when durability matters; a sealed segment survives a power loss.

Budget: the sum of sealed segment sizes never exceeds ``max_bytes``.  A batch that does not fit is not
written; the caller drops and counts it.  Both the gateway process (spilling when the writer falls behind)
and the writer process append here, so the budget check and the write happen under an exclusive ``flock``.

Replays cannot create duplicates: every batch carries its ``batch_id``, used as the ClickHouse
``insert_deduplication_token`` on every attempt, so a segment replayed twice (crash between insert and
delete) is deduplicated by the store.  The name carries the batch id and a ``.solo`` mark for a batch that
may already have been inserted under its own id (its insert failed, or its writer died before
acknowledging it): such a batch, or one whose id is in two segments, is only ever replayed alone under its
own id.  Other segments may be replayed several per insert under one group token; the group (token and
segment names) is sealed in ``replay.group`` before the insert and removed after its segments, so a crash
at any point replays exactly the same group under the same token (see ``collectors.writer``).
"""

from __future__ import annotations

import fcntl
import os
import pickle
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"LGSPOOL1"
_HEADER = struct.Struct("<8sIQ")
_STALE_TMP_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Batch:
    """The unit that travels gateway → writer → (spool →) store.  ``batch_id`` is the dedup token."""

    batch_id: str
    cut_ns: int  # wall clock when the gateway closed the batch: metric timestamps derive from it
    records: list[tuple[Any, ...]]  # CallRecord fields as plain tuples (cheaper to pickle)
    gauges: dict[str, Any] = field(default_factory=dict)  # snapshot taken when the batch was cut


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    size: int

    @property
    def solo(self) -> bool:
        """Replay alone under its batch id: it may already be in the store under that id."""
        return self.path.name.endswith(SOLO_SUFFIX) or not self.batch_id

    @property
    def batch_id(self) -> str:
        parts = self.path.name.removesuffix(SOLO_SUFFIX).removesuffix(".seg").split("-")
        return parts[3] if len(parts) == 4 else ""


@dataclass(frozen=True, slots=True)
class ReplayGroup:
    """Segments replayed as one insert under ``token``; sealed on disk until they are removed."""

    token: str
    names: tuple[str, ...]


SOLO_SUFFIX = ".solo.seg"
GROUP_FILE = "replay.group"


class SpoolCorrupt(Exception):
    """A segment failed its checksum or could not be decoded."""


class Spool:
    """Append / read-oldest / delete over a spool directory.  Thread-safe; multi-process safe for appends."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._lock_path = self.dir / ".lock"
        self._remove_stale_tmp()

    # -- writing -------------------------------------------------------------------------------------

    def append(self, batch: Batch, *, solo: bool = False) -> bool:
        """Seal ``batch`` as a new segment.  False (nothing written) when it does not fit in the budget.

        ``solo``: the batch may already be in the store under its id, so it must be replayed alone."""
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        data = _HEADER.pack(MAGIC, zlib.crc32(payload), len(payload)) + payload
        with self._exclusive():
            if self.bytes_used() + len(data) > self.max_bytes:
                return False
            self._seq += 1
            safe_id = "".join(c for c in batch.batch_id if c.isalnum())
            suffix = SOLO_SUFFIX if solo or safe_id != batch.batch_id else ".seg"
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:08d}-{safe_id}{suffix}"
            tmp = self.dir / f".tmp-{name}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.dir / name)
            self._fsync_dir()
        return True

    # -- reading -------------------------------------------------------------------------------------

    def segments(self) -> list[Segment]:
        """Sealed segments, oldest first."""
        out: list[Segment] = []
        with os.scandir(self.dir) as it:
            for e in it:
                if e.name.endswith(".seg") and not e.name.startswith("."):
                    try:
                        out.append(Segment(Path(e.path), e.stat().st_size))
                    except FileNotFoundError:  # removed concurrently
                        continue
        out.sort(key=lambda s: s.path.name)
        return out

    def oldest(self) -> Segment | None:
        segs = self.segments()
        return segs[0] if segs else None

    def bytes_used(self) -> int:
        return sum(s.size for s in self.segments())

    def read(self, seg: Segment) -> Batch:
        data = seg.path.read_bytes()
        if len(data) < _HEADER.size:
            raise SpoolCorrupt(f"{seg.path.name}: truncated header")
        magic, crc, length = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if magic != MAGIC or length != len(payload) or zlib.crc32(payload) != crc:
            raise SpoolCorrupt(f"{seg.path.name}: bad magic, length or checksum")
        try:
            batch = pickle.loads(payload)
        except Exception as exc:
            raise SpoolCorrupt(f"{seg.path.name}: cannot decode: {exc}") from exc
        if not isinstance(batch, Batch):
            raise SpoolCorrupt(f"{seg.path.name}: not a batch")
        return batch

    def remove(self, seg: Segment) -> None:
        seg.path.unlink(missing_ok=True)

    def write_group(self, group: ReplayGroup) -> None:
        """Seal the replay group before its insert (one small fsynced file per group insert)."""
        data = pickle.dumps((group.token, list(group.names)), protocol=pickle.HIGHEST_PROTOCOL)
        tmp = self.dir / f".tmp-{GROUP_FILE}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.dir / GROUP_FILE)
        self._fsync_dir()

    def read_group(self) -> ReplayGroup | None:
        """The group whose insert may have happened, or None; an unreadable file counts as none (it is
        only sealed complete, by rename)."""
        try:
            token, names = pickle.loads((self.dir / GROUP_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except Exception:
            return None
        return ReplayGroup(str(token), tuple(str(n) for n in names))

    def clear_group(self) -> None:
        (self.dir / GROUP_FILE).unlink(missing_ok=True)

    def quarantine(self, seg: Segment) -> Path:
        """Move an unreadable segment aside so replay can continue; returns where it went."""
        dest_dir = self.dir / "corrupt"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / seg.path.name
        os.replace(seg.path, dest)
        return dest

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments())

    # -- internals -----------------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock, open(self._lock_path, "a+b") as lf:
            fcntl.flock(lf.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lf.fileno(), fcntl.LOCK_UN)

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_stale_tmp(self) -> None:
        # A .tmp left by a crash mid-write was never acknowledged as spooled, so its batch was counted as
        # in-memory loss already; only old ones are removed so a concurrent writer's file is left alone.
        cutoff = time.time() - _STALE_TMP_SECONDS
        for p in self.dir.glob(".tmp-*"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except FileNotFoundError:
                continue
