"""Header rewriting between client, gateway and upstream, W3C trace context and request ids (pure).

Requests: hop-by-hop headers and every header named in ``Connection`` are dropped, as are the partner's
credentials (``Authorization``, ``X-Api-Key``), ``Host`` (the HTTP client sets the upstream's), framing
(``Content-Length``, ``Transfer-Encoding``: the proxy streams the body and the client library frames it),
``Expect`` (the gateway already answered any ``100-continue``) and ``Proxy`` (httpoxy).

Headers an upstream might trust as facts about the client or the request are the gateway's to state, never
the client's (``SPOOFABLE``): the client's own ``Forwarded``, ``X-Real-IP``, ``X-Client-IP``,
``True-Client-IP``, ``CF-Connecting-IP`` and their kin, ``X-Forwarded-Port``/``-Prefix``/``-Server``, the
method overrides (``X-HTTP-Method-Override``, ``X-Method-Override``, ``X-HTTP-Method``) and the URL
rewrites (``X-Original-URL``, ``X-Rewrite-URL``) are dropped: the gateway checked one method and one path,
and that is what the upstream must act on.  The gateway then appends the client address to
``X-Forwarded-For`` and itself to ``Via``, and sets ``Forwarded`` (``for``/``proto``/``host`` of the real
peer), ``X-Real-IP``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``, ``X-Partner-Id``, ``X-Request-Id`` and
``traceparent`` (replacing anything the client sent, since the gateway is the edge that vouches for them).

A CGI-style upstream reads ``X_Partner_Id`` as ``X-Partner-Id`` (both become ``HTTP_X_PARTNER_ID``), so a
name spelt with underscores is dropped whenever its dashed spelling is: a client cannot restate the
partner id, its address, a method override or a second credential that way.

``tracestate`` and all other headers pass through in order, repeated ones included.  A name repeated in
different letter case is forwarded under the spelling of its first occurrence: aiohttp's client merges
request headers by exact spelling, so ``X-Tag`` then ``x-tag`` would otherwise reach the upstream as the
last value only.

Header bytes: a request whose headers hold any value that is not UTF-8 is refused before anything is
decided (``undecodable_header``; 400 ``invalid_header_encoding``), whether the header would be forwarded,
dropped or only read.  aiohttp's server turns each bad byte into a lone surrogate, and its client writes
values as UTF-8 and silently leaves surrogates out (``a\\xffb`` would reach the upstream as ``ab``), so
such a request cannot be forwarded as it was checked; and an upstream would read those bytes in its own
way (Latin-1, replacement characters) anyway.  Valid UTF-8 beyond ASCII is forwarded byte for byte.
Every header counts, the dropped ones included: ``Connection`` decides what is dropped, and
``X-Forwarded-For``, ``Via`` and ``Host`` feed what the gateway states.  Header names cannot carry such
bytes: the HTTP parser accepts only token characters there.

Responses: the same hop-by-hop stripping and framing removal; ``Set-Cookie`` and other repeated headers,
``Content-Encoding`` and everything else pass untouched, and ``Via`` gets the gateway appended.
"""

from __future__ import annotations

import random
import re

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
        "forwarded",
        "x-real-ip",
    }
)
# Claims about the client or the request only a trusted edge may make (see the module docstring).
SPOOFABLE: frozenset[str] = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
        "x-forwarded",
        "forwarded-for",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-url-scheme",
        "x-original-host",
        "x-host",
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-original-method",
        "x-envoy-external-address",
        "x-envoy-original-path",
        "x-envoy-internal",
    }
)
_REQUEST_DROP = _REQUEST_DROP | SPOOFABLE
_RESPONSE_DROP = HOP_BY_HOP | _FRAMING | {"via"}

Headers = CIMultiDictProxy[str] | CIMultiDict[str]
_NONE: frozenset[str] = frozenset()


