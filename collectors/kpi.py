"""Small helpers shared by the KPI import and the data generator: the KPI table names and a progress bar."""

from __future__ import annotations

import sys
import time
from typing import TextIO

# CLI / API table names -> ClickHouse tables (queries/schema/020-026).
KPI_TABLES: dict[str, str] = {
    "artisans": "kpi_artisans",
    "orders": "kpi_orders",
    "cart_events": "kpi_cart_events",
    "survey_responses": "kpi_survey_responses",
    "listings": "kpi_listings",
    "integration_changes": "kpi_integration_changes",
    "loyalty": "kpi_loyalty",
}


class Progress:
    """A one-line progress bar on stderr, redrawn at most every ``interval`` seconds.

    On a terminal the line is redrawn in place; otherwise (logs, CI) a line is printed at most every
    ``interval`` seconds, so a long job still shows it is moving without flooding the log.
    """

    def __init__(self, label: str, total: float, unit: str = "", *, stream: TextIO | None = None,
                 enabled: bool = True, interval: float = 0.25) -> None:
        self.label = label
        self.total = max(float(total), 0.0)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.done_amount = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, amount: float) -> None:
        self.done_amount += amount
        now = time.monotonic()
        if self.enabled and now - self._last >= (self.interval if self._tty else max(self.interval, 2.0)):
            self._last = now
            self._draw(final=False)

    def finish(self, note: str = "") -> None:
        if self.enabled:
            self._draw(final=True, note=note)

    def _draw(self, *, final: bool, note: str = "") -> None:
        frac = min(self.done_amount / self.total, 1.0) if self.total else 1.0
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.monotonic() - self._start
        line = (f"{self.label} [{bar}] {frac * 100:5.1f}% {_human(self.done_amount)}/{_human(self.total)}"
                f"{self.unit} {elapsed:.1f}s {note}").rstrip()
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"
