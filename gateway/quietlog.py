"""Repeated errors are logged once per interval with a count, never once per connection.

A flood (thousands of idle connections, ``accept()`` out of file descriptors) would otherwise write one
traceback per event and fill the disk faster than it fills the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

_MAX_KEYS = 256  # distinct kinds of message tracked; kinds are few, this only bounds a pathological case


@dataclass(slots=True)
class _Seen:
    since: float  # when this kind was last written
    suppressed: int = 0  # occurrences since then, not written


class RepeatLimiter:
    """Writes the first occurrence of each kind of message, then at most one line per ``interval``
    saying how many more happened."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._log = logger
        self._interval = interval
        self._seen: dict[str, _Seen] = {}
        self.total = 0  # every occurrence, written or not

    def report(self, kind: str, message: str, *, level: int = logging.WARNING, detail: str = "") -> bool:
        """Count one occurrence of ``kind``; returns True when it was written."""
        self.total += 1
        now = time.monotonic()
        seen = self._seen.get(kind)
        if seen is not None and now - seen.since < self._interval:
            seen.suppressed += 1
            return False
        extra = ""
        if seen is not None and seen.suppressed:
            extra = f" ({seen.suppressed} more in the last {now - seen.since:.0f} s)"
        if len(self._seen) >= _MAX_KEYS and kind not in self._seen:
            self._seen.pop(next(iter(self._seen)))
        self._seen[kind] = _Seen(now)
        self._log.log(level, "%s%s%s", message, f": {detail}" if detail else "", extra)
        return True


def install_loop_handler(loop: asyncio.AbstractEventLoop, limiter: RepeatLimiter) -> Any:
    """Route the loop's unhandled-error reports (e.g. ``socket.accept() out of system resource``) through
    ``limiter``: one line per kind and interval, the exception's text instead of a traceback.

    Returns the previous handler, for ``loop.set_exception_handler`` when done.
    """
    previous = loop.get_exception_handler()

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "unhandled error in the event loop")
        exc = context.get("exception")
        kind = f"{message}|{type(exc).__name__}"
        limiter.report(kind, message, level=logging.ERROR, detail=repr(exc) if exc is not None else "")

    loop.set_exception_handler(handler)
    return previous
