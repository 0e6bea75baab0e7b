"""Gateway side of telemetry: a list append per request, batches handed to the writer process.

Hot path: ``Telemetry.sink.submit(rec)`` appends the ``CallRecord`` to a list (and cuts a batch when the list
reaches ``batch_size``).  A task on the event loop cuts a batch every ``batch_window`` seconds.  Cutting is
O(1) on the loop: the list is swapped and put on a thread queue.  Everything else happens off the loop:

- the *sender* thread encodes the batch in chunks of ``CHUNK_RECORDS`` (``collectors.wire``: marshal,
  under 1 µs a record) and writes them to the writer's socket; each chunk write releases the GIL, so the
  loop never waits more than one chunk's encoding (~0.2 ms).  From then on the batch is held as those
  encoded bytes, not as record objects, until the writer acknowledges it;
- the *reader* thread takes acknowledgements, RPC replies and lifecycle messages from the writer and
  resolves asyncio futures with ``loop.call_soon_threadsafe``;
- the *spill* thread writes batches to the on-disk spool when the writer falls behind (more than
  ``queue_max_records`` records cut but not yet acknowledged) or is gone; the proxy never waits.

A batch stays in memory until the writer acknowledges it (inserted, spooled or dropped-and-counted), so if the
writer process dies its unacknowledged batches are spilled here instead of lost; a gateway crash loses at most
the records not yet cut (≤ ``batch_window``) plus unacknowledged batches.  When the writer combines batches
it says so first, and the combination replaces its parts here: what is spilled after a writer crash is
exactly what the writer may have inserted, under the same id (its deduplication token).

Supervision: if the writer process dies, its unacknowledged batches are spilled (marked solo, see
``collectors.spool``), then a new writer is started after a backoff (``RESTART_DELAY_INITIAL`` doubling to
``RESTART_DELAY_MAX`` while restarts keep failing or the writer keeps dying within ``RESTART_STABLE``
seconds); it replays the spool.  Restarts are logged and counted (``counters()["writer_restarts"]``).  While
no writer runs, store calls raise ``WriterUnavailable``.

The writer (``collectors.writer``) owns the store, so ``Telemetry.store`` is an ``AsyncStore`` whose calls
are RPCs to it: this is what makes an embedded chDB store usable from the gateway process.

Request statistics: ``Telemetry.request_stats`` (``collectors.request_stats``) folds every cut batch once,
on the sender thread before the batch is sent, or on the spill thread when it goes straight to the spool;
``/metrics`` reads it at scrape time.  The proxy does no extra work per request.

Gauges: set ``Telemetry.gauges_provider`` to a callable returning
``{"active_requests": int, "circuit_states": {upstream_name: "closed" | "half_open" | "open"}}``; it is called
on the event loop each time a batch is cut (at least once per ``batch_window`` while it is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import pickle
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from collectors.child_process import spawn_module
from collectors.record import CallRecord
from collectors.request_stats import RequestStats
from collectors.spool import Batch, Spool
from collectors.store import QueryResult, StoreError, WriterUnavailable
from collectors.wire import decode_chunks, encode_chunk
from collectors.writer import WriterSettings, combine
from gateway import __version__
from gateway.config import Config, TelemetryConfig

log = logging.getLogger("loomgate.telemetry")

CHUNK_RECORDS = 256  # records encoded per GIL hold in the sender thread (≈0.2 ms)
START_TIMEOUT = 120.0  # opening chDB + migrations; a cold start takes a few seconds
CLOSE_TIMEOUT = 60.0
RESTART_DELAY_INITIAL = 0.5
RESTART_DELAY_MAX = 30.0
RESTART_STABLE = 60.0  # a writer that ran this long resets the restart backoff

GaugesProvider = Callable[[], Mapping[str, Any]]


class TelemetryError(Exception):
    """The writer process could not be started or reported a fatal configuration error."""


class _Pending:
    """A cut batch held until the writer acknowledges it: its records, or once sent, their wire form.

    The sender thread swaps ``records`` for ``wire`` (under the telemetry lock) after the last chunk went
    out, so a backlog of unacknowledged batches is compact bytes the garbage collector never walks.
    """

    __slots__ = ("batch_id", "cut_ns", "gauges", "n", "observed", "parts", "records", "seq", "solo", "wire")

    def __init__(self, batch_id: str, cut_ns: int, gauges: dict[str, Any], records: list[CallRecord],
                 parts: tuple[_Pending, ...] = ()) -> None:
        self.batch_id = batch_id
        self.cut_ns = cut_ns
        self.gauges = gauges
        self.n = len(records) + sum(p.n for p in parts)
        self.observed = False  # folded into RequestStats (a batch sent, then spilled, counts once)
        self.records: list[CallRecord] | None = records
        self.wire: list[bytes] | None = None
        self.parts = parts  # a combination the writer announced: the batches it is made of, in order
        self.solo = False  # spilled after the writer died: it may be in the store under its id
        self.seq = max((p.seq for p in parts), default=0)  # order of the cut (flush waits by it)

    @classmethod
    def combined(cls, batch_id: str, parts: tuple[_Pending, ...]) -> _Pending:
        return cls(batch_id, parts[-1].cut_ns, {}, [], parts)

    def to_batch(self, lock: threading.Lock) -> Batch:
        if self.parts:  # the same batch the writer built with combine() under this id
            return combine([p.to_batch(lock) for p in self.parts], self.batch_id)
        with lock:
            records, wire = self.records, self.wire
        rows = [tuple(r) for r in records] if records is not None else decode_chunks(wire or [])
        return Batch(self.batch_id, self.cut_ns, rows, self.gauges)


class _Stop:
    pass


_STOP = _Stop()


class BatchingSink:
    """The ``RecordSink`` the proxy calls: one list append, plus a batch cut every ``batch_size`` records."""

    __slots__ = ("_buf", "_cut", "_limit")

    def __init__(self, limit: int, cut: Callable[[], None]) -> None:
        self._buf: list[CallRecord] = []
        self._limit = limit
        self._cut = cut

    def submit(self, rec: CallRecord) -> None:
        buf = self._buf
        buf.append(rec)
        if len(buf) >= self._limit:
            self._cut()

    def take(self) -> list[CallRecord]:
        buf, self._buf = self._buf, []
        return buf

    def __len__(self) -> int:
        return len(self._buf)


class WriterStore:
    """``AsyncStore`` whose statements run in the writer process that owns the store."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None,
                    settings: Mapping[str, Any] | None = None) -> QueryResult:
        return await self._t.rpc("query", (sql, dict(parameters or {}), dict(settings or {})))

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None,
                      settings: Mapping[str, Any] | None = None) -> Any:
        return await self._t.rpc("command", (sql, dict(parameters or {}), dict(settings or {})))

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str],
                     settings: Mapping[str, Any] | None = None) -> None:
        await self._t.rpc("insert", (table, [tuple(r) for r in rows], list(column_names),
                                     dict(settings or {})))


