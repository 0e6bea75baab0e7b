"""Per-upstream circuit breaker.

closed    calls pass; ``cfg.failures`` consecutive failures open the circuit.
open      calls are refused with ``CircuitOpen`` (Retry-After = rest of the cool-down).
half_open after the cool-down one probe call passes; its success closes the circuit, its failure re-opens
          it for another cool-down.  Other calls are refused while the probe is in flight.

A probe whose outcome is never reported (for example the client went away and the call was cancelled)
would otherwise keep the circuit half-open for ever, so the probe slot is released by
``record_cancelled()`` or, failing that, another probe is allowed after one more cool-down.

Outcomes reported while the circuit is open come from calls started before it opened; they are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from gateway import errors
from gateway.config import CircuitBreakerConfig

State = Literal["closed", "open", "half_open"]
ChangeCallback = Callable[[str, str, str], None]


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        cfg: CircuitBreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        on_change: ChangeCallback | None = None,
    ) -> None:
        self.name = name
        self.threshold = max(1, cfg.failures)
        self.cooldown = max(0.0, cfg.cooldown)
        self.on_change = on_change
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _set(self, new: State) -> None:
        old, self._state = self._state, new
        if old != new and self.on_change is not None:
            self.on_change(self.name, old, new)

    def before_call(self) -> None:
        """Raise ``errors.CircuitOpen`` if the call must not be made now."""
        if self._state == "closed":
            return
        now = self._clock()
        if self._state == "open":
            elapsed = now - self._opened_at
            if elapsed < self.cooldown:
                raise errors.CircuitOpen(
                    f"upstream {self.name} is failing; circuit open", retry_after=self.cooldown - elapsed
                )
            self._set("half_open")
            self._probe_started = now
            return
        # half-open
        if self._probe_started is None or now - self._probe_started >= self.cooldown:
            self._probe_started = now  # no probe in flight, or the last one was lost
            return
        raise errors.CircuitOpen(f"upstream {self.name} is being probed; circuit half-open", retry_after=1.0)

    def record_success(self) -> None:
        if self._state == "open":
            return
        self._failures = 0
        self._probe_started = None
        if self._state == "half_open":
            self._set("closed")

    def record_failure(self) -> None:
        if self._state == "open":
            return
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._probe_started = None
            self._set("open")

    def record_cancelled(self) -> None:
        """A call ended without a verdict on the upstream: free the probe slot if it was the probe."""
        if self._state == "half_open":
            self._probe_started = None
