"""Active health checks of upstreams, with a per-upstream state machine and batched result storage.

Each upstream with a ``health_check`` is probed every ``interval`` seconds (fixed schedule, no drift) by
its own task through one ``aiohttp.ClientSession`` that opens a fresh connection per check, so a check
sees what a new client would see.  Conditions are parsed once, at start.

Outcome of one check:
  * ``fail`` — no response (connect error, timeout, broken response) or any non-latency condition failed;
  * ``slow`` — answered and passed every non-latency condition, but failed a ``[RESPONSE_TIME]``
    condition or took longer than ``degraded_response_time_ms``;
  * ``ok``   — everything passed;
  * ``check_error`` — the check could not be run for a reason on the gateway's side: opening the
    connection failed with EMFILE / ENFILE / ENOBUFS / ENOMEM.  Stored with its reason, but it changes no
    state and no streak, and the SLA queries leave it out: it says nothing about the upstream.

State machine (starts ``UNKNOWN``; thresholds from the check config):
  * ``failure_threshold`` consecutive ``fail`` → ``DOWN`` (from any state);
  * in ``DOWN``/``UNKNOWN``: ``success_threshold`` consecutive ``ok``/``slow`` → ``UP``, or ``DEGRADED`` if
    the result that completes the streak is ``slow``;
  * in ``UP``: ``failure_threshold`` consecutive ``slow`` → ``DEGRADED``;
  * in ``DEGRADED``: ``success_threshold`` consecutive ``ok`` → ``UP``;
  * anything else keeps the state (one blip changes nothing).

Every result is stored in ``loomgate_health_checks`` with its reason and the state after it.  Rows are
buffered and inserted in batches by a background task through the ``AsyncStore`` (never blocking the
loop); while the store fails, rows stay buffered up to ``max_buffer`` (oldest dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp

from collectors import maintenance
from collectors.conditions import Condition, Observation, evaluate_all, parse_condition
from collectors.store import AsyncStore
from gateway.config import Config, HealthCheck, Upstream

log = logging.getLogger("loomgate.health")

TABLE = "loomgate_health_checks"
COLUMNS = ("Timestamp", "Upstream", "Url", "Outcome", "StatusCode", "ResponseTimeMs", "Reason", "State",
           "PreviousState", "IntervalS")
MAX_BODY = 1 << 20  # conditions look at most at the first MiB of a body


class State(StrEnum):
    UNKNOWN = "UNKNOWN"
    UP = "UP"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"


class Outcome(StrEnum):
    OK = "ok"
    SLOW = "slow"
    FAIL = "fail"
    CHECK_ERROR = "check_error"  # the gateway could not run the check (out of descriptors, buffers)


# Connect errors that are the gateway host's own shortage, never the upstream's fault.
LOCAL_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass
class Tracker:
    """The state machine of one upstream (see the module docstring)."""

    failure_threshold: int
    success_threshold: int
    state: State = State.UNKNOWN
    fails: int = 0  # consecutive fail
    answers: int = 0  # consecutive ok or slow
    oks: int = 0  # consecutive ok
    slows: int = 0  # consecutive slow

    def observe(self, outcome: Outcome) -> State:
        if outcome is Outcome.CHECK_ERROR:  # no verdict on the upstream
            return self.state
        self._count(outcome)
        if self.fails >= self.failure_threshold:
            self.state = State.DOWN
        elif self.state in (State.DOWN, State.UNKNOWN):
            if self.answers >= self.success_threshold:
                self.state = State.DEGRADED if outcome is Outcome.SLOW else State.UP
        elif self.state is State.UP and self.slows >= self.failure_threshold:
            self.state = State.DEGRADED
        elif self.state is State.DEGRADED and self.oks >= self.success_threshold:
            self.state = State.UP
        return self.state

    def _count(self, outcome: Outcome) -> None:
        if outcome is Outcome.FAIL:
            self.fails, self.answers, self.oks, self.slows = self.fails + 1, 0, 0, 0
        elif outcome is Outcome.SLOW:
            self.fails, self.answers, self.oks, self.slows = 0, self.answers + 1, 0, self.slows + 1
        else:
            self.fails, self.answers, self.oks, self.slows = 0, self.answers + 1, self.oks + 1, 0


@dataclass(frozen=True, slots=True)
class CheckResult:
    upstream: str
    url: str
    at: float  # epoch seconds when the check started
    outcome: Outcome
    status: int
    response_time_ms: float
    reason: str
    state: State
    previous_state: State
    interval: float

    def row(self) -> tuple[object, ...]:
        return (dt.datetime.fromtimestamp(self.at, dt.UTC), self.upstream, self.url, str(self.outcome),
                self.status, self.response_time_ms, self.reason, str(self.state), str(self.previous_state),
                self.interval)


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    """One upstream's current health, as the status page and ``/api/checks`` show it."""

    upstream: str
    state: State
    since: float | None  # when the current state began (epoch seconds), None while UNKNOWN from start
    last: CheckResult | None
    maintenance: str | None  # name of the maintenance window in force, if any

    def as_dict(self) -> dict[str, object]:
        last = self.last
        return {
            "upstream": self.upstream,
            "state": str(self.state),
            "since": self.since,
            "maintenance": self.maintenance,
            "last_check": None if last is None else {
                "at": last.at, "outcome": str(last.outcome), "status_code": last.status,
                "response_time_ms": round(last.response_time_ms, 3), "reason": last.reason,
            },
        }