class Telemetry:
    """Handle to the telemetry pipeline of one gateway process.  Create it with ``start_telemetry``."""

    def __init__(self, tcfg: TelemetryConfig, settings: WriterSettings, spool: Spool) -> None:
        self.config = tcfg
        self.settings = settings
        self.sink = BatchingSink(max(1, tcfg.batch_size), self._cut)
        self.store: WriterStore | None = WriterStore(self) if tcfg.write_store else None
        self.gauges_provider: GaugesProvider | None = None
        self.request_stats = RequestStats()
        self.spool = spool
        self.writer_pid = 0
        self.start_error = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._out: queue.SimpleQueue[_Pending | tuple[Any, ...] | _Stop] = queue.SimpleQueue()
        self._spill_q: queue.SimpleQueue[_Pending | threading.Event | _Stop] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._unacked: dict[str, _Pending] = {}
        self._held = 0  # records cut and not yet acknowledged (bounded by queue_max_records)
        self._spilling = 0  # batches queued for the spill thread and not yet written
        self._local = {"queued": 0, "spooled": 0, "dropped": 0}
        self._writer_counters: dict[str, int] = {}
        self._past_writers: dict[str, int] = {}  # final counters of writers that died, summed
        self._alive = False
        self._closing = False
        self._closed = False
        self._rpc_ids = itertools.count(1)
        self._rpc_futures: dict[int, asyncio.Future[Any]] = {}
        self._ready_fut: asyncio.Future[tuple[bool, str, bool]] | None = None
        self._closed_fut: asyncio.Future[None] | None = None
        self._threads: list[threading.Thread] = []
        self._flusher: asyncio.Task[None] | None = None
        self._provider_failed = False
        self._cut_seq = 0
        self._generation = 0  # bumped per writer process: messages of a dead one are ignored
        self._restarts = 0
        self._restart_delay = RESTART_DELAY_INITIAL
        self._launched_at = 0.0
        self._supervisor: asyncio.Task[None] | None = None
        self._orphans_spilled = threading.Event()
        self._orphans_spilled.set()

    # -- public API ----------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Records queued (cut or waiting), written, spooled, dropped, replayed and dead-lettered (rejected
        by the store for their content, see ``collectors.deadletter``) since start; milliseconds writers spent
        replaying; writer restarts."""
        with self._lock:
            w = dict(self._writer_counters)
            for key, value in self._past_writers.items():
                w[key] = w.get(key, 0) + value
            local = dict(self._local)
        return {
            "queued": local["queued"] + len(self.sink),
            "written": w.get("written", 0),
            "spooled": w.get("spooled", 0) + local["spooled"],
            "dropped": w.get("dropped", 0) + local["dropped"],
            "replayed": w.get("replayed", 0),
            "dead_lettered": w.get("dead_lettered", 0),
            "replay_ms": w.get("replay_ms", 0),
            "writer_restarts": self._restarts,
        }

    @property
    def writer_alive(self) -> bool:
        """A writer process is running (it may still be opening the store)."""
        return self._alive

    async def ready(self) -> bool:
        """True when the writer process runs and can reach the store (or OTLP-only mode is running)."""
        if not self._alive:
            return False
        if self.store is None:
            return True
        try:
            return bool(await asyncio.wait_for(self.rpc("ping", ()), 5.0))
        except (StoreError, TimeoutError):
            return False

    async def unwritten(self) -> str | None:
        """Why telemetry is not being written, or None: spooled records have waited longer than
        ``telemetry.unwritten_alert_after`` with nothing reaching the store (an outage, or a store that
        answers pings but takes no inserts)."""
        status = await self.writer_status()
        waited = float(status.get("unwritten_seconds", 0.0))
        if waited <= self.config.unwritten_alert_after:
            return None
        why = f": {status['store_error']}" if status.get("store_error") else ""
        return (f"telemetry not written for {waited:.0f} s: {status['spool_segments']} spooled batches "
                f"waiting{why}")

    async def writer_status(self) -> dict[str, Any]:
        """The writer's view: healthy, store_error, counters, spool_segments, spool_bytes, memory_records,
        unwritten_seconds (how long spooled records have waited with nothing reaching the store)."""
        status = dict(await self.rpc("status", ()))
        with self._lock:  # so counters() is never behind a status the caller has already seen
            self._merge_counters(status["counters"])
        return status

    async def flush(self, timeout: float = 30.0) -> bool:
        """Cut the current batch and wait until every batch cut so far is acknowledged or spilled."""
        self._cut()
        if self._alive:
            self._out.put(("flush",))  # the writer would otherwise hold small batches back
        with self._lock:
            upto = self._cut_seq  # batches combined by the writer keep the latest seq of their parts
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = any(p.seq <= upto for p in self._unacked.values()) or self._spilling > 0
            if not pending:
                return True
            await asyncio.sleep(0.005)
        return False

    async def close(self) -> None:
        """Flush everything in memory to the writer (which inserts or spools it) and stop the writer."""
        if self._closed:
            return
        self._closed = True
        for task in (self._flusher, self._supervisor):  # _closed: no restart from here on
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._cut()
        self._closing = True
        if self._alive and self._closed_fut is not None:
            self._out.put(("close",))
            try:
                await asyncio.wait_for(asyncio.shield(self._closed_fut), CLOSE_TIMEOUT)
            except TimeoutError:
                log.error("telemetry writer did not finish within %.0f s; stopping it and spooling what it "
                          "had not acknowledged", CLOSE_TIMEOUT)
        self._out.put(_STOP)
        await asyncio.to_thread(self._stop_process)
        self._writer_gone("")  # anything still unacknowledged goes to the spool
        self._spill_q.put(_STOP)
        for t in self._threads:
            await asyncio.to_thread(t.join, 10.0)
        if self._conn is not None:
            self._conn.close()

    async def rpc(self, op: str, args: tuple[Any, ...]) -> Any:
        """Run a store operation in the writer; raises StoreError with the writer's message on failure."""
        if not self._alive:
            raise WriterUnavailable("telemetry writer is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        req_id = next(self._rpc_ids)
        self._rpc_futures[req_id] = fut
        self._out.put(("rpc", req_id, op, args))
        try:
            return await fut
        finally:
            self._rpc_futures.pop(req_id, None)

    # -- start ---------------------------------------------------------------------------------------

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        t = threading.Thread(target=self._spill_loop, name="telemetry-spill", daemon=True)
        t.start()
        self._threads.append(t)
        ok, error, fatal = await self._launch()
        if fatal:
            await self.close()
            raise TelemetryError(f"telemetry writer failed to start: {error}")
        if not ok:
            self.start_error = error
            log.warning("telemetry store not reachable at start (%s); batches are spooled until it is",
                        error)
        self._flusher = self._loop.create_task(self._flush_every(), name="telemetry-flush")

    async def _launch(self) -> tuple[bool, str, bool]:
        """Start a writer process and its two threads; (ok, error, fatal) as its ready message says."""
        loop = asyncio.get_running_loop()
        self._ready_fut = loop.create_future()
        self._closed_fut = loop.create_future()
        out: queue.SimpleQueue[_Pending | tuple[Any, ...] | _Stop] = queue.SimpleQueue()
        proc, conn = await asyncio.to_thread(self._spawn)
        with self._lock:
            self._generation += 1
            gen = self._generation
            self._proc, self._conn, self._out = proc, conn, out
            self.writer_pid = proc.pid if proc is not None else self.writer_pid
            self._alive = True
        self._launched_at = time.monotonic()
        for name, target in (("telemetry-send", self._send_loop), ("telemetry-recv", self._recv_loop)):
            t = threading.Thread(target=target, args=(conn, out, gen), name=f"{name}-{gen}", daemon=True)
            t.start()
            self._threads.append(t)
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready_fut), START_TIMEOUT)
        except TimeoutError:
            return False, f"writer did not report within {START_TIMEOUT:.0f} s", True

    def _writer_lost(self) -> None:
        """On the loop: the writer died while the gateway runs; restart it unless closing."""
        if self._closed or self._loop is None or (self._supervisor and not self._supervisor.done()):
            return
        self._supervisor = self._loop.create_task(self._restart(), name="telemetry-writer-restart")

    async def _restart(self) -> None:
        if time.monotonic() - self._launched_at >= RESTART_STABLE:
            self._restart_delay = RESTART_DELAY_INITIAL
        while not self._closed:
            delay = self._restart_delay
            self._restart_delay = min(delay * 2, RESTART_DELAY_MAX)
            # The old process must be gone (it owns the store directory) and its unacknowledged batches
            # on disk (the new writer replays them) before the new one starts.
            await asyncio.to_thread(self._reap)
            await asyncio.to_thread(self._orphans_spilled.wait, CLOSE_TIMEOUT)
            await asyncio.sleep(delay)
            if self._closed:
                return
            if self._conn is not None:
                self._conn.close()
            self._restarts += 1
            log.warning("restarting the telemetry writer (restart %d, after %.1f s)", self._restarts, delay)
            ok, error, fatal = await self._launch()
            if self._alive and not fatal:
                if not ok:
                    log.warning("restarted telemetry writer cannot reach the store yet (%s)", error)
                return
            log.error("telemetry writer restart failed: %s", error or "it exited")

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:  # its socket closed but it did not exit: it cannot be trusted
            log.error("telemetry writer (pid %d) lost its connection but still runs; killing it", proc.pid)
            proc.kill()
            proc.wait(timeout=10.0)

    def _spawn(self) -> tuple[subprocess.Popen[bytes] | None, Connection]:
        proc, parent = spawn_module("collectors.writer")
        parent.send(("init", self.settings))
        return proc, parent

    # -- hot path and batching (event loop) -----------------------------------------------------------

    def _cut(self) -> None:
        if self._closed and self._closing:
            return
        if len(self.sink) == 0 and self.gauges_provider is None:
            return
        records = self.sink.take()
        n = len(records)
        pend = _Pending(uuid.uuid4().hex, time.time_ns(), self._gauges(n), records)
        with self._lock:
            self._cut_seq += 1
            pend.seq = self._cut_seq
            self._local["queued"] += n
            spill = not self._alive or self._held + n > self.config.queue_max_records
            if spill:
                self._spilling += 1
            else:
                self._held += n
                self._unacked[pend.batch_id] = pend
        if spill:
            self._spill_q.put(pend)
        else:
            self._out.put(pend)

    def _gauges(self, n: int) -> dict[str, Any]:
        with self._lock:
            local = dict(self._local)
        gauges: dict[str, Any] = {}
        if self.gauges_provider is not None:
            try:
                gauges.update(self.gauges_provider())
            except Exception as exc:  # a broken provider must not cost records
                if not self._provider_failed:
                    log.exception("telemetry gauges provider failed: %s", exc)
                self._provider_failed = True
        gauges["pipeline"] = {"queued": local["queued"] + n, "spooled": local["spooled"],
                              "dropped": local["dropped"]}
        return gauges

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.config.batch_window)
            self._cut()

    # -- threads -------------------------------------------------------------------------------------

    def _send_loop(self, conn: Connection, out: queue.SimpleQueue[Any], gen: int) -> None:
        while True:
            item = out.get()
            if isinstance(item, _Stop):
                return
            try:
                if isinstance(item, _Pending):
                    with self._lock:
                        wanted = item.batch_id in self._unacked
                    if wanted:
                        self._send_batch(conn, item)
                else:
                    conn.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError as exc:
                self._writer_gone(f"cannot send to the writer: {exc}", gen)

    def _send_batch(self, conn: Connection, pend: _Pending) -> None:
        recs = pend.records or []  # a batch is sent once, before anything swaps its records out
        chunks = range(0, len(recs), CHUNK_RECORDS)
        self._observe(pend, recs)
        header = ("batch", pend.batch_id, pend.cut_ns, pend.gauges, len(chunks))
        conn.send_bytes(pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL))
        encoded: list[bytes] = []
        for i in chunks:
            # One chunk's encoding is the longest the loop can wait for the GIL; send_bytes releases it.
            data = encode_chunk(recs[i:i + CHUNK_RECORDS])
            conn.send_bytes(data)
            encoded.append(data)
        with self._lock:
            pend.wire, pend.records = encoded, None

    def _recv_loop(self, conn: Connection, out: queue.SimpleQueue[Any], gen: int) -> None:
        reason = "writer process exited"
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:
                reason = f"unreadable message from the writer: {exc}"
                break
            self._dispatch(msg)
        self._writer_gone("" if self._closing else reason, gen)
        out.put(_STOP)  # this writer's send thread ends; a new writer gets its own
        if not self._closing and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed at interpreter exit
                self._loop.call_soon_threadsafe(self._writer_lost)

    def _merge_counters(self, snapshot: dict[str, int]) -> None:
        # Snapshots travel from several writer threads (acks, replays, RPC replies) and may arrive out of
        # order; every counter only grows, so the element-wise maximum is the newest view.  Caller holds
        # the lock.
        merged = dict(self._writer_counters)
        for key, value in snapshot.items():
            merged[key] = max(value, merged.get(key, 0))
        self._writer_counters = merged

    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ack":
            with self._lock:
                pend = self._unacked.pop(msg[1], None)
                if pend is not None:
                    self._held -= pend.n
                self._merge_counters(msg[3])
        elif kind == "combined":
            # Sent before the writer inserts or spools the combination: from now on it is one unit.
            _, batch_id, member_ids = msg
            with self._lock:
                parts = tuple(p for i in member_ids if (p := self._unacked.pop(i, None)) is not None)
                if parts:
                    self._unacked[batch_id] = _Pending.combined(batch_id, parts)
        elif kind == "counters":
            with self._lock:
                self._merge_counters(msg[1])
        elif kind == "rpc":
            _, req_id, ok, payload = msg
            fut = self._rpc_futures.get(req_id)
            if fut is not None:
                self._resolve(fut, payload if ok else None, None if ok else StoreError(payload))
        elif kind == "ready":
            if self._ready_fut is not None:
                self._resolve(self._ready_fut, (msg[1], msg[2], msg[3]), None)
        elif kind == "closed":
            with self._lock:
                self._merge_counters(msg[1])
            if self._closed_fut is not None:
                self._resolve(self._closed_fut, None, None)

    def _resolve(self, fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
        def apply() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed at interpreter exit
                self._loop.call_soon_threadsafe(apply)

    def _writer_gone(self, reason: str, gen: int | None = None) -> None:
        """The writer cannot take more: spill what it has not acknowledged; fail waiting RPCs."""
        with self._lock:
            if gen is not None and gen != self._generation:
                return  # a writer already replaced
            was_alive = self._alive
            self._alive = False
            orphans = list(self._unacked.values())
            self._unacked.clear()
            self._held = 0
            self._spilling += len(orphans)
            for pend in orphans:
                pend.solo = True
            if gen is not None:  # the next writer counts from zero
                for key, value in self._writer_counters.items():
                    self._past_writers[key] = self._past_writers.get(key, 0) + value
                self._writer_counters = {}
            spilled = threading.Event()
            self._orphans_spilled = spilled
        if reason and was_alive:
            log.error("telemetry writer lost (%s); spooling %d unacknowledged batches on disk",
                      reason, len(orphans))
        for pend in orphans:
            self._spill_q.put(pend)
        self._spill_q.put(spilled)
        for fut in list(self._rpc_futures.values()):
            self._resolve(fut, None,
                          WriterUnavailable(f"telemetry writer is not running ({reason or 'closed'})"))
        for fut in (self._ready_fut, self._closed_fut):
            if fut is not None:
                self._resolve(fut, (False, reason or "writer exited", True) if fut is self._ready_fut
                              else None, None)

    def _spill_loop(self) -> None:
        while True:
            item = self._spill_q.get()
            if isinstance(item, _Stop):
                return
            if isinstance(item, threading.Event):  # everything queued before it is on disk
                item.set()
                continue
            try:
                self._spill(item)
            finally:
                with self._lock:
                    self._spilling -= 1

    def _observe(self, pend: _Pending, records: Sequence[Sequence[Any]]) -> None:
        """Fold a batch into ``request_stats`` once (a batch sent, then spilled, is the same batch)."""
        with self._lock:
            first, pend.observed = not pend.observed, True
        if not first:
            return
        try:
            for i in range(0, len(records), CHUNK_RECORDS):  # short GIL holds, like the encoding
                self.request_stats.observe(records[i:i + CHUNK_RECORDS])
        except Exception:  # statistics must never cost a record
            log.exception("request statistics failed for batch %s", pend.batch_id)

    def _observe_spilled(self, pend: _Pending, batch: Batch) -> None:
        """Fold a spilled batch into ``request_stats``: a combination part by part, since its parts were
        each folded in when they were sent."""
        if not pend.parts:
            self._observe(pend, batch.records)
            return
        for part in pend.parts:
            self._observe_spilled(part, part.to_batch(self._lock))

    def _spill(self, pend: _Pending) -> None:
        n = pend.n
        try:
            batch = pend.to_batch(self._lock)
            self._observe_spilled(pend, batch)
            ok = self.spool.append(batch, solo=pend.solo)
        except OSError as exc:
            log.error("telemetry spool write failed: %s", exc)
            ok = False
        with self._lock:
            self._local["spooled" if ok else "dropped"] += n
            dropped = self._local["dropped"]
        if not ok:
            log.error("telemetry spool full (budget %d bytes in %s): dropped a batch of %d records "
                      "(%d dropped by the gateway since start)", self.spool.max_bytes, self.spool.dir, n,
                      dropped)

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=15.0)
        except subprocess.TimeoutExpired:
            log.error("telemetry writer (pid %d) still running after close; killing it", proc.pid)
            proc.kill()
            proc.wait(timeout=15.0)


