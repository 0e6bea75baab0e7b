"""The total and read time limits of upstream calls, all checked by one periodic event-loop timer.

aiohttp's own limits (``ClientTimeout(total=..., sock_read=...)``) arm a loop timer for the total, arm the
read timer once the request is sent, and cancel and re-arm it on every chunk read from the socket: three
timers or more per call, each a heap insert that compares ``TimerHandle`` objects in Python.  Measured on
the benchmark that was about a tenth of the gateway's CPU per request.

Here no timer is armed per call: ``LimitClock`` keeps the calls in flight in a set and checks them every
``TICK`` seconds, with one timer that is only armed while calls are in flight.  A limit is therefore
enforced up to one tick late, which is far below the limits one configures (seconds).

Semantics (the connect limit stays with aiohttp's connector):

* total -- from the start of the call until the upstream's response has been read to its end;
* read  -- the longest wait for the upstream's next bytes: from the moment the request has been handed
  over to the response headers, then for each read of the response body.  A request with a streamed
  body is handed over once the body is fully sent; one without a body at the start of the call, so a
  wait for a free pooled connection and the connect (itself bounded by the connect limit) count too.
  Time the gateway spends writing to its own client is not upstream silence and is never counted.

Time spent waiting on the client -- reading a slowly uploaded request body, or writing the response to a
client that reads slowly (``write`` blocked on backpressure) -- counts against neither limit: the total
stands still during each such wait (``begin_client_wait`` / ``end_client_wait``) and resumes after it.
A wait to write to the client has its own limit instead, ``client_idle`` (``limits.client_idle_timeout``):
a single wait longer than that ends the call with ``client_expired`` set, which the proxy records as the
client's fault (``client_timeout``), never the upstream's, and never reports to the circuit breaker.
Waits for request body bytes are bounded by the listener's ``body_idle_timeout`` instead
(``begin_client_wait(limited=False)``), which fails the body read with the same ``client_timeout``.

A limit that runs out while the gateway is waiting for the upstream interrupts that wait (the task is
cancelled and the cancellation turned into ``TimeoutError``, as ``asyncio.timeout`` does); one that runs
out while the gateway is busy elsewhere makes the next wait fail at once.
"""

from __future__ import annotations

import asyncio

TICK = 0.02  # seconds between checks: how late a limit may be enforced


class CallLimits:
    """Time limits of one upstream call (made by ``LimitClock.limits``); ``close()`` it when it is over."""

    __slots__ = (
        "_cancelling",
        "_client_idle",
        "_client_limited",
        "_client_since",
        "_clock",
        "_interrupted",
        "_loop",
        "_quiet_since",
        "_read",
        "_task",
        "_total_at",
        "_waiting",
        "client_expired",
        "expired",
    )

    def __init__(self, clock: LimitClock, total: float, read: float, client_idle: float) -> None:
        loop = clock.loop
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("CallLimits must be created inside a task")
        self._clock = clock
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()  # cancellations requested before ours are not ours
        self._total_at = loop.time() + total
        self._read = read
        self._waiting = False  # inside a wait for the upstream: a limit running out interrupts it
        self._quiet_since: float | None = None  # loop time since the upstream owes bytes; None: not owed
        self._interrupted = False
        self._client_idle = client_idle
        self._client_since: float | None = None  # loop time since the gateway waits on the client
        self._client_limited = True  # the current client wait is bounded by client_idle
        self.expired = False
        self.client_expired = False  # the client-side idle limit ran out (not the upstream's fault)

    def check(self, now: float) -> None:
        """Called by the clock each tick: expire if a limit ran out."""
        client = self._client_since
        if client is not None:  # the upstream's clock stands still while the client is waited on
            if self._client_limited and now - client >= self._client_idle:
                self.client_expired = True
                self._clock.forget(self)
                self._expire()
            return
        quiet = self._quiet_since
        if now >= self._total_at or (quiet is not None and now - quiet >= self._read):
            self._clock.forget(self)
            self._expire()

    def _expire(self) -> None:
        self.expired = True
        if self._waiting or self._client_since is not None:
            self._interrupted = True
            self._task.cancel()

    # ------------------------------------------------------------------------------- around each wait

    def begin_wait(self, *, owed: bool) -> None:
        """Before awaiting the upstream; ``owed``: the upstream owes bytes from now (read limit counts).

        Raises ``TimeoutError`` if a limit already ran out.
        """
        if self.expired:
            raise TimeoutError("upstream call limit ran out")
        self._waiting = True
        if owed:
            self._quiet_since = self._loop.time()

    def owed_from_now(self) -> None:
        """The request has been handed over in full (its body sent): the read limit starts counting."""
        if self._waiting:
            self._quiet_since = self._loop.time()

    def begin_client_wait(self, *, limited: bool = True) -> None:
        """Before awaiting the client (its body, or room to write to it): the upstream's clock stops.

        ``limited=False``: the wait is bounded elsewhere (request body bytes: the listener's body idle
        timeout), so ``client_idle`` does not apply to it.
        """
        self._client_limited = limited
        self._client_since = self._loop.time()

    def end_client_wait(self) -> None:
        """After a wait on the client: the total limit moves on by the time it took."""
        since = self._client_since
        if since is not None:
            self._client_since = None
            self._total_at += self._loop.time() - since

    def end_wait(self) -> None:
        self._waiting = False
        self._quiet_since = None

    def timed_out(self) -> bool:
        """After a ``CancelledError`` out of a wait: True if it was this object's doing (and nothing else
        asked to cancel the task), so the caller should treat it as ``TimeoutError``."""
        if not self._interrupted:
            return False
        self._interrupted = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """The call is over: no more checks."""
        self._clock.forget(self)


class LimitClock:
    """Checks the limits of every upstream call in flight, ``tick`` seconds apart, with one loop timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self.loop = loop
        self._tick = tick
        self._calls: set[CallLimits] = set()
        self._handle: asyncio.TimerHandle | None = None

    def limits(self, total: float, read: float, client_idle: float = float("inf")) -> CallLimits:
        """Limits for an upstream call made by the current task; ``close()`` them when it is over."""
        call = CallLimits(self, total, read, client_idle)
        self._calls.add(call)
        if self._handle is None:
            self._handle = self.loop.call_at(self.loop.time() + self._tick, self._sweep)
        return call

    def forget(self, call: CallLimits) -> None:
        self._calls.discard(call)

    def _sweep(self) -> None:
        now = self.loop.time()
        for call in tuple(self._calls):  # expiring calls leave the set
            call.check(now)
        self._handle = self.loop.call_at(now + self._tick, self._sweep) if self._calls else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
