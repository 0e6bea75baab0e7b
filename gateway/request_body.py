"""A private, decoded copy of a compressed request body, for routes that look into it (pure).

The partner listener does not decompress request bodies (``auto_decompress=False``): the upstream gets
the bytes exactly as the client sent them, still labelled with their ``Content-Encoding`` and length.
Only when a route must read the JSON body (artisan id, sync-lag time) does the gateway inflate a copy,
bounded by the route's ``max_body_size`` *after* decompression, so a small bomb cannot expand in memory.
``gzip`` (``x-gzip``), ``deflate`` (zlib-wrapped or raw) and ``identity`` are understood, in any stacked
order; any other coding gets 415, since the gateway cannot check what it cannot read.

Such a body must also be labelled as JSON (``application/json``, ``application/*+json``) or not at all:
upstreams choose their parser by ``Content-Type``, and a form-encoded body that happens to parse as JSON
would be checked as JSON and acted on as a form (415 ``unsupported_media_type``).
"""

from __future__ import annotations

import zlib
from typing import Any

from multidict import CIMultiDictProxy

from gateway import errors
from gateway.scoping import parse_json

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


def json_document(headers: CIMultiDictProxy[str], body: bytes, limit: int) -> Any:
    """The parsed JSON of a buffered request body (``scoping.INVALID`` if it is not JSON), read from a
    decoded copy when the body is compressed; 415 when it is labelled as something other than JSON."""
    ctype = headers.get("Content-Type")
    if ctype is not None and not _is_json(ctype):
        raise errors.UnsupportedMediaType(
            f"request body Content-Type {ctype.strip()[:64]!r} is not JSON on this route "
            "(the gateway reads its JSON body); send application/json"
        )
    codings = content_codings(headers.getall("Content-Encoding", ()))
    return parse_json(decoded_copy(body, codings, limit) if codings else body)


def _is_json(ctype: str) -> bool:
    media = ctype.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def content_codings(values: list[str]) -> list[str]:
    """The codings of every ``Content-Encoding`` header, in the order they were applied, lower case."""
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def decoded_copy(body: bytes, codings: list[str], limit: int) -> bytes:
    """``body`` with ``codings`` undone (last applied first); 413 past ``limit`` bytes, 415, or 400."""
    for coding in reversed(codings):
        if not body or coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, _GZIP, limit, coding)
        elif coding == "deflate":
            # RFC 9110's deflate is zlib-wrapped; some clients send raw deflate, told apart by the header.
            zlib_header = (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0
            wbits = _ZLIB if zlib_header else _RAW_DEFLATE
            body = _inflate(body, wbits, limit, coding)
        else:
            raise errors.UnsupportedEncoding(
                f"request body Content-Encoding {coding!r} is not supported on this route "
                "(the gateway reads its JSON body); use gzip, deflate or none"
            )
    return body


def _inflate(data: bytes, wbits: int, limit: int, coding: str) -> bytes:
    out = bytearray()
    try:
        while data:  # gzip allows several members one after another
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise errors.PayloadTooLarge(
                    f"request body is over the route's limit of {limit} bytes once decompressed"
                )
            if not d.eof:
                raise errors.BadRequest(f"request body is truncated {coding} data")
            data = d.unused_data if wbits == _GZIP else b""
    except zlib.error:
        raise errors.BadRequest(f"request body is not valid {coding} data") from None
    return bytes(out)
