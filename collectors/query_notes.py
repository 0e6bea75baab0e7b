"""Why a query window came back empty: "no rows between A and B; the store has data from C to D".

A query with ``start`` / ``end`` parameters that returns no rows, or that reads the call rollups while the
window holds no calls (grid queries return their rows with empty values), gets a note naming the span of
data the store does hold (per-minute call rollup, so imported history and live traffic alike).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from collectors.querylib import NamedQuery, bind_params
from collectors.store import AsyncStore, QueryResult, Store

ROLLUP = "loomgate_calls_1m"
_RANGE_SQL = (f"SELECT count(), min(minute), max(minute), countIf(minute >= {{start:DateTime64(3)}} AND "
              f"minute < {{end:DateTime64(3)}}) FROM {ROLLUP}")


def _window(query: NamedQuery, raw: Mapping[str, str]) -> tuple[dt.datetime, dt.datetime] | None:
    if "start" not in query.params or "end" not in query.params:
        return None
    bound = bind_params(query, raw)
    start, end = bound.get("start"), bound.get("end")
    if not isinstance(start, dt.datetime) or not isinstance(end, dt.datetime):
        return None
    return start, end


def _text(t: Any) -> str:
    if isinstance(t, dt.datetime):
        t = t.replace(tzinfo=None) if t.tzinfo is not None else t
        return t.strftime("%Y-%m-%d %H:%M")
    return str(t)


def _note(query: NamedQuery, result: QueryResult, window: tuple[dt.datetime, dt.datetime],
          stats: tuple[Any, ...]) -> str | None:
    total, first, last, inside = (int(stats[0]), stats[1], stats[2], int(stats[3]))
    reads_calls = "loomgate_calls_" in query.sql
    if result.rows and (inside or not reads_calls):
        return None
    start, end = (_text(t.astimezone(dt.UTC) if t.tzinfo else t) for t in window)
    held = (f"the store has data from {_text(first)} to {_text(last)} (UTC)" if total else
            "the store holds no calls yet (live traffic or `loomgate import spans FILE` adds them)")
    what = "no rows" if not result.rows else "no calls"
    return f"{what} between {start} and {end} (UTC); {held}"


def empty_window_note_sync(store: Store, query: NamedQuery, raw: Mapping[str, str],
                           result: QueryResult) -> str | None:
    window = _window(query, raw)
    if window is None:
        return None
    stats = store.query(_RANGE_SQL, {"start": window[0], "end": window[1]}).rows[0]
    return _note(query, result, window, stats)


async def empty_window_note(store: AsyncStore, query: NamedQuery, raw: Mapping[str, str],
                            result: QueryResult) -> str | None:
    window = _window(query, raw)
    if window is None:
        return None
    stats = (await store.query(_RANGE_SQL, parameters={"start": window[0], "end": window[1]})).rows[0]
    return _note(query, result, window, stats)
