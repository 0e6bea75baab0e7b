"""What the supervisor's admin listener reports for all gateway workers together.

Each worker sends a ``WorkerStats`` snapshot to the supervisor every ``STATS_EVERY`` seconds (and a last
one when it stops).  ``/api/stats`` and ``/metrics`` sum them: requests, in-flight requests and request
statistics over every worker, the ones that exited included (their last snapshot), so counters never go
back when a worker is restarted.  Telemetry counters are the writer's (one writer for all workers, read
from the supervisor's own link to it) plus what each worker counted itself (records not yet sent, spilled
or dropped on its side).  ``/api/stats`` also lists each live worker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from collectors.request_stats import Series, SeriesKey
from gateway.config import Config

STATS_EVERY = 0.5  # seconds between a worker's snapshots


@dataclass(frozen=True, slots=True)
class WorkerInit:
    """What the supervisor gives a worker when it starts it."""

    config: Config
    index: int
    workers: int
    port: int  # the partner port the supervisor reserved
    writer_address: str  # the telemetry writer's socket ("" when telemetry is off)
    authkey: bytes
    limits_path: str  # the shared rate-limit buckets


@dataclass(slots=True)
class WorkerStats:
    """One worker's snapshot, as it sends it."""

    index: int
    pid: int
    inflight: int = 0
    requests_total: int = 0
    draining: bool = False
    upstreams: dict[str, dict[str, Any]] = field(default_factory=dict)
    telemetry: dict[str, int] = field(default_factory=dict)  # the worker's own: queued, spooled, dropped
    telemetry_connected: bool = False
    request_series: dict[SeriesKey, Series] = field(default_factory=dict)


def _add_series(into: dict[SeriesKey, Series], series: Mapping[SeriesKey, Series]) -> None:
    for key, s in series.items():
        have = into.get(key)
        if have is None:
            into[key] = s.copy()
        else:
            have.buckets = [a + b for a, b in zip(have.buckets, s.buckets, strict=True)]
            have.sum_seconds += s.sum_seconds


class Fleet:
    """Latest snapshot per live worker, and the totals of workers that exited."""

    def __init__(self, workers: int, telemetry: Any) -> None:
        self.workers = workers
        self.telemetry = telemetry  # the supervisor's link to the writer (None: telemetry off)
        self.restarts = 0
        self._lock = threading.Lock()  # snapshots arrive on the supervisor's reader threads
        self._live: dict[int, WorkerStats] = {}
        self._gone_requests = 0
        self._gone_telemetry: dict[str, int] = {}
        self._gone_series: dict[SeriesKey, Series] = {}

    def update(self, stats: WorkerStats) -> None:
        with self._lock:
            self._live[stats.index] = stats

    def exited(self, index: int, pid: int) -> None:
        """Worker ``index`` (process ``pid``) ended: keep what it counted."""
        with self._lock:
            last = self._live.get(index)
            if last is None or last.pid != pid:
                return
            del self._live[index]
            self._gone_requests += last.requests_total
            for key, value in last.telemetry.items():
                self._gone_telemetry[key] = self._gone_telemetry.get(key, 0) + value
            _add_series(self._gone_series, last.request_series)

    def live(self) -> list[WorkerStats]:
        with self._lock:
            return sorted(self._live.values(), key=lambda s: s.index)

    @property
    def inflight(self) -> int:
        return sum(s.inflight for s in self.live())

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._gone_requests + sum(s.requests_total for s in self._live.values())

    def request_series(self) -> dict[SeriesKey, Series]:
        with self._lock:
            total: dict[SeriesKey, Series] = {k: v.copy() for k, v in self._gone_series.items()}
            for s in self._live.values():
                _add_series(total, s.request_series)
        return total

    def breakers(self) -> dict[str, dict[str, Any]]:
        """Per upstream: the worst circuit state any worker reports, and the most consecutive failures."""
        order = {"closed": 0, "half_open": 1, "open": 2}
        out: dict[str, dict[str, Any]] = {}
        for s in self.live():
            for name, up in s.upstreams.items():
                have = out.setdefault(name, {"circuit": "closed", "consecutive_failures": 0})
                if order.get(up["circuit"], 0) > order[have["circuit"]]:
                    have["circuit"] = up["circuit"]
                have["consecutive_failures"] = max(have["consecutive_failures"], up["consecutive_failures"])
        return out

    def telemetry_counters(self) -> dict[str, int]:
        """The writer's counters plus the workers' own (see the module docstring)."""
        counters = dict(self.telemetry.counters()) if self.telemetry is not None else {}
        with self._lock:
            local = dict(self._gone_telemetry)
            for s in self._live.values():
                for key, value in s.telemetry.items():
                    local[key] = local.get(key, 0) + value
        counters["queued"] = local.get("queued", 0) + counters.get("queued", 0)
        for key in ("spooled", "dropped"):
            counters[key] = counters.get(key, 0) + local.get(key, 0)
        return counters

    async def refresh(self) -> None:
        """Bring the writer's counters up to date (acknowledgements go to the workers, not here)."""
        if self.telemetry is not None and self.telemetry.writer_alive:
            await self.telemetry.writer_status()

    async def stats(self, draining: bool) -> dict[str, Any]:
        """The body of ``/api/stats``."""
        body: dict[str, Any] = {
            "inflight": self.inflight,
            "requests_total": self.requests_total,
            "draining": draining,
            "upstreams": self.breakers(),
            "workers": [
                {"index": s.index, "pid": s.pid, "inflight": s.inflight, "requests_total": s.requests_total,
                 "draining": s.draining, "telemetry_connected": s.telemetry_connected}
                for s in self.live()
            ],
            "worker_restarts": self.restarts,
        }
        if self.telemetry is not None:
            with contextlib.suppress(Exception):  # a restarting writer: its last counters still stand
                await self.refresh()
            body["telemetry"] = {**self.telemetry_counters(), "writer_pid": self.telemetry.writer_pid}
        return body


FLEET_KEY = web.AppKey("loomgate.fleet", Fleet)
