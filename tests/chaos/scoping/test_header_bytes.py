"""What the gateway checks is what the upstream receives, down to the bytes of headers, path and query.

Raw sockets send bytes no HTTP client would; the upstream records ``request.raw_headers`` (the bytes on
its wire).  Header values that are not UTF-8 cannot be forwarded as received (aiohttp's client would drop
or refuse the bad bytes), so they are refused before the upstream, and the call is still stored in
ClickHouse with each bad byte as U+FFFD.  Valid UTF-8 goes through byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.testing import ACME_KEY, GLOBEX_KEY, standard_config, wait_for_records

R = "\ufffd"


def latin1(data: bytes) -> str:
    """Bytes as the str ``request_bytes`` writes back to exactly those bytes."""
    return data.decode("latin-1")


def raw_get(target: bytes, rid: bytes, *headers: bytes, host: bytes = b"gateway.test") -> bytes:
    """A GET with its own Host line and headers given as bytes (any byte at all)."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: " + host, *headers,
             b"X-Request-Id: " + rid, b"Connection: close"]  # fmt: skip
    return b"\r\n".join(lines) + b"\r\n\r\n"


def received(seen: Any, name: bytes) -> list[bytes]:
    """Values of header ``name`` (any letter case) as the upstream's wire carried them."""
    return [v for k, v in seen.raw_headers if k.lower() == name.lower()]


KEY = b"Authorization: Bearer " + GLOBEX_KEY.encode()

# (request id, target, headers, Host): each carries one header value that is not UTF-8.
BAD = [
    (b"bad-other", b"/v1/misc/x", [KEY, b"X-Other: a\xffb"], b"gateway.test"),
    (b"bad-agent", b"/v1/misc/x", [KEY, b"User-Agent: ua\xfe\xc3("], b"gateway.test"),
    (b"bad-host", b"/v1/misc/x", [KEY], b"ex\xffample"),
    (b"bad-artisan", b"/v1/shop", [KEY, b"X-Artisan-Id: art\xff1"], b"gateway.test"),
    (b"bad-dropped", b"/v1/misc/x", [KEY, b"X-Real-IP: 10.0.0.\xff"], b"gateway.test"),
    (b"bad-via", b"/v1/misc/x", [KEY, b"Via: 1.1 p\xffroxy"], b"gateway.test"),
    (b"bad-key", b"/v1/misc/x", [b"Authorization: Bearer k\xff"], b"gateway.test"),
    (b"bad-nokey", b"/v1/misc/x", [b"User-Agent: \xc3\xff"], b"h\xff"),
]


async def test_header_bytes_that_are_not_utf8_are_refused_and_stored_as_replacement_characters(
    upstream_server: Any, telemetry_gateway: Any, e2e: SimpleNamespace, raw: SimpleNamespace, tmp_path: Path
) -> None:
    up = await upstream_server()
    gw = await telemetry_gateway(standard_config(up.url, telemetry=e2e.telemetry(tmp_path / "store")))
    for rid, target, headers, host in BAD:
        reply = await raw.exchange(gw, raw_get(target, rid, *headers, host=host))
        assert reply.status == 400, (rid, reply.body)
        error = reply.json()["error"]
        assert (error["code"], error["source"], error["request_id"]) == (
            "invalid_header_encoding", "gateway", rid.decode()), error  # fmt: skip
        assert "not valid UTF-8" in error["message"]
    assert up.hits == 0, [s.raw_headers for s in up.requests]

    await e2e.settle(gw)
    rows = await e2e.rows(
        gw,
        "SELECT SpanAttributes['loomgate.request_id'] AS rid, SpanAttributes['http.response.status_code'],"
        " SpanAttributes['error.type'], SpanAttributes['server.address'],"
        " SpanAttributes['user_agent.original'] FROM otel_traces"
        " WHERE SpanKind = 'Server' ORDER BY rid",
    )
    got = {r[0]: r[1:] for r in rows}
    assert sorted(got) == sorted(rid.decode() for rid, *_ in BAD)
    assert all(v[:2] == ("400", "invalid_header_encoding") for v in got.values()), got
    assert got["bad-host"][2] == f"ex{R}ample"
    assert got["bad-agent"][3] == f"ua{R}{R}("
    assert got["bad-nokey"][2:] == (f"h{R}", f"{R}{R}")


