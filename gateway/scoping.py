"""The values the gateway decides on, each taken from the request exactly once (pure, no I/O).

What the gateway checks is what the upstream receives, so a deciding value must have one reading only.
A request is refused before the upstream (400, ``gateway.errors.Ambiguous`` and its kin) when it carries:

* the artisan id more than once: a repeated header in any letter case (aiohttp's multidict is
  case-insensitive, so ``getall`` sees every spelling) or under an underscore spelling (``X_Artisan_Id``,
  which CGI-style upstreams read as the same header), a repeated query key (keys compared after percent
  decoding, as the upstream decodes them), a JSON key repeated anywhere on the looked-up path (the object
  holding it or any object above it); or an artisan id with leading or trailing whitespace (``" a1"`` would
  be checked as ``a1`` but reach the upstream padded) -> ``ambiguous_artisan``;
* the sync-lag source time more than once (header or JSON key, as above) -> ``ambiguous_sync_lag``;
* more than one credential: ``Authorization`` or ``X-Api-Key`` repeated, or both present unless they are
  ``Bearer K`` and ``K`` with the same key -> ``ambiguous_credentials``.  Checked before any key is looked
  up, so the answer says nothing about which key is valid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway import errors
from gateway.config import ArtisanLookup, SyncLagLookup
from gateway.routing import RouteMatch

MAX_ARTISAN_ID_LEN = 256
_NONE: frozenset[str] = frozenset()
_WHERE = {"path": "path parameter", "header": "header", "query": "query parameter", "json": "JSON field"}


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where a route finds a value: ``source`` (path, header, query, json) and ``name`` (dotted for JSON)."""

    source: str
    name: str
    parts: tuple[str, ...]  # dotted JSON path split once
    required: bool
    underscore_name: str  # the header name as CGI would spell it (``x_artisan_id``), lower case

    @classmethod
    def of(cls, spec: ArtisanLookup | SyncLagLookup) -> Lookup:
        low = spec.name.lower()
        return cls(
            spec.source, spec.name, tuple(spec.name.split(".")), getattr(spec, "required", True),
            low.replace("-", "_"),
        )  # fmt: skip


# ------------------------------------------------------------------------------------- JSON documents


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers which of its keys were given more than once."""

    __slots__ = ("repeated",)

    repeated: frozenset[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) == len(pairs):
        obj.repeated = _NONE
    else:
        seen: set[str] = set()
        obj.repeated = frozenset(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return obj


class _Invalid:
    """Marker for a body that is not valid JSON."""


INVALID = _Invalid()


def parse_json(body: bytes) -> Any:
    """The parsed body (objects remember repeated keys), or ``INVALID`` when it is not JSON."""
    if not body:
        return INVALID
    try:
        return json.loads(body, object_pairs_hook=_object)
    except (ValueError, RecursionError):
        return INVALID


def json_field(doc: Any, parts: tuple[str, ...], ambiguous: type[errors.Ambiguous]) -> Any:
    """Value at a dotted path (list items by index), or None; ``ambiguous`` if a key on it is repeated."""
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            if part in getattr(cur, "repeated", _NONE):
                raise ambiguous(f"JSON key {part!r} appears more than once")
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


# ------------------------------------------------------------------------------------------ lookups


def lookup_once(
    lookup: Lookup, request: web.BaseRequest, m: RouteMatch, doc: Any, ambiguous: type[errors.Ambiguous]
) -> Any:
    """The one raw value ``lookup`` names, or None; raises ``ambiguous`` when the request carries several."""
    source = lookup.source
    if source == "path":
        return m.params.get(lookup.name)
    if source == "header":
        headers = request.headers
        values = headers.getall(lookup.name, ())
        if len(values) > 1:
            raise ambiguous(f"header {lookup.name!r} is sent more than once")
        if _underscore_spelling(headers, lookup):
            raise ambiguous(f"header {lookup.name!r} is also sent with underscores")
        return values[0] if values else None
    if source == "query":
        values = request.query.getall(lookup.name, ())
        if len(values) > 1:
            raise ambiguous(f"query parameter {lookup.name!r} is sent more than once")
        return values[0] if values else None
    if doc is None or doc is INVALID:
        return None
    return json_field(doc, lookup.parts, ambiguous)


def _underscore_spelling(headers: CIMultiDictProxy[str], lookup: Lookup) -> bool:
    """True when a header spelt with underscores would read as ``lookup.name`` to a CGI-style upstream."""
    if "_" not in lookup.underscore_name:  # a name without dashes has no other spelling
        return False
    target = lookup.underscore_name
    return any("_" in k and k.lower().replace("-", "_") == target for k in headers)


def artisan_value(value: Any) -> str | None:
    """An artisan id from a lookup result: a non-empty string or an integer, bounded in length."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_ARTISAN_ID_LEN:
        return None
    return value


def artisan_of(lookup: Lookup, request: web.BaseRequest, m: RouteMatch, doc: Any) -> str | None:
    """The artisan id exactly as the upstream will receive it, or None when absent or unusable."""
    raw = lookup_once(lookup, request, m, doc, errors.AmbiguousArtisan)
    if isinstance(raw, str) and raw != raw.strip():
        raise errors.AmbiguousArtisan(f"artisan id in the {_WHERE[lookup.source]} {lookup.name!r} is padded")
    return artisan_value(raw)


def artisan_error(lookup: Lookup, doc: Any) -> errors.GatewayError:
    if lookup.source == "json" and doc is INVALID:
        return errors.BadRequest("request body is not valid JSON (the artisan id is read from it)")
    return errors.ArtisanMissing(
        f"artisan id missing or invalid: expected in the {_WHERE[lookup.source]} {lookup.name!r}"
    )


def single_credential(headers: CIMultiDictProxy[str]) -> None:
    """Raise ``AmbiguousCredentials`` unless the request carries at most one API key, once."""
    auth = headers.getall("Authorization", ())
    keys = headers.getall("X-Api-Key", ())
    if len(auth) > 1 or len(keys) > 1:
        raise errors.AmbiguousCredentials("send one Authorization or one X-Api-Key header, not several")
    if auth and keys:
        scheme, _, token = auth[0].strip().partition(" ")
        if scheme.lower() != "bearer" or token.strip() != keys[0].strip():
            raise errors.AmbiguousCredentials("Authorization and X-Api-Key carry different credentials")


# ------------------------------------------------------------------------------------------ sync lag


def parse_source_time_ms(value: Any) -> float | None:
    """Epoch milliseconds from ISO-8601 text or epoch seconds / milliseconds (told apart by magnitude).

    Numbers of 1e11 and more are milliseconds (1e11 s is the year 5138, 1e11 ms is 1973).  Naive ISO
    times are UTC.  Anything unreadable is None (the lag is then not measured).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            return None
        try:
            number = float(text)
        except ValueError:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return when.timestamp() * 1000.0
        value = number
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            return None
        return number if number >= 1e11 else number * 1000.0
    return None


def sync_lag(ack_ms: float, source_ms: float, max_skew_ms: float) -> tuple[float | None, bool]:
    """(lag in ms, invalid): a source time slightly in the future is lag 0, far in the future invalid."""
    lag = ack_ms - source_ms
    if lag >= 0:
        return lag, False
    if -lag <= max_skew_ms:
        return 0.0, False
    return None, True