def connection_tokens(headers: Headers) -> frozenset[str]:
    """Lowercase header names listed in every ``Connection`` header (they are hop-by-hop too)."""
    values = headers.getall("Connection", None)
    if not values:
        return _NONE
    if len(values) == 1 and "," not in values[0]:  # one token, usually keep-alive or close
        token = values[0].strip().lower()
        return frozenset((token,)) if token else _NONE
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def undecodable_header(headers: Headers) -> str | None:
    """The name of the first header whose value held bytes that are not UTF-8, else None.

    The server decodes such bytes as lone surrogates (surrogateescape), which UTF-8 cannot encode.
    """
    for value in headers.values():  # ASCII is the rule: one flag read per value
        if not value.isascii() and not _utf8(value):
            return next(name for name, v in headers.items() if not v.isascii() and not _utf8(v))
    return None


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rewrite(
    headers: Headers, drop: frozenset[str], collect: tuple[str, str], *, one_spelling: bool = False
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """One pass: the headers to keep, in order, and the values of the two list headers in ``collect``.

    Values of a collected header are dropped with it if the previous hop named it in ``Connection``.
    ``one_spelling`` (requests): every occurrence of a name is kept under the spelling of its first one,
    and a name spelt with underscores is dropped when its dashed spelling would be (see the module
    docstring); the underscore spelling is never collected into the gateway's own list headers.
    """
    hop = connection_tokens(headers)
    first, second = collect
    kept: list[tuple[str, str]] = []
    a: list[str] = []
    b: list[str] = []
    spelling: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if one_spelling and "_" in low and _dropped(low.replace("_", "-"), drop, hop):
            continue
        if low in drop or low.startswith("proxy-") or (hop and low in hop):
            if low == first and low not in hop:
                a.append(value.strip())
            elif low == second and low not in hop:
                b.append(value.strip())
            continue
        if one_spelling:
            name = spelling.setdefault(low, name)
        kept.append((name, value))
    return kept, a, b


def _dropped(low: str, drop: frozenset[str], hop: frozenset[str]) -> bool:
    return low in drop or low.startswith("proxy-") or low in hop


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _forwarded_pair(key: str, value: str) -> str:
    """``key=value`` of RFC 7239, the value quoted unless it is a token (IPv6 addresses are bracketed)."""
    if key == "for" and ":" in value and not value.startswith("["):
        value = f"[{value}]"
    if _TOKEN.fullmatch(value):
        return f"{key}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'


def forwarded_value(client_ip: str, scheme: str, host: str) -> str:
    """The gateway's own ``Forwarded`` element for the real peer (RFC 7239)."""
    parts = [_forwarded_pair("for", client_ip or "unknown"), _forwarded_pair("proto", scheme)]
    if host:
        parts.append(_forwarded_pair("host", host))
    return ";".join(parts)


def _append(values: list[str], own: str) -> str:
    if not values:  # the usual case: nobody before us
        return own
    prior = ", ".join(v for v in values if v)
    return f"{prior}, {own}" if prior else own


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
    kept, xff, via = _rewrite(incoming, _REQUEST_DROP, ("x-forwarded-for", "via"), one_spelling=True)
    kept.append(("X-Forwarded-For", _append(xff, client_ip)))
    kept.append(("Forwarded", forwarded_value(client_ip, scheme, host)))
    if client_ip:
        kept.append(("X-Real-IP", client_ip))
    kept.append(("X-Forwarded-Proto", scheme))
    if host:
        kept.append(("X-Forwarded-Host", host))
    kept.append(("Via", _append(via, VIA)))
    kept.append(("X-Partner-Id", partner_id))
    kept.append(("X-Request-Id", request_id))
    kept.append(("traceparent", traceparent))
    return CIMultiDict(kept)


def response_headers(upstream: Headers) -> CIMultiDict[str]:
    """Headers to send the client for an upstream response; framing is left to the proxy."""
    return CIMultiDict(response_header_items(upstream))


def response_header_items(upstream: Headers) -> list[tuple[str, str]]:
    """``response_headers`` as a list of pairs, for a caller that adds its own before building the mapping."""
    kept, via, _ = _rewrite(upstream, _RESPONSE_DROP, ("via", ""))
    kept.append(("Via", _append(via, VIA)))
    return kept


# ------------------------------------------------------------------------------------ W3C trace context

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` from a traceparent header, or None if it must be ignored.

    Version 00 must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``; higher versions (except the invalid ``ff``)
    may append fields after another ``-``, and their first four fields are read as version 00.
    """
    if not value:
        return None
    value = value.strip(" \t")
    m = _TRACEPARENT.match(value)
    if m is None:
        return None
    version, trace_id, parent_id, flags = m.groups()
    if version == "ff" or (version == "00" and len(value) != 55):
        return None
    if len(value) > 55 and value[55] != "-":
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
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)  # version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def request_id(incoming: str | None) -> str:
    """The client's ``X-Request-Id`` if it is 1-128 characters of ``[A-Za-z0-9._:-]``, else a new one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    # A random (version 4) UUID in hex, built without uuid.uuid4()'s per-call object overhead.
    bits = (random.getrandbits(128) & _UUID_CLEAR) | _UUID4_SET
    return f"{bits:032x}"
