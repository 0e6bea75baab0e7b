"""The total and read time limits of one upstream call, kept with a single event-loop timer.

aiohttp's own limits (``ClientTimeout(total=..., sock_read=...)``) arm a loop timer for the total, arm the
read timer once the request is sent, and cancel and re-arm it on every chunk read from the socket: three
timers or more per call, each a heap insert that compares ``TimerHandle`` objects in Python.  Measured on
the benchmark that was about a tenth of the gateway's CPU per request.

Here one timer is armed per call, for the earliest moment a limit could run out, and it is only moved
when it fires early (the upstream was still making progress).  A call that ends well within its limits
costs one timer.

Semantics (the connect limit stays with aiohttp's connector):

* total -- from the start of the call until the upstream's response has been read to its end;
* read  -- the longest wait for the upstream's next bytes: from the moment the request has been handed
  over (a request body fully sent) to the response headers, then for each read of the response body.
  Time the gateway spends writing to its own client is not upstream silence and is never counted.

A limit that runs out while the gateway is waiting for the upstream interrupts that wait (the task is
cancelled and the cancellation turned into ``TimeoutError``, as ``asyncio.timeout`` does); one that runs
out while the gateway is busy elsewhere makes the next wait fail at once.
"""

from __future__ import annotations

import asyncio


class CallLimits:
    """Time limits of one upstream call; ``close()`` it when the call is over."""

    __slots__ = (
        "_cancelling",
        "_handle",
        "_interrupted",
        "_loop",
        "_quiet_since",
        "_read",
        "_task",
        "_total_at",
        "_waiting",
        "expired",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, total: float, read: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("CallLimits must be created inside a task")
        now = loop.time()
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()  # cancellations requested before ours are not ours
        self._total_at = now + total
        self._read = read
        self._waiting = False  # inside a wait for the upstream: a limit running out interrupts it
        self._quiet_since: float | None = None  # loop time since the upstream owes bytes; None: not owed
        self._interrupted = False
        self.expired = False
        self._handle: asyncio.TimerHandle | None = loop.call_at(min(self._total_at, now + read), self._check)

    # ------------------------------------------------------------------------------------ the one timer

    def _check(self) -> None:
        now = self._loop.time()
        quiet = self._quiet_since
        if now >= self._total_at or (quiet is not None and now - quiet >= self._read):
            self._handle = None
            self._expire()
            return
        # Early: the upstream was busy or not owing anything.  Next possible expiry.
        start = quiet if quiet is not None else now
        self._handle = self._loop.call_at(min(self._total_at, start + self._read), self._check)

    def _expire(self) -> None:
        self.expired = True
        if self._waiting:
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
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None