def spool_dir(tcfg: TelemetryConfig) -> str:
    return str(Path(tcfg.spool.dir or Path(tcfg.data_dir) / "spool").resolve())


def writer_settings(config: Config, *, backoff_initial: float = 0.25,
                    backoff_max: float = 5.0) -> WriterSettings:
    t = config.telemetry
    resource = (("service.name", t.service_name), ("service.version", __version__))
    return WriterSettings(dsn=config.store_dsn, telemetry=t, spool_dir=spool_dir(t), start_ns=time.time_ns(),
                          resource=resource, backoff_initial=backoff_initial, backoff_max=backoff_max)


async def start_telemetry(config: Config, *, backoff_initial: float = 0.25,
                          backoff_max: float = 5.0, listen: str = "", authkey: bytes = b"") -> Telemetry:
    """Start the writer process and return the pipeline handle.

    Waits until the writer has tried to open the store once.  An unreachable store is not an error (records
    are spooled until it answers; ``ready()`` says False); a bad DSN or schema is (``TelemetryError``).
    ``backoff_*`` bound the retry delay after a failed insert (seconds).  ``listen``/``authkey``: the Unix
    socket gateway workers connect to (``collectors.writer_links``).
    """
    settings = writer_settings(config, backoff_initial=backoff_initial, backoff_max=backoff_max)
    settings = dataclasses.replace(settings, listen=listen, authkey=authkey)
    spool = await asyncio.to_thread(Spool, settings.spool_dir, config.telemetry.spool.max_bytes)
    telemetry = Telemetry(config.telemetry, settings, spool)
    await telemetry._start()
    return telemetry
