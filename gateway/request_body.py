"""A private, decoded copy of a compressed request body, for routes that look into it (pure).

The partner listener does not decompress request bodies (``auto_decompress=False``): the upstream gets
the bytes exactly as the client sent them, still labelled with their ``Content-Encoding`` and length.
Only when a route must read the JSON body (artisan id, sync-lag time) does the gateway inflate a copy,
bounded by the route's ``max_body_size`` *after* decompression, so a small bomb cannot expand in memory.
``gzip`` (``x-gzip``), ``deflate`` (zlib-wrapped or raw) and ``identity`` are understood, in any stacked
order; any other coding gets 415, since the gateway cannot check what it cannot read.
"""

from __future__ import annotations

import zlib

from gateway import errors

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


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
