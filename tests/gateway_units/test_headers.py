"""Header rewriting, W3C trace context and request ids."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.headers import (
    HOP_BY_HOP,
    SPOOFABLE,
    connection_tokens,
    format_traceparent,
    forward_request_headers,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    request_id,
    response_headers,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def fwd(pairs: list[tuple[str, str]], **kw: str) -> CIMultiDict[str]:
    args = {
        "client_ip": "203.0.113.7",
        "scheme": "https",
        "host": "api.example.test",
        "partner_id": "shopco",
        "request_id": "req-1",
        "traceparent": TP,
    }
    args.update(kw)
    return forward_request_headers(CIMultiDictProxy(CIMultiDict(pairs)), **args)


def test_hop_by_hop_set() -> None:
    assert {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    } == HOP_BY_HOP


def test_request_strips_hop_by_hop_and_credentials() -> None:
    out = fwd(
        [
            ("Host", "api.example.test"),
            ("Connection", "keep-alive, Upgrade"),
            ("Keep-Alive", "timeout=5"),
            ("Upgrade", "websocket"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("Proxy-Authorization", "Basic abc"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Anything", "x"),
            ("Proxy", "http://evil.test:8080"),
            ("Authorization", "Bearer secret-key"),
            ("X-Api-Key", "secret-key"),
            ("Expect", "100-continue"),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ]
    )
    names = {k.lower() for k, _ in out.items()}
    for gone in (
        "host",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "proxy-authorization",
        "proxy-connection",
        "proxy-anything",
        "proxy",
        "authorization",
        "x-api-key",
        "expect",
    ):
        assert gone not in names, gone
    assert out["Accept"] == "application/json"
    assert out["Content-Type"] == "application/json"
    assert "secret-key" not in repr(out)


def test_connection_named_headers_stripped_case_insensitively() -> None:
    out = fwd(
        [
            ("Connection", "close, X-Internal-Token"),
            ("connection", " x-other ,, "),
            ("x-internal-token", "t"),
            ("X-Other", "o"),
            ("X-Kept", "k"),
        ]
    )
    assert "X-Internal-Token" not in out
    assert "X-Other" not in out
    assert out["X-Kept"] == "k"


def test_connection_tokens() -> None:
    h = CIMultiDict([("Connection", "Close, X-A"), ("Connection", "x-b")])
    assert connection_tokens(h) == frozenset({"close", "x-a", "x-b"})
    assert connection_tokens(CIMultiDict()) == frozenset()


def test_repeated_headers_keep_order() -> None:
    out = fwd([("Accept", "a"), ("X-Tag", "1"), ("accept", "b"), ("X-Tag", "2"), ("Cookie", "c=1")])
    assert out.getall("Accept") == ["a", "b"]
    assert out.getall("X-Tag") == ["1", "2"]
    assert [k.lower() for k, _ in out.items()][:5] == ["accept", "x-tag", "accept", "x-tag", "cookie"]


def test_forwarded_headers_set() -> None:
    out = fwd([("Host", "api.example.test:8443")], host="api.example.test:8443", scheme="http")
    assert out["X-Forwarded-For"] == "203.0.113.7"
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "api.example.test:8443"
    assert out["Via"] == "1.1 loomgate"
    assert out["X-Partner-Id"] == "shopco"
    assert out["X-Request-Id"] == "req-1"
    assert out["traceparent"] == TP


def test_x_forwarded_for_appended_across_lines() -> None:
    out = fwd([("X-Forwarded-For", "198.51.100.1, 10.0.0.1"), ("X-Forwarded-For", "10.0.0.2")])
    assert out.getall("X-Forwarded-For") == ["198.51.100.1, 10.0.0.1, 10.0.0.2, 203.0.113.7"]


def test_via_appended() -> None:
    out = fwd([("Via", "1.0 fred"), ("Via", "1.1 edge")])
    assert out.getall("Via") == ["1.0 fred, 1.1 edge, 1.1 loomgate"]


def test_client_cannot_spoof_gateway_headers() -> None:
    out = fwd(
        [
            ("X-Partner-Id", "someone-else"),
            ("x-partner-id", "again"),
            ("X-Request-Id", "spoof"),
            ("X-Forwarded-Proto", "gopher"),
            ("X-Forwarded-Host", "evil"),
            ("traceparent", "00-11111111111111111111111111111111-2222222222222222-01"),
        ]
    )
    assert out.getall("X-Partner-Id") == ["shopco"]
    assert out.getall("X-Request-Id") == ["req-1"]
    assert out.getall("X-Forwarded-Proto") == ["https"]
    assert out.getall("X-Forwarded-Host") == ["api.example.test"]
    assert out.getall("traceparent") == [TP]


def test_tracestate_kept() -> None:
    out = fwd([("tracestate", "vendor=abc"), ("tracestate", "other=1")])
    assert out.getall("tracestate") == ["vendor=abc", "other=1"]


def test_connection_can_hide_incoming_xff() -> None:
    out = fwd([("Connection", "X-Forwarded-For"), ("X-Forwarded-For", "1.2.3.4")])
    assert out.getall("X-Forwarded-For") == ["203.0.113.7"]


def test_input_not_modified() -> None:
    src = CIMultiDict([("Authorization", "Bearer k"), ("Connection", "close")])
    forward_request_headers(
        src, client_ip="1", scheme="http", host="h", partner_id="p", request_id="r", traceparent=TP
    )
    assert list(src.items()) == [("Authorization", "Bearer k"), ("Connection", "close")]


def test_response_headers() -> None:
    up = CIMultiDictProxy(
        CIMultiDict(
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; HttpOnly"),
                ("Content-Encoding", "gzip"),
                ("Content-Length", "123"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "keep-alive, X-Upstream-Secret"),
                ("Keep-Alive", "timeout=5"),
                ("X-Upstream-Secret", "s"),
                ("Proxy-Authenticate", "Basic"),
                ("Trailer", "X-Sum"),
                ("Location", "/v1/other?x=%20"),
                ("Via", "1.1 upstream"),
            ]
        )
    )
    out = response_headers(up)
    assert out.getall("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert out["Content-Encoding"] == "gzip"
    assert out["Location"] == "/v1/other?x=%20"
    assert out["Content-Type"] == "text/plain"
    assert out.getall("Via") == ["1.1 upstream, 1.1 loomgate"]
    for gone in (
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "X-Upstream-Secret",
        "Proxy-Authenticate",
        "Trailer",
    ):
        assert gone not in out, gone


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_TOKEN, st.text(max_size=10)), max_size=15), st.lists(_TOKEN, max_size=4))
def test_forward_never_leaks_hop_or_credentials(pairs: list[tuple[str, str]], conn: list[str]) -> None:
    incoming = [*pairs, ("Connection", ", ".join(conn))] if conn else pairs
    out = fwd(incoming)
    names = [k.lower() for k, _ in out.items()]
    assert not set(names) & (HOP_BY_HOP | {"authorization", "x-api-key", "host", "content-length"})
    own = {"x-forwarded-for", "via", "x-partner-id", "x-request-id", "traceparent", "x-forwarded-proto",
           "forwarded", "x-real-ip"}
    assert not (set(names) & set(conn)) - own
    for name in own | {"x-forwarded-host"}:
        assert names.count(name) == 1
    # Every other header arrives, in order, with its value.
    dropped = HOP_BY_HOP | {"authorization", "x-api-key", "host", "content-length", "expect", "proxy"} | own
    dropped |= {"x-forwarded-host"} | set(conn) | SPOOFABLE
    kept = [(k, v) for k, v in pairs if k not in dropped and not k.startswith("proxy-")]
    assert [(k, v) for k, v in out.items() if k.lower() not in own | {"x-forwarded-host"}] == kept


# ----------------------------------------------------------------------------------------- traceparent


def test_parse_valid() -> None:
    assert parse_traceparent(TP) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert parse_traceparent(TP[:-2] + "00") == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "00")
    assert parse_traceparent(f"  {TP}\t") is not None  # optional whitespace around the value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        TP.upper(),
        TP.replace("4bf9", "4BF9"),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        TP + "-extra",  # version 00 must be exactly 55 characters
        TP + "0",
        TP[:-1],
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  # misplaced dash
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  # future version: needs '-' at 55
    ],
)
def test_parse_invalid(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_parse_future_version() -> None:
    base = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(base) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert parse_traceparent(base + "-what-the-future-brings") is not None


def test_new_ids() -> None:
    traces = {new_trace_id() for _ in range(200)}
    spans = {new_span_id() for _ in range(200)}
    assert len(traces) == 200 and len(spans) == 200
    for t in traces:
        assert len(t) == 32 and int(t, 16) != 0 and t == t.lower()
    for s in spans:
        assert len(s) == 16 and int(s, 16) != 0 and s == s.lower()


def test_format_round_trip() -> None:
    t, s = new_trace_id(), new_span_id()
    tp = format_traceparent(t, s, "01")
    assert parse_traceparent(tp) == (t, s, "01")
    assert format_traceparent(t, s, 0) == f"00-{t}-{s}-00"
    assert format_traceparent(t, s, 1) == f"00-{t}-{s}-01"


# ------------------------------------------------------------------------------------------- request id


@pytest.mark.parametrize("value", ["a", "abc-DEF_1.2:3", "x" * 128, "0e8f0f2c-6d1b-4a51-9e0d-7d3a3d1f8b11"])
def test_request_id_reused(value: str) -> None:
    assert request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 129, "a b", "a\nb", "a/b", "<script>", "é", "a,b"])
def test_request_id_replaced(value: str | None) -> None:
    out = request_id(value)
    assert out != value
    u = uuid.UUID(out)
    assert (u.version, u.variant) == (4, uuid.RFC_4122)
    assert out == u.hex
    assert request_id(value) != out  # fresh each time