@dataclass(frozen=True, slots=True)
class CheckPlan:
    upstream: Upstream
    check: HealthCheck
    url: str
    conditions: tuple[Condition, ...]


def plan_checks(config: Config) -> list[CheckPlan]:
    """Parse every check's conditions once; ``ValueError`` names the upstream and the bad condition."""
    plans = []
    for up in config.upstreams:
        hc = up.health_check
        if hc is None:
            continue
        try:
            conds = tuple(parse_condition(c) for c in hc.conditions)
        except ValueError as exc:
            raise ValueError(f"upstreams.{up.name}.health_check.conditions: {exc}") from exc
        plans.append(CheckPlan(up, hc, up.url.rstrip("/") + "/" + hc.path.lstrip("/"), conds))
    return plans


def classify(plan: CheckPlan, obs: Observation, error: str) -> tuple[Outcome, str]:
    """Outcome and reason of one check (see the module docstring for the rule)."""
    if not obs.connected:
        return (Outcome.CHECK_ERROR if error.startswith(CHECK_ERROR_PREFIX) else Outcome.FAIL), error
    hard, slow = evaluate_all(plan.conditions, obs)
    if hard:
        return Outcome.FAIL, "; ".join(hard)
    limit = plan.check.degraded_response_time_ms
    if limit is not None and obs.response_time_ms > limit:
        slow.append(f"response time {obs.response_time_ms:.0f} ms > degraded threshold {limit:g} ms")
    if slow:
        return Outcome.SLOW, "; ".join(slow)
    return Outcome.OK, ""


CHECK_ERROR_PREFIX = "gateway-side check error: "


def _connect_error(exc: OSError) -> str:
    if exc.errno in LOCAL_RESOURCE_ERRNOS:
        name = errno.errorcode.get(exc.errno or 0, "")
        return f"{CHECK_ERROR_PREFIX}cannot open a connection: {exc.strerror or exc} ({name})"
    return f"connect error: {exc.strerror or exc}"


async def probe(session: aiohttp.ClientSession, plan: CheckPlan) -> tuple[Observation, str]:
    """Run one request; (observation, error text when no response arrived)."""
    t0 = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=plan.check.timeout)
    try:
        async with session.request(plan.check.method, plan.url, timeout=timeout,
                                   allow_redirects=False) as resp:
            raw = await resp.content.read(MAX_BODY)
            elapsed = (time.perf_counter() - t0) * 1000.0
            return Observation(True, resp.status, elapsed, raw.decode("utf-8", "replace")), ""
    except TimeoutError:
        error = f"timeout after {plan.check.timeout:g} s"
    except aiohttp.ClientConnectorError as exc:
        error = _connect_error(exc.os_error)
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except OSError as exc:  # a socket the gateway could not even create
        if exc.errno not in LOCAL_RESOURCE_ERRNOS:
            raise
        error = _connect_error(exc)
    return Observation(False, 0, (time.perf_counter() - t0) * 1000.0), error


