"""The values the gateway decides on, each taken from the request exactly once (pure, no I/O).

What the gateway checks is what the upstream receives, so a deciding value must have one reading only.
A request is refused before the upstream (400, ``gateway.errors.Ambiguous`` and its kin) when it carries:

* the artisan id more than once: a repeated header in any letter case (aiohttp's multidict is
  case-insensitive, so ``getall`` sees every spelling) or under an underscore spelling (``X_Artisan_Id``,
  which CGI-style upstreams read as the same header); a repeated query key, keys compared after percent
  decoding and in every spelling some upstream framework reads as the same key (``;`` as a separator,
  ``key[]``/``key[0]``, any letter case, padded with spaces; such a spelling alone is refused too, since
  the gateway would not have checked it); a JSON key repeated anywhere on the looked-up path (the object
  holding it or any object above it), keys compared without letter case as Go's encoding/json compares
  them (which also takes a key in another case alone); or an artisan id with leading or trailing
  whitespace (``" a1"`` would be checked as ``a1`` but reach the upstream padded) -> ``ambiguous_artisan``;
  a numeric id beyond 2**53 - 1 (another number to double-precision readers) is not a usable id;
* the sync-lag source time more than once (header or JSON key, as above) -> ``ambiguous_sync_lag``;
* a query value it reads that is not UTF-8 once percent-decoded (``artisan=a%FF1``) ->
  ``invalid_query_encoding``: the query is forwarded byte for byte, but the decoded value would carry a
  replacement character, one reading for many different ids the upstream could see;
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
from urllib.parse import unquote_plus, unquote_to_bytes

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway import errors
from gateway.config import ArtisanLookup, SyncLagLookup
from gateway.routing import RouteMatch

MAX_ARTISAN_ID_LEN = 256
MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer every JSON reader (doubles included) reads exactly
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
    folded_name: str  # the name without letter case, as case-insensitive query readers compare it

    @classmethod
    def of(cls, spec: ArtisanLookup | SyncLagLookup) -> Lookup:
        low = spec.name.lower()
        return cls(
            spec.source, spec.name, tuple(spec.name.split(".")), getattr(spec, "required", True),
            low.replace("-", "_"), spec.name.casefold(),
        )  # fmt: skip


# ------------------------------------------------------------------------------------- JSON documents


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers which of its keys were given more than once."""

    __slots__ = ("repeated",)

    repeated: frozenset[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    folded = [k.casefold() for k, _ in pairs]
    if len(set(folded)) == len(pairs):
        obj.repeated = _NONE
    else:  # keys compared as case-insensitive readers compare them (``Artisan_Id`` is ``artisan_id``)
        seen: set[str] = set()
        obj.repeated = frozenset(k for k in folded if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class _Invalid:
    """Marker for a body that is not valid JSON."""


INVALID = _Invalid()


def parse_json(body: bytes) -> Any:
    """The parsed body (objects remember repeated keys), or ``INVALID`` when it is not strict JSON.

    Strict as RFC 8259 has it between systems: UTF-8 without a byte-order mark (``json.loads`` would
    otherwise guess UTF-16 or skip the mark), no ``NaN``/``Infinity``, which an upstream may read otherwise.
    """
    if not body:
        return INVALID
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_object, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return INVALID


def json_field(doc: Any, parts: tuple[str, ...], ambiguous: type[errors.Ambiguous]) -> Any:
    """Value at a dotted path (list items by index), or None; ``ambiguous`` if a key on it is repeated."""
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            folded = part.casefold()
            if folded in getattr(cur, "repeated", _NONE):
                raise ambiguous(f"JSON key {part!r} appears more than once (letter case aside)")
            if part not in cur:
                if any(k.casefold() == folded for k in cur):
                    raise ambiguous(f"JSON key {part!r} is sent in another letter case")
                return None
            cur = cur[part]
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
        raw_query = request.raw_path.partition("?")[2]
        if _query_spellings(raw_query, lookup) != len(values):
            raise ambiguous(f"query parameter {lookup.name!r} is also sent in another spelling")
        if values and "\ufffd" in values[0] and not _query_value_utf8(raw_query, lookup.name):
            raise errors.InvalidQueryEncoding(f"query parameter {lookup.name!r} is not valid UTF-8")
        return values[0] if values else None
    if doc is None or doc is INVALID:
        return None
    return json_field(doc, lookup.parts, ambiguous)


def _query_spellings(raw_query: str, lookup: Lookup) -> int:
    """How many query keys some upstream would read as ``lookup.name`` (see the module docstring)."""
    folded = lookup.folded_name
    if not raw_query or ("%" not in raw_query and folded not in raw_query.casefold()):
        return 0  # the usual query: no escapes, and the name appears nowhere in it
    count = 0
    for item in raw_query.replace(";", "&").split("&"):
        key = unquote_plus(item.partition("=")[0]).strip().casefold()
        bracket = key.find("[")
        if bracket >= 0:
            key = key[:bracket].rstrip()
        count += key == folded
    return count


def _query_value_utf8(raw_query: str, name: str) -> bool:
    """Whether the raw value of query key ``name`` percent-decodes to UTF-8 (the decoded value replaced
    undecodable bytes with U+FFFD, which a client may also have sent as such, encoded)."""
    for item in raw_query.split("&"):
        key, _, value = item.partition("=")
        if unquote_plus(key) == name:
            try:
                unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True


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
        if abs(value) > MAX_SAFE_INTEGER:  # a double-precision reader would see another number
            return None
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
