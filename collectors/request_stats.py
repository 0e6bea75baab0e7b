"""Live request counts and latency histograms for Prometheus, folded from the telemetry batches.

The proxy does nothing extra per request: the telemetry pipeline hands every cut batch of call records to
:meth:`RequestStats.observe` on its sender (or spill) thread, which folds them into cumulative counts per
(route, partner, status class) in the semantic-convention seconds buckets.  ``/metrics`` reads a snapshot at
scrape time.  The series are therefore at most one ``telemetry.batch_window`` behind the traffic.

Labels stay bounded by the config: route and partner ids are names from the config (``""`` when no route
matched or the caller was not authenticated), the status class is ``1xx`` … ``5xx`` or ``none`` (the client
went away before an answer).  Artisan ids, paths and request ids never become labels.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from collectors.metrics import DURATION_BUCKETS
from collectors.record import CallRecord

_FIELDS = CallRecord._fields
_key_fields = itemgetter(_FIELDS.index("route_name"), _FIELDS.index("partner_id"), _FIELDS.index("status"))
_DURATION = _FIELDS.index("duration_ns")


@dataclass(frozen=True, slots=True)
class SeriesKey:
    route: str
    partner: str
    status_class: str


@dataclass(slots=True)
class Series:
    """One label set's cumulative histogram: ``buckets[i]`` counts durations in (bounds[i-1], bounds[i]],
    the last one those above the largest bound."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    sum_seconds: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def copy(self) -> Series:
        return Series(list(self.buckets), self.sum_seconds)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if status > 0 else "none"


class RequestStats:
    """Thread-safe cumulative request statistics (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, Series] = {}

    def observe(self, records: Iterable[Sequence[Any]]) -> None:
        """Fold call records (CallRecords or tuples in CallRecord field order) into the series."""
        folded: dict[tuple[str, str, int], list[float]] = {}
        for rec in records:
            seconds = rec[_DURATION] / 1e9
            key = _key_fields(rec)
            bucket = folded.get(key)
            if bucket is None:
                folded[key] = [seconds]
            else:
                bucket.append(seconds)
        if not folded:
            return
        with self._lock:
            for (route, partner, status), durations in folded.items():
                skey = SeriesKey(route, partner, status_class(status))
                series = self._series.get(skey)
                if series is None:
                    series = self._series[skey] = Series()
                buckets = series.buckets
                for s in durations:
                    buckets[bisect_left(DURATION_BUCKETS, s)] += 1
                series.sum_seconds += sum(durations)

    def snapshot(self) -> dict[SeriesKey, Series]:
        with self._lock:
            return {k: v.copy() for k, v in self._series.items()}