async def test_utf8_header_values_reach_the_upstream_byte_for_byte(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    agent, other, host = "café ☕".encode(), "ünï ✓ 𝄞".encode(), "gw.tést".encode()
    reply = await raw.exchange(gw, raw_get(
        b"/v1/shop", b"utf8-ok", KEY, b"User-Agent: " + agent, b"X-Other: " + other,
        b"X-Artisan-Id: \xc3\xa41", host=host))  # fmt: skip
    assert reply.status == 200, reply.body
    seen = up.requests[0]
    assert received(seen, b"User-Agent") == [agent]
    assert received(seen, b"X-Other") == [other]
    assert received(seen, b"X-Artisan-Id") == ["ä1".encode()]
    assert received(seen, b"X-Forwarded-Host") == [host]
    assert received(seen, b"Forwarded") == [b'for=127.0.0.1;proto=http;host="' + host + b'"']
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.status, rec.artisan_id, rec.user_agent) == (200, "ä1", "café ☕")


async def test_query_value_read_for_a_decision_must_be_utf8(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    """The query is forwarded byte for byte; the artisan read from it must decode to one value only."""
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    auth = [("Authorization", f"Bearer {GLOBEX_KEY}")]
    for query in ("artisan=a%FF1", "artisan=a%C3%281", "x=1&artisan=%ED%A0%80"):  # %ED%A0%80: a surrogate
        reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/search?" + query, auth))
        assert reply.status == 400, (query, reply.body)
        assert reply.error_code == "invalid_query_encoding"
    assert up.hits == 0
    # U+FFFD sent as such, other keys' bad bytes and malformed escapes elsewhere are forwarded untouched
    for query in ("artisan=a%EF%BF%BD1", "artisan=a%C3%A41&other=%FF%zz", "artisan=a+1"):
        reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/search?" + query, auth))
        assert reply.status == 200, (query, reply.body)
        assert up.requests[-1].raw_path == "/v1/search?" + query
    records = await wait_for_records(gw.services.sink, 6)
    assert [r.artisan_id for r in records if r.status == 200] == [f"a{R}1", "aä1", "a 1"]


async def test_forwarded_path_is_the_matched_path(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    """Escapes that are not UTF-8 are refused; every accepted path reaches the upstream in the one
    canonical spelling that was matched (and recorded)."""
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    auth = [("Authorization", f"Bearer {ACME_KEY}")]
    for target in ("/v1/misc/%FF", "/v1/misc/a%C3", "/v1/misc/%ED%A0%80", "/v1/artisans/a%FF/listings"):
        reply = await raw.exchange(gw, raw.request_bytes("GET", target, auth))
        assert (reply.status, reply.error_code) == (400, "bad_path"), target
    assert up.hits == 0
    cases = {
        "/v1/misc/caf%c3%a9": "/v1/misc/caf%C3%A9",
        "/v1/misc/%7e%41": "/v1/misc/~A",
        "/v1/misc/x%20y/../z": "/v1/misc/z",
        "/v1/artisans/a%31/listings": "/v1/artisans/a1/listings",
    }
    for target, forwarded in cases.items():
        reply = await raw.exchange(gw, raw.request_bytes("GET", target, auth))
        assert reply.status == 200, (target, reply.body)
        assert up.requests[-1].raw_path == forwarded
    records = await wait_for_records(gw.services.sink, len(cases) + 4)
    assert [r.path for r in records if r.status == 200] == list(cases.values())