@dataclass
class _Upstream:
    plan: CheckPlan
    tracker: Tracker
    since: float | None = None
    last: CheckResult | None = None


@dataclass
class HealthMonitor:
    config: Config
    store: AsyncStore
    flush_interval: float = 1.0
    max_buffer: int = 100_000
    written: int = 0
    dropped: int = 0
    insert_errors: int = 0
    _ups: dict[str, _Upstream] = field(default_factory=dict)
    _buffer: list[CheckResult] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None
    _flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self, *, schedule: bool = True) -> None:
        """Open the HTTP session and, unless ``schedule`` is false (callers drive ``check_once``), the
        per-upstream check tasks; the batch writer always runs."""
        plans = plan_checks(self.config)
        for p in plans:
            th = p.check
            self._ups[p.upstream.name] = _Upstream(p, Tracker(th.failure_threshold, th.success_threshold))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            headers={"User-Agent": "loomgate-health/1"},
        )
        if schedule:
            self._tasks = [asyncio.create_task(self._run(u), name=f"health:{n}")
                           for n, u in self._ups.items()]
        self._tasks.append(asyncio.create_task(self._flusher(), name="health:flush"))

    def snapshot(self) -> dict[str, UpstreamHealth]:
        now = time.time()
        out = {}
        for name, u in self._ups.items():
            mw = maintenance.active(self.config.maintenance, name, now)
            out[name] = UpstreamHealth(name, u.tracker.state, u.since, u.last, mw.name if mw else None)
        return out

    async def check_once(self, name: str) -> CheckResult:
        """Run one check of ``name`` now (also what the schedule runs)."""
        assert self._session is not None, "start() first"
        u = self._ups[name]
        at = time.time()
        obs, error = await probe(self._session, u.plan)
        outcome, reason = classify(u.plan, obs, error)
        before = u.tracker.state
        after = u.tracker.observe(outcome)
        if after is not before:
            u.since = at
            log.info("upstream %s: %s -> %s (%s)", name, before, after, reason or outcome)
        res = CheckResult(name, u.plan.url, at, outcome, obs.status, obs.response_time_ms, reason, after,
                          before, u.plan.check.interval)
        u.last = res
        self._buffer.append(res)
        self._trim()
        return res

    def _trim(self) -> None:
        excess = len(self._buffer) - self.max_buffer
        if excess > 0:
            del self._buffer[:excess]
            self.dropped += excess

    async def _run(self, u: _Upstream) -> None:
        interval = u.plan.check.interval
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.check_once(u.plan.upstream.name)
            except Exception:  # a bug in one check must not stop the schedule
                log.exception("health check of %s failed unexpectedly", u.plan.upstream.name)
            next_at += interval
            now = loop.time()
            if next_at < now:  # fell behind (e.g. a check longer than the interval): skip missed slots
                next_at = now + interval - ((now - next_at) % interval)
            await asyncio.sleep(next_at - now)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self) -> None:
        """Insert buffered results; on failure keep them for the next attempt."""
        async with self._flush_lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            try:
                await self.store.insert(TABLE, [r.row() for r in batch], COLUMNS)
            except Exception as exc:
                self.insert_errors += 1
                log.warning("storing %d health results failed (will retry): %s", len(batch), exc)
                self._buffer = batch + self._buffer
                self._trim()
                return
            self.written += len(batch)

    async def close(self, flush_timeout: float = 10.0) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), flush_timeout)
        if self._session is not None:
            await self._session.close()
            self._session = None


async def start_health(config: Config, store: AsyncStore, *, flush_interval: float = 1.0,
                       schedule: bool = True) -> HealthMonitor:
    """Start checking every upstream that has a ``health_check``; ``close()`` stops and flushes."""
    mon = HealthMonitor(config, store, flush_interval=flush_interval)
    await mon.start(schedule=schedule)
    return mon
