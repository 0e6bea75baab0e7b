"""Which spooled batches the writer replays next, and under which deduplication token.

The rule that keeps replays exactly-once: a token, once used for an insert, is only ever used again for the
same records.

- A segment marked solo (``Spool.append(..., solo=True)``: its insert failed, or its writer died before
  acknowledging it) or whose batch id is in another segment too may already be in the store under its own
  id: it is replayed alone, under that id.
- Other segments were never inserted under any token, so the oldest run of them (up to ``max_records``) is
  replayed as one insert under a group token.  The group is sealed on disk (``Spool.write_group``) before
  the insert and cleared after its segments are removed: after a crash the pending group is replayed first,
  whole and under the same token, or, when some of its segments are already gone (removal happens only
  after the insert succeeded), the rest are removed without a second insert.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from dataclasses import dataclass

from collectors.spool import Batch, ReplayGroup, Segment, Spool, SpoolCorrupt

log = logging.getLogger("loomgate.writer")


@dataclass(frozen=True, slots=True)
class Replay:
    """Spooled batches inserted as one, under ``token``."""

    token: str
    segments: list[Segment]
    batches: list[Batch]


class ReplayPlanner:
    def __init__(self, spool: Spool, max_records: int) -> None:
        self.spool = spool
        self.max_records = max_records

    def next(self) -> Replay | None:
        """The next unit to replay, oldest first; None when the spool is empty."""
        while True:
            group = self.spool.read_group()
            segs = self.spool.segments()
            if group is not None:
                unit = self._pending(group, segs)
                if unit is not None:
                    return unit
                continue
            if not segs:
                return None
            ids = collections.Counter(s.batch_id for s in segs)
            first = segs[0]
            if first.solo or ids[first.batch_id] > 1:
                batches = self._read_all([first])
                if batches is not None:
                    return Replay(batches[0].batch_id, [first], batches)
                continue
            unit = self._fresh_group(segs, ids)
            if unit is not None:
                return unit

    def _pending(self, group: ReplayGroup, segs: list[Segment]) -> Replay | None:
        by_name = {s.path.name: s for s in segs}
        present = [by_name[n] for n in group.names if n in by_name]
        if len(present) == len(group.names):
            batches = self._read_all(present)
            if batches is not None:
                return Replay(group.token, present, batches)
            # A member went bad on disk: its records are lost either way; the rest replay on their own.
            self.spool.clear_group()
            return None
        # Segments are removed only after the group's insert succeeded: the rest are in the store.
        for seg in present:
            self.spool.remove(seg)
        self.spool.clear_group()
        return None

    def _fresh_group(self, segs: list[Segment], ids: collections.Counter[str]) -> Replay | None:
        chosen: list[Segment] = []
        batches: list[Batch] = []
        n = 0
        for seg in segs:
            if seg.solo or ids[seg.batch_id] > 1:
                break
            try:
                batch = self.spool.read(seg)
            except SpoolCorrupt as exc:
                self._quarantine(seg, exc)
                continue
            except FileNotFoundError:
                continue
            if chosen and n + len(batch.records) > self.max_records:
                break
            chosen.append(seg)
            batches.append(batch)
            n += len(batch.records)
        if not chosen:
            return None
        if len(chosen) == 1:
            return Replay(batches[0].batch_id, chosen, batches)
        names = tuple(s.path.name for s in chosen)
        token = hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]
        self.spool.write_group(ReplayGroup(token, names))  # sealed before the insert that uses it
        return Replay(token, chosen, batches)

    def _read_all(self, segs: list[Segment]) -> list[Batch] | None:
        out = []
        for seg in segs:
            try:
                out.append(self.spool.read(seg))
            except SpoolCorrupt as exc:
                self._quarantine(seg, exc)
                return None
            except FileNotFoundError:
                return None
        return out

    def _quarantine(self, seg: Segment, exc: Exception) -> None:
        dest = self.spool.quarantine(seg)
        log.error("unreadable spool segment moved to %s (its records are lost): %s", dest, exc)
