"""Header rewriting between client, gateway and upstream, W3C trace context and request ids (pure).

Requests: hop-by-hop headers and every header named in ``Connection`` are dropped, as are the partner's
credentials (``Authorization``, ``X-Api-Key``), ``Host`` (the HTTP client sets the upstream's), framing
(``Content-Length``, ``Transfer-Encoding``: the proxy streams the body and the client library frames it),
``Expect`` (the gateway already answered any ``100-continue``) and ``Proxy`` (httpoxy).  The gateway then
appends the client address to ``X-Forwarded-For`` and itself to ``Via``, and sets ``X-Forwarded-Proto``,
``X-Forwarded-Host``, ``X-Partner-Id``, ``X-Request-Id`` and ``traceparent`` (replacing anything the client
sent, since the gateway is the edge that vouches for them).  ``tracestate`` and all other headers pass
through in order, repeated ones included.

Responses: the same hop-by-hop stripping and framing removal; ``Set-Cookie`` and other repeated headers,
``Content-Encoding`` and everything else pass untouched, and ``Via`` gets the gateway appended.
"""

from __future__ import annotations

import random
import re
import uuid

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

VIA = "1.1 loomgate"

_FRAMING = frozenset({"content-length", "transfer-encoding"})
_REQUEST_DROP = (
    HOP_BY_HOP
    | _FRAMING
    | {
        "authorization",
        "x-api-key",
        "host",
        "expect",
        "proxy",
        # set by the gateway below
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "via",
        "x-partner-id",
        "x-request-id",
        "traceparent",
    }
)
_RESPONSE_DROP = HOP_BY_HOP | _FRAMING | {"via"}

Headers = CIMultiDictProxy[str] | CIMultiDict[str]


def connection_tokens(headers: Headers) -> frozenset[str]:
    """Lowercase header names listed in every ``Connection`` header (they are hop-by-hop too)."""
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def _joined(headers: Headers, name: str, hop: frozenset[str]) -> str:
    """All values of a list-valued header as one line; empty if the previous hop marked it hop-by-hop."""
    if name.lower() in hop:
        return ""
    return ", ".join(v.strip() for v in headers.getall(name, ()) if v.strip())


def _copy_except(headers: Headers, drop: frozenset[str], hop: frozenset[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in drop or low in hop or low.startswith("proxy-"):
            continue
        out.add(name, value)
    return out


def forward_request_headers(
    incoming: Headers,
    *,
    client_ip: str,
    scheme: str,
    host: str,
    partner_id: str,
    request_id: str,
    traceparent: str,
) -> CIMultiDict[str]:
    """Headers to send upstream for a partner request (see the module docstring for the rules)."""
    hop = connection_tokens(incoming)
    out = _copy_except(incoming, _REQUEST_DROP, hop)
    xff = _joined(incoming, "X-Forwarded-For", hop)
    out["X-Forwarded-For"] = f"{xff}, {client_ip}" if xff else client_ip
    out["X-Forwarded-Proto"] = scheme
    if host:
        out["X-Forwarded-Host"] = host
    via = _joined(incoming, "Via", hop)
    out["Via"] = f"{via}, {VIA}" if via else VIA
    out["X-Partner-Id"] = partner_id
    out["X-Request-Id"] = request_id
    out["traceparent"] = traceparent
    return out


def response_headers(upstream: Headers) -> CIMultiDict[str]:
    """Headers to send the client for an upstream response; framing is left to the proxy."""
    hop = connection_tokens(upstream)
    out = _copy_except(upstream, _RESPONSE_DROP, hop)
    via = _joined(upstream, "Via", hop)
    out["Via"] = f"{via}, {VIA}" if via else VIA
    return out


# ------------------------------------------------------------------------------------ W3C trace context

_LOWER_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _is_hex(s: str, length: int) -> bool:
    return len(s) == length and all(c in _LOWER_HEX for c in s)


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` from a traceparent header, or None if it must be ignored.

    Version 00 must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``; higher versions (except the invalid ``ff``)
    may append fields after another ``-``, and their first four fields are read as version 00.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if len(value) < 55:
        return None
    version = value[:2]
    if not _is_hex(version, 2) or version == "ff":
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if not (_is_hex(trace_id, 32) and _is_hex(parent_id, 16) and _is_hex(flags, 2)):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero."""
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    return f"{random.getrandbits(64) or 1:016x}"


def format_traceparent(trace_id: str, span_id: str, flags: str | int = "01") -> str:
    """A version-00 traceparent; ``flags`` as two hex digits or an int (0x01 = sampled)."""
    f = f"{flags & 0xFF:02x}" if isinstance(flags, int) else flags
    return f"00-{trace_id}-{span_id}-{f}"


# -------------------------------------------------------------------------------------------- request id

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The client's ``X-Request-Id`` if it is 1-128 characters of ``[A-Za-z0-9._:-]``, else a new one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex
