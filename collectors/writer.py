"""The telemetry writer process: owns the store, turns batches into rows, inserts, spools and replays.

Started by ``collectors.exporter`` as ``python -m collectors.writer --fd N`` with one end of a socket pair.
The gateway process never touches the store: it cuts batches of ``CallRecord`` tuples on its event loop and
sends them here; this process inserts the records (ClickHouse builds the span rows, see
``collectors.rows.insert_calls``) and per-batch metric points with the batch id as
``insert_deduplication_token`` and acknowledges each batch once it is in the store or in the spool.

Exactly once across a crash: the deduplication token of every insert is the id of the unit that the gateway
and the spool hold for it.  Batches inserted together are combined under a new id, and the writer tells the
gateway (``("combined", new_id, member_ids)``) before the insert or spool write: the gateway then holds the
combination, not its members, so if this process dies before acknowledging, the gateway spills the same
records under the same id, and a replay is dropped by deduplication (in every materialized view too).

Failure handling (all in this process):
- an insert fails → the batch goes to the on-disk spool (marked solo: it may be in the store under its id)
  and the store is retried with exponential backoff; while backing off, new batches go straight to the spool;
- once an insert succeeds again, the spool is replayed oldest-first, several segments per insert and for up
  to ``REPLAY_SLICE`` seconds between live batches.  A solo segment is replayed alone under its own id;
  other segments are grouped under a group token sealed on disk before the insert (``Spool.write_group``),
  so a crash at any point replays the same group under the same token;
- a batch that does not fit in the spool budget is dropped, counted and logged (one line per drop);
- an insert rejected for the batch's content (not the store's availability) is no outage: the batch is
  split to isolate the rejected records, the rest is stored, and those go to the dead-letter file
  (``collectors.deadletter``); the same holds for a spooled segment, so replay never stalls behind one;
- more than ``queue_max_records`` waiting in this process → the receiving thread spools the new batch itself,
  so a stalled store never grows memory.

Wire protocol (``multiprocessing.connection`` framing; control messages pickled with ``send``):

gateway → writer: ``("init", WriterSettings)``; ``("batch", batch_id, cut_ns, gauges, n_chunks)`` followed
by ``n_chunks`` raw messages, each a pickled list of record tuples; ``("rpc", req_id, op, args)`` with op in
query / command / insert / ping / status; ``("flush",)`` (insert held batches now); ``("close",)``.
writer → gateway: ``("ready", ok, error, fatal)``; ``("ack", batch_id, outcome, counters)`` with outcome in
written (an isolated batch too) / spooled / dropped; ``("counters", counters)`` after a replay;
``("rpc", req_id, ok, result_or_error)``; ``("closed", counters)``; ``("combined", batch_id, member_ids)``
before a combined insert.

Fault injection for crash tests: when ``LOOMGATE_WRITER_EXIT_AFTER_INSERT`` names a file and that file
exists after an insert succeeded (live or replay), the writer removes the file and exits at once
(``os._exit``), before acknowledging the batch or removing the replayed segments.  Unset (the default), or
naming a file that does not exist, it does nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from collectors.deadletter import DEAD_LETTER_FILE, DeadLetterFile, Isolation, is_content_error, isolate
from collectors.metrics import MetricRows, batch_metric_rows, gauge_rows, pipeline_rows, project
from collectors.record import CallRecord
from collectors.replay import Replay, ReplayPlanner
from collectors.rows import (
    METRIC_GAUGE_COLUMNS,
    METRIC_HISTOGRAM_COLUMNS,
    METRIC_SUM_COLUMNS,
    METRICS_GAUGE_TABLE,
    METRICS_HISTOGRAM_TABLE,
    METRICS_SUM_TABLE,
    insert_calls,
    insert_settings,
)
from collectors.spool import Batch, Spool
from collectors.store import Store, StoreError, redact_dsn
from collectors.writer_links import Link, LinkClosing, LinkHub, merge_pipeline
from gateway.config import TelemetryConfig

log = logging.getLogger("loomgate.writer")

PIPELINE_ROWS_EVERY = 1.0  # seconds between pipeline-counter snapshots
GC_EVERY = 30.0  # seconds between explicit garbage collections
MAX_INSERT_RECORDS = 100_000  # waiting batches are combined into one insert up to this many records
SPOOL_RECORD_BYTES = 250  # a record's size in the spool until one was measured
MAX_REPLAY_RECORDS = 50_000  # spooled records per replay insert (collectors.replay)
REPLAY_SLICE = 0.5  # seconds of replay between live batches while live batches wait
_IDLE_TICK = 0.2
EXIT_AFTER_INSERT_ENV = "LOOMGATE_WRITER_EXIT_AFTER_INSERT"


@dataclass(frozen=True, slots=True)
class WriterSettings:
    dsn: str
    telemetry: TelemetryConfig
    spool_dir: str
    start_ns: int  # telemetry start: the start of the cumulative pipeline counters
    resource: tuple[tuple[str, str], ...]
    backoff_initial: float = 0.25
    backoff_max: float = 5.0
    listen: str = ""  # Unix socket gateway workers connect to (collectors.writer_links); "" = none
    authkey: bytes = b""  # the workers' shared secret for that socket


class _Close:
    """Inbox marker: everything before it has been received; finish and exit."""


class _Flush:
    """Inbox marker: the gateway waits for every batch it sent; insert what is held now."""


_CLOSE = _Close()
_FLUSH = _Flush()


class Writer:
    def __init__(self, settings: WriterSettings, conn: Connection) -> None:
        self.s = settings
        self.t = settings.telemetry
        self.conn = conn
        self.hub = LinkHub(conn)
        self.resource = dict(settings.resource)
        self.spool = Spool(settings.spool_dir, self.t.spool.max_bytes)
        self.inbox: queue.Queue[Batch | _Close | _Flush | LinkClosing] = queue.Queue()
        self.store: Store | None = None
        self.store_error = ""
        self.healthy = False
        self.retry_at = 0.0
        self.backoff = settings.backoff_initial
        self.counters = {"written": 0, "spooled": 0, "dropped": 0, "replayed": 0, "dead_lettered": 0,
                         "received": 0,
                         "replay_ms": 0}  # wall time spent replaying (reading, inserting, removing)
        self.dead_letter = DeadLetterFile(Path(self.t.data_dir).resolve() / DEAD_LETTER_FILE,
                                          self.t.dead_letter_max_bytes)
        # Since when spooled records have waited with nothing reaching the store (monotonic; None: none wait)
        self._unwritten_since: float | None = None
        self._mem_records = 0
        self._lock = threading.Lock()  # counters, _mem_records and spool removal (writer threads)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="writer-rpc")
        self._last_pipeline = 0.0
        self._carry: Batch | LinkClosing | None = None  # taken from the inbox, left for the next turn
        self.replays = ReplayPlanner(self.spool, MAX_REPLAY_RECORDS)
        self._backlog = bool(self.spool.segments())  # segments waiting: replay instead of idling
        self._spool_record_bytes = SPOOL_RECORD_BYTES
        self._last_gc = time.monotonic()
        self.otlp: Any = None
        if self.t.otlp is not None:
            from collectors.otlp import OtlpSpanWriter

            self.otlp = OtlpSpanWriter(self.t.otlp, self.t.service_name, self.resource)

    # -- lifecycle -----------------------------------------------------------------------------------

    def run(self) -> None:
        fatal = self._first_open()
        if fatal:
            return
        threading.Thread(target=self._receive, args=(self.hub.control,), name="writer-recv",
                         daemon=True).start()
        if self.s.listen:
            self.hub.listen(self.s.listen, self.s.authkey, self._receive,
                            lambda: ("ready", self.healthy, self.store_error, False))
        while True:
            item: Batch | _Close | _Flush | LinkClosing | None = self._carry
            self._carry = None
            if item is None:
                try:
                    item = self.inbox.get(timeout=self._tick())
                except queue.Empty:
                    item = None
            if item is _CLOSE:
                break
            if isinstance(item, LinkClosing):
                self._link_closed(item.link)
            if isinstance(item, Batch):
                group, closing = self._gather(item)
                for part in self.hub.split(group):  # never combined across gateway processes
                    self._handle(part)
                if closing:
                    break
            self._maybe_replay()
            self._maybe_pipeline_rows()
            self._maybe_collect_garbage()
        self._shutdown()

    def _first_open(self) -> bool:
        """Open the store once before reporting; returns True when the error is fatal (bad config)."""
        if not self.t.write_store:
            self.healthy = True
            self._send(("ready", True, "", False))
            return False
        try:
            self._open_store()
        except StoreError as exc:
            fatal = "unsupported store DSN" in str(exc)
            self._send(("ready", False, str(exc), fatal))
            if fatal:
                return True
            self._fail(exc)
            return False
        except Exception as exc:  # a schema error is fatal: retrying cannot fix it
            self._send(("ready", False, f"{type(exc).__name__}: {exc}", True))
            return True
        self._send(("ready", True, "", False))
        return False

    def _open_store(self) -> None:
        from collectors.schema import migrate

        store = Store(self.s.dsn, self.t.database)
        try:
            migrate(store, self.t)
        except Exception:
            store.close()
            raise
        self.store = store
        self.healthy = True
        self.store_error = ""

    def _shutdown(self) -> None:
        self.hub.stop_listening()
        if isinstance(self._carry, Batch):
            self._handle([self._carry])
        self._carry = None
        while True:  # batches received before the close marker was queued behind it cannot exist, but be safe
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Batch):
                self._handle([item])
            elif isinstance(item, LinkClosing):
                self._link_closed(item.link)
        if self.healthy:
            self._write_pipeline_rows()
        self.hub.broadcast(("closed", self.snapshot()))
        self._pool.shutdown(wait=True)
        if self.otlp is not None:
            self.otlp.shutdown()
        if self.store is not None:
            self.store.close()

    # -- receiving -----------------------------------------------------------------------------------

    def _receive(self, link: Link) -> None:
        """One gateway link's messages, until it closes.  The control link's end ends the writer."""
        try:
            while True:
                msg = link.conn.recv()
                kind = msg[0]
                if kind == "batch":
                    self._receive_batch(msg, link)
                elif kind == "rpc":
                    self._pool.submit(self._rpc, msg[1], msg[2], msg[3], link)
                elif kind == "flush":
                    self.inbox.put(_FLUSH)
                elif kind == "close":
                    break
                else:
                    log.error("unknown message %r from the gateway", kind)
        except (EOFError, OSError):
            if link.control:
                log.warning("gateway connection closed without a close message; flushing and exiting")
            else:  # its batches already received are still inserted; only their acknowledgements are lost
                log.warning("gateway worker connection %s closed without a close message", link.name)
                self.hub.drop(link)
                return
        self.inbox.put(_CLOSE if link.control else LinkClosing(link))

    def _link_closed(self, link: Link) -> None:
        """Everything ``link`` sent before its close is settled: tell it so, and forget it."""
        self.hub.send(link, ("closed", self.snapshot()))
        self.hub.drop(link)

    def _receive_batch(self, msg: tuple[Any, ...], link: Link) -> None:
        _, batch_id, cut_ns, gauges, n_chunks = msg
        records: list[tuple[Any, ...]] = []
        for _ in range(n_chunks):
            records.extend(pickle.loads(link.conn.recv_bytes()))
        batch = Batch(batch_id, cut_ns, records, gauges)
        merge_pipeline(link, gauges)
        self.hub.own(batch_id, link)
        n = len(records)
        with self._lock:
            self.counters["received"] += n
            over = self._mem_records + n > self.t.queue_max_records
            if not over:
                self._mem_records += n
        if over:  # the store is too slow: keep memory bounded, the spool replays it later
            self._spool(batch)
        else:
            self.inbox.put(batch)

    # -- batches -------------------------------------------------------------------------------------

    def _gather(self, first: Batch) -> tuple[list[Batch], bool]:
        """The batches to insert together with ``first``; True when the close marker was reached.

        Batches already waiting are always taken (one insert per table amortises the fixed per-insert cost
        of parts and materialized views; ``bench/ingest_breakdown.py --batch N`` shows it per record).
        Below ``insert_min_records`` the writer also waits for more, up to ``insert_max_wait`` after
        ``first`` arrived, unless the gateway asks for a flush or the store is backing off.
        """
        group, n = [first], len(first.records)
        deadline = time.monotonic() + self.t.insert_max_wait
        # If the insert fails, the group is spooled as one unit: never more than the spool can still take,
        # or a combination would be dropped whole where its parts would have fitted.
        cap = min(MAX_INSERT_RECORDS, self._spool_room())
        while n < cap:
            wait = 0.0
            if n < self.t.insert_min_records and not self.retry_at and not self._backlog:
                wait = deadline - time.monotonic()
            try:
                item = self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Close):
                return group, True
            if isinstance(item, _Flush):
                deadline = 0.0  # take what is already waiting, then insert
                continue
            if isinstance(item, LinkClosing):  # settled after this group, in arrival order
                self._carry = item
                break
            if n + len(item.records) > cap:
                self._carry = item
                break
            group.append(item)
            n += len(item.records)
        return group, False

    def _handle(self, group: list[Batch]) -> None:
        n = sum(len(b.records) for b in group)
        try:
            batch = self._unit(group)
            if time.monotonic() < self.retry_at:
                self._spool(batch)  # never tried: may be replayed in a group
                return
            try:
                self._write(batch)
            except Exception as exc:
                if not (is_content_error(exc) and self._isolate(batch, exc)):
                    self._fail(exc)
                    # Part of it may be in the store under its id: replayed alone, under that id.
                    self._spool(batch, solo=True)
                    return
            else:
                self._count("written", n)
            _exit_if_asked()
            self._recovered()
            self._ack(batch, "written")
        finally:
            with self._lock:
                self._mem_records -= n

    def _unit(self, group: list[Batch]) -> Batch:
        """The one batch ``group`` is inserted or spooled as.  A combination gets a new id, announced to the
        gateway before anything is written under it, so the gateway spills the same unit if this process
        dies before acknowledging it."""
        if len(group) == 1:
            return group[0]
        batch = combine(group)
        members = [b.batch_id for b in group]
        self.hub.send(self.hub.combine_owner(batch.batch_id, members), ("combined", batch.batch_id, members))
        return batch

    def _write(self, batch: Batch) -> None:
        """Insert the batch (and/or export it over OTLP); raises on any failure."""
        records = [CallRecord._make(t) for t in batch.records]
        if self.t.write_store:
            if self.store is None:
                self._open_store()
            assert self.store is not None
            self._insert_rows(self.store, batch, records)
        if self.otlp is not None:
            self.otlp.export(records)

    def _insert_rows(self, store: Store, batch: Batch, records: Sequence[CallRecord]) -> None:
        # The batch id is the dedup token of every insert of this batch, on every attempt.
        settings = insert_settings(batch.batch_id)
        insert_calls(store, records, service_name=self.t.service_name, resource=self.resource,
                     token=batch.batch_id)
        metrics = self._metric_rows(batch, records)
        store.insert(METRICS_HISTOGRAM_TABLE, project(metrics.histograms, METRIC_HISTOGRAM_COLUMNS),
                     METRIC_HISTOGRAM_COLUMNS, settings)
        store.insert(METRICS_GAUGE_TABLE, project(metrics.gauges, METRIC_GAUGE_COLUMNS),
                     METRIC_GAUGE_COLUMNS, settings)

    def _metric_rows(self, batch: Batch, records: Sequence[CallRecord]) -> MetricRows:
        rows = batch_metric_rows(records, batch.gauges, service_name=self.t.service_name,
                                 resource=self.resource, start_ns=batch.cut_ns, time_ns=batch.cut_ns)
        for cut_ns, snapshot in batch.gauges.get(EARLIER_GAUGES, ()):
            rows.gauges.extend(gauge_rows(snapshot, service_name=self.t.service_name, resource=self.resource,
                                          time_ns=cut_ns))
        return rows

    def _spool_room(self) -> int:
        """Records the spool could still take, by the size records had there lately."""
        return max(0, self.spool.max_bytes - self.spool.bytes_used()) // self._spool_record_bytes

    def _spool(self, batch: Batch, *, solo: bool = False) -> None:
        """Spool ``batch``, then acknowledge it."""
        n = len(batch.records)
        before = self.spool.bytes_used()
        if self.spool.append(batch, solo=solo):
            if n:
                self._spool_record_bytes = max(1, (self.spool.bytes_used() - before) // n)
            self._count("spooled", n)
            with self._lock:
                if self._unwritten_since is None:
                    self._unwritten_since = time.monotonic()
            outcome = "spooled"
        else:
            total = self._count("dropped", n)
            log.error("telemetry spool full (budget %d bytes in %s): dropped a batch of %d records "
                      "(%d dropped since start)", self.spool.max_bytes, self.spool.dir, n, total)
            outcome = "dropped"
        self._ack(batch, outcome)

    def _fail(self, exc: BaseException) -> None:
        if self.healthy or not self.store_error:
            log.warning("telemetry store unavailable, spooling batches (retry with backoff): %s",
                        _one_line(exc))
        self.healthy = False
        self.store_error = _one_line(exc)
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.s.backoff_max)

    def _recovered(self) -> None:
        with self._lock:  # something reached the store: spooled records are moving again
            if self._unwritten_since is not None:
                self._unwritten_since = time.monotonic()
        if not self.healthy:
            log.warning("telemetry store reachable again; replaying the spool")
        self.healthy = True
        self.store_error = ""
        self.backoff = self.s.backoff_initial
        self.retry_at = 0.0

    # -- content errors ------------------------------------------------------------------------------

    def _isolate(self, batch: Batch, exc: BaseException) -> bool:
        """Store what the store accepts of a content-rejected batch; the rest is dead-lettered.  False when
        an availability error interrupted it (the caller then spools the batch as a whole)."""
        done = self._isolation(batch, exc)
        if done is None:
            return False
        self._settle(batch, done, replayed=False)
        return True

    def _isolation(self, batch: Batch, exc: BaseException) -> Isolation | None:
        log.warning("telemetry batch %s rejected for its content (%s); isolating the rejected records",
                    batch.batch_id, _one_line(exc))
        try:
            done = isolate(batch, exc, self._write)
            self._insert_gauges(batch)
        except Exception as again:  # an availability error mid-way: nothing counted yet
            log.warning("isolating batch %s interrupted: %s", batch.batch_id, _one_line(again))
            return None
        return done

    def _insert_gauges(self, batch: Batch) -> None:
        """The gauge snapshots of a split batch, once (its parts carry none), under a token of their own."""
        if not self.t.write_store or self.store is None:
            return
        rows = self._metric_rows(Batch(batch.batch_id, batch.cut_ns, [], batch.gauges), []).gauges
        try:
            self.store.insert(METRICS_GAUGE_TABLE, project(rows, METRIC_GAUGE_COLUMNS), METRIC_GAUGE_COLUMNS,
                              insert_settings(batch.batch_id + "/gauges"))
        except Exception as exc:
            if not is_content_error(exc):
                raise
            log.error("gauge snapshots of batch %s rejected and skipped: %s", batch.batch_id, _one_line(exc))

    def _settle(self, batch: Batch, done: Isolation, *, replayed: bool) -> None:
        """Count an isolated batch: stored records as written, rejected ones as dead-lettered (or dropped
        when the dead-letter file is full)."""
        kept = self.dead_letter.append(batch.batch_id, done.dead) if done.dead else 0
        lost = len(done.dead) - kept
        with self._lock:
            self.counters["written"] += done.stored
            if replayed:
                self.counters["replayed"] += done.stored
            self.counters["dead_lettered"] += kept
            self.counters["dropped"] += lost
        if done.dead:
            log.error("%d telemetry records rejected by the store for their content, %d stored; written to "
                      "%s (first reason: %s)", len(done.dead), done.stored, self.dead_letter.path,
                      done.dead[0].reason)
        if lost:
            log.error("dead-letter file %s full (budget %d bytes): dropped %d rejected records",
                      self.dead_letter.path, self.dead_letter.max_bytes, lost)

    # -- replay --------------------------------------------------------------------------------------

    def _tick(self) -> float:
        if self.retry_at:
            return max(0.0, min(_IDLE_TICK, self.retry_at - time.monotonic()))
        return 0.0 if self._backlog else _IDLE_TICK

    def _maybe_replay(self) -> None:
        """Replay for up to REPLAY_SLICE seconds, then give waiting live batches their turn."""
        deadline = time.monotonic() + REPLAY_SLICE
        while time.monotonic() >= self.retry_at:
            unit = self.replays.next()
            self._backlog = unit is not None
            if unit is None or not self._replay(unit):
                return
            if time.monotonic() >= deadline and not self.inbox.empty():
                return

    def _replay(self, unit: Replay) -> bool:
        """Insert one replay unit; True when it is in the store (records rejected for their content
        dead-lettered) and its segments are gone."""
        started = time.monotonic()
        batch = unit.batches[0] if len(unit.batches) == 1 else combine(unit.batches, unit.token)
        done: Isolation | None = None
        try:
            self._write(batch)
        except Exception as exc:
            done = self._isolation(batch, exc) if is_content_error(exc) else None
            if done is None:
                self._fail(exc)
                return False
        _exit_if_asked()
        n = len(batch.records)
        with self._lock:  # status() must never see the segment gone but its records not yet counted
            for seg in unit.segments:
                self.spool.remove(seg)
            if done is None:
                self.counters["written"] += n
                self.counters["replayed"] += n
            self.counters["replay_ms"] += int((time.monotonic() - started) * 1000)
        if len(unit.segments) > 1:
            self.spool.clear_group()
        if done is not None:
            self._settle(batch, done, replayed=True)
        self._recovered()
        self.hub.broadcast(("counters", self.snapshot()))
        return True

    def _maybe_collect_garbage(self) -> None:
        # Automatic GC is off in this process (see main): a batch allocates ~10 container objects per row
        # and generational collections over them cost about a third of the writer's CPU.  The few cycles
        # (exception tracebacks) are collected here, between batches.
        now = time.monotonic()
        if now - self._last_gc >= GC_EVERY:
            self._last_gc = now
            gc.collect()

    # -- pipeline counters ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def _count(self, key: str, n: int) -> int:
        with self._lock:
            self.counters[key] += n
            return self.counters[key]

    def _maybe_pipeline_rows(self) -> None:
        if self.healthy and time.monotonic() - self._last_pipeline >= PIPELINE_ROWS_EVERY:
            self._write_pipeline_rows()

    def _write_pipeline_rows(self) -> None:
        if self.store is None or not self.t.write_store:
            return
        self._last_pipeline = time.monotonic()
        mine = self.snapshot()
        gw = self.hub.pipeline()
        values = {
            "queued": gw.get("queued", mine["received"]),
            "written": mine["written"],
            "spooled": mine["spooled"] + gw.get("spooled", 0),
            "dropped": mine["dropped"] + gw.get("dropped", 0),
            "replayed": mine["replayed"],
            "dead_lettered": mine["dead_lettered"],
        }
        rows = pipeline_rows(values, service_name=self.t.service_name, resource=self.resource,
                             start_ns=self.s.start_ns, time_ns=time.time_ns())
        try:  # a fresh token: snapshots are never replayed, a later one supersedes a missing one
            self.store.insert(METRICS_SUM_TABLE, project(rows, METRIC_SUM_COLUMNS), METRIC_SUM_COLUMNS,
                              insert_settings(uuid.uuid4().hex))
        except Exception as exc:
            log.debug("pipeline counters not written: %s", exc)

    # -- RPC -----------------------------------------------------------------------------------------

    def _rpc(self, req_id: int, op: str, args: tuple[Any, ...], link: Link) -> None:
        try:
            result = self._rpc_call(op, args)
            reply: tuple[Any, ...] = ("rpc", req_id, True, result)
        except Exception as exc:
            reply = ("rpc", req_id, False, f"{type(exc).__name__}: {_one_line(exc)}")
        try:
            self.hub.send(link, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            self.hub.send(link, ("rpc", req_id, False, f"result cannot be sent to the gateway: {exc}"))

    def _rpc_call(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "status":
            return self.status()
        store = self.store
        if op == "ping":
            return store is not None and store.ping()
        if store is None:
            raise StoreError(f"store {redact_dsn(self.s.dsn)} unavailable: {self.store_error or 'not open'}")
        calls: dict[str, Callable[..., Any]] = {
            "query": store.query, "command": store.command, "insert": store.insert,
        }
        fn = calls.get(op)
        if fn is None:
            raise StoreError(f"unknown store operation {op!r}")
        return fn(*args)

    def status(self) -> dict[str, Any]:
        with self._lock:
            segs = self.spool.segments()
            mem = self._mem_records
            counters = dict(self.counters)
            unwritten = self._unwritten_for(bool(segs))
        return {
            "healthy": self.healthy, "store_error": self.store_error, "counters": counters,
            "spool_segments": len(segs), "spool_bytes": sum(s.size for s in segs),
            "memory_records": mem, "unwritten_seconds": unwritten,
        }

    def _unwritten_for(self, spooled: bool) -> float:
        """Seconds spooled records have waited with nothing reaching the store since.  The spool may also
        hold segments the gateway spilled, or a previous run left: the clock starts when first seen.
        Caller holds the lock."""
        if not spooled:
            self._unwritten_since = None
            return 0.0
        now = time.monotonic()
        if self._unwritten_since is None:
            self._unwritten_since = now
        return now - self._unwritten_since

    # -- sending -------------------------------------------------------------------------------------

    def _ack(self, batch: Batch, outcome: str) -> None:
        self.hub.send(self.hub.owner(batch.batch_id, release=True),
                      ("ack", batch.batch_id, outcome, self.snapshot()))

    def _send(self, msg: tuple[Any, ...]) -> None:
        """To the gateway that started this writer (the control link)."""
        self.hub.send(self.hub.control, msg)


EARLIER_GAUGES = "earlier_snapshots"  # key of a combined batch's gauges: [(cut_ns, snapshot), ...]


def _exit_if_asked() -> None:
    """The crash-test fault injection described in the module docstring."""
    flag = os.environ.get(EXIT_AFTER_INSERT_ENV)
    if flag and os.path.exists(flag):
        with contextlib.suppress(OSError):
            os.unlink(flag)
        os._exit(86)


def combine(group: Sequence[Batch], batch_id: str | None = None) -> Batch:
    """One batch holding the records of several, under ``batch_id`` (a new one by default).  The same group
    and id always give the same batch.  Its gauges are the latest snapshot, and the earlier ones (each with
    the time it was taken) travel along so every sample still becomes a row."""
    records = [r for b in group for r in b.records]
    earlier: list[tuple[int, dict[str, Any]]] = []
    for b in group:
        earlier.extend(b.gauges.get(EARLIER_GAUGES, ()))
        earlier.append((b.cut_ns, {k: v for k, v in b.gauges.items() if k != EARLIER_GAUGES}))
    last_ns, last = earlier.pop()
    return Batch(batch_id or uuid.uuid4().hex, last_ns, records, {**last, EARLIER_GAUGES: earlier})


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


LOW_PRIORITY_NICE = 10


def lower_priority(priority: str) -> None:
    """Run this process at the configured CPU priority (``TelemetryConfig.writer_priority``).

    Linux keeps the scheduling policy and nice value per thread, and a new thread inherits its creator's;
    the threads already running (the embedded ClickHouse starts pools on import) are changed one by one,
    before the store opens.  ``idle`` is SCHED_IDLE: the writer only gets CPU time no other task wants, so
    it never delays the gateway, the upstreams or anything else on the machine.
    """
    if priority == "normal":
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: the main thread only
        tids = [0]
    for tid in tids:
        try:
            if priority == "idle" and hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            else:
                nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + LOW_PRIORITY_NICE)
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError as exc:  # a thread that just exited, or a platform without per-thread priorities
            log.debug("priority of thread %d unchanged: %s", tid, exc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m collectors.writer",
                                description="telemetry writer process (started by the gateway)")
    p.add_argument("--fd", type=int, required=True, help="inherited socket to the gateway")
    args = p.parse_args(argv)
    # Ctrl-C reaches the whole process group; the gateway decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gc.disable()  # collected explicitly between batches (Writer._maybe_collect_garbage)
    conn = Connection(args.fd)
    msg = conn.recv()
    if not (isinstance(msg, tuple) and msg and msg[0] == "init"):
        log.error("expected an init message, got %r", type(msg))
        return 2
    lower_priority(msg[1].telemetry.writer_priority)
    Writer(msg[1], conn).run()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
