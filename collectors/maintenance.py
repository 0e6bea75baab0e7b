"""Maintenance windows: expanded into concrete UTC intervals for a time range.

One-off windows have ``start``/``end``; recurring ones repeat ``daily`` or ``weekly`` (``weekday`` 0 =
Monday) at ``at`` (HH:MM UTC) for ``duration`` seconds.  Queries receive the intervals as a parameter
``Array(Tuple(String, DateTime64(3, 'UTC'), DateTime64(3, 'UTC')))`` — (upstream or ``*``, start, end) —
and drop every event inside one, so the SLA maths ignores maintenance while checks keep running.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config import MaintenanceWindow

UTC = dt.UTC
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Interval:
    name: str
    upstream: str  # "*" = every upstream
    start: float  # epoch seconds
    end: float

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end

    def applies_to(self, upstream: str) -> bool:
        return self.upstream in ("*", upstream)


def parse_hhmm(at: str) -> tuple[int, int]:
    """``HH:MM`` → (hours, minutes); ``ValueError`` when malformed."""
    hh, sep, mm = at.partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or not (0 <= int(hh) < 24 and 0 <= int(mm) < 60):
        raise ValueError(f"time {at!r} is not HH:MM (UTC, 00:00-23:59)")
    return int(hh), int(mm)


def occurrences(win: MaintenanceWindow, start: float, end: float) -> list[tuple[float, float]]:
    """The window's (start, end) intervals overlapping [start, end)."""
    if win.recurrence is None:
        if win.start is None or win.end is None or win.end <= start or win.start >= end:
            return []
        return [(win.start, win.end)]
    rec = win.recurrence
    hh, mm = parse_hhmm(rec.at)
    period = DAY if rec.every == "daily" else 7 * DAY
    # first candidate: the occurrence on the day of (start - duration), so one already running is included
    first_day = dt.datetime.fromtimestamp(start - rec.duration, UTC).replace(hour=0, minute=0, second=0,
                                                                              microsecond=0)
    cand = first_day + dt.timedelta(hours=hh, minutes=mm)
    if rec.every == "weekly":
        cand += dt.timedelta(days=((rec.weekday or 0) - cand.weekday()) % 7)
    out: list[tuple[float, float]] = []
    t = cand.timestamp()
    while t < end:
        if t + rec.duration > start:
            out.append((t, t + rec.duration))
        t += period
    return out


def intervals(windows: Iterable[MaintenanceWindow], start: float, end: float) -> list[Interval]:
    """Every maintenance interval overlapping [start, end), one entry per upstream it covers."""
    out: list[Interval] = []
    for win in windows:
        targets = ("*",) if win.upstreams == "*" else tuple(win.upstreams)
        for s, e in occurrences(win, start, end):
            out.extend(Interval(win.name, u, s, e) for u in targets)
    out.sort(key=lambda i: (i.start, i.upstream))
    return out


def as_param(ivs: Iterable[Interval]) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The query parameter form: (upstream, start, end) with UTC datetimes."""
    return [(i.upstream, _utc(i.start), _utc(i.end)) for i in ivs]


def active(windows: Iterable[MaintenanceWindow], upstream: str, now: float) -> Interval | None:
    """The maintenance interval covering ``upstream`` at ``now``, if any."""
    for iv in intervals(windows, now, now + 1e-3):
        if iv.applies_to(upstream) and iv.contains(now):
            return iv
    return None


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, UTC)
