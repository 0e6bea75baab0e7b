"""Partner-facing pipeline: auth, routing, rate limits, artisan scoping, path normalisation, JSON errors."""

from __future__ import annotations

import json
from typing import Any

from gateway.testing import ACME_KEY, GLOBEX_KEY, TINY_KEY, Stack


async def _error(resp: Any) -> dict[str, Any]:
    assert resp.content_type == "application/json"
    body = await resp.json()
    err = body["error"]
    assert set(err) >= {"code", "message", "request_id", "source"}
    assert err["request_id"] == resp.headers["X-Request-Id"]
    return err


# ------------------------------------------------------------------------------------------------ auth


async def test_missing_key_is_401_and_never_reaches_upstream(stack: Stack) -> None:
    async with stack.request("GET", "/v1/artisans/a1/listings", key=None) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        err = await _error(r)
        assert err["code"] == "unauthorized" and err["source"] == "gateway"
    assert stack.up.hits == 0


async def test_unknown_key_is_401_and_the_key_is_not_echoed(stack: Stack) -> None:
    async with stack.request("GET", "/v1/artisans/a1/listings", key="not-a-real-key-42") as r:
        assert r.status == 401
        text = await r.text()
    assert "not-a-real-key-42" not in text
    assert stack.up.hits == 0


async def test_x_api_key_header_authenticates(stack: Stack) -> None:
    async with stack.request(
        "GET", "/v1/artisans/a1/listings", key=None, headers={"X-Api-Key": ACME_KEY}
    ) as r:
        assert r.status == 200
    assert stack.up.hits == 1


async def test_auth_comes_before_routing_so_routes_cannot_be_probed(stack: Stack) -> None:
    async with stack.request("GET", "/no/such/route", key=None) as r:
        assert r.status == 401
    async with stack.request("GET", "/no/such/route", key="wrong") as r:
        assert r.status == 401
    async with stack.request("GET", "/no/such/route") as r:
        assert r.status == 404
        assert (await _error(r))["code"] == "route_not_found"


async def test_key_is_not_forwarded_and_partner_id_is(stack: Stack) -> None:
    async with stack.request("GET", "/v1/misc/x", key=None, headers={"X-Api-Key": GLOBEX_KEY}) as r:
        assert r.status == 200
    async with stack.request("GET", "/v1/misc/y") as r:
        assert r.status == 200
    first, second = stack.up.requests
    for seen in (first, second):
        assert "Authorization" not in seen.headers and "X-Api-Key" not in seen.headers
        assert GLOBEX_KEY not in repr(seen.headers) and ACME_KEY not in repr(seen.headers)
    assert first.headers["X-Partner-Id"] == "globex"
    assert second.headers["X-Partner-Id"] == "acme"


async def test_client_supplied_partner_id_is_replaced(stack: Stack) -> None:
    async with stack.request("GET", "/v1/misc/x", headers={"X-Partner-Id": "globex"}) as r:
        assert r.status == 200
    assert stack.up.requests[0].headers.getall("X-Partner-Id") == ["acme"]


# --------------------------------------------------------------------------------------------- routing


async def test_wrong_method_is_405_with_allow(stack: Stack) -> None:
    async with stack.request("PATCH", "/v1/artisans/a1/listings") as r:
        assert r.status == 405
        assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "HEAD", "POST", "DELETE"}
        assert (await _error(r))["code"] == "method_not_allowed"
    assert stack.up.hits == 0


async def test_head_is_allowed_where_get_is(stack: Stack) -> None:
    async with stack.request("HEAD", "/v1/artisans/a1/listings") as r:
        assert r.status == 200
    assert stack.up.requests[0].method == "HEAD"


async def test_asterisk_and_absolute_form_targets_get_json_errors(stack: Stack) -> None:
    import asyncio

    from yarl import URL

    url = URL(stack.url)
    for target in (b"*", b"http://evil.example/v1/artisans/a1/listings"):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            b"OPTIONS " + target + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ACME_KEY.encode()
        )
        writer.write(b"\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400", raw
        assert json.loads(body)["error"]["code"] == "bad_path"
    assert stack.up.hits == 0


# ------------------------------------------------------------------------------------ path traversal


async def test_dot_dot_is_resolved_before_scoping(stack: Stack) -> None:
    # acme may act for a1 and a2 only: climbing out of a1 into a3 must be judged as a3.
    for path in (
        "/v1/artisans/a1/../a3/listings",
        "/v1/artisans/a1/%2e%2e/a3/listings",
        "/v1/artisans/a1/%2E%2E/a3/listings",
        "/v1/artisans/a1/./../a3/listings",
    ):
        async with stack.request("GET", path) as r:
            assert r.status == 403, path
    assert stack.up.hits == 0


async def test_traversal_reaches_only_the_normalised_path(stack: Stack) -> None:
    async with stack.request("GET", "/v1/artisans/a3/../a2//listings") as r:
        assert r.status == 200
    assert stack.up.requests[0].raw_path == "/v1/artisans/a2/listings"


async def test_encoded_slash_backslash_and_root_escape_are_refused(stack: Stack) -> None:
    for path in (
        "/v1/artisans/a1%2F..%2Fa3/listings",
        "/v1/artisans/a1%2f..%2fa3/listings",
        "/v1/artisans/a1%5C..%5Ca3/listings",
        "/v1/../../etc/passwd",
        "/v1/artisans/a1/..;/a3/listings",
    ):
        async with stack.request("GET", path) as r:
            assert r.status == 400, path
            assert (await _error(r))["code"] == "bad_path"
    assert stack.up.hits == 0


async def test_double_slashes_collapse(stack: Stack) -> None:
    async with stack.request("GET", "//v1///artisans/a1/listings") as r:
        assert r.status == 200
    assert stack.up.requests[0].raw_path == "/v1/artisans/a1/listings"


# ----------------------------------------------------------------------------------------- rate limit


async def test_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    statuses = []
    for _ in range(4):
        async with stack.request("GET", "/v1/misc/x", key=TINY_KEY) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert (await _error(r))["code"] == "rate_limited"
    assert statuses[:2] == [200, 200]
    assert statuses[2:] == [429, 429]
    assert stack.up.hits == 2
    # other partners are unaffected
    async with stack.request("GET", "/v1/misc/x", key=GLOBEX_KEY) as r:
        assert r.status == 200


# ---------------------------------------------------------------------------------- artisan and scope


async def test_out_of_scope_artisan_is_403_and_upstream_never_sees_it(stack: Stack) -> None:
    async with stack.request("GET", "/v1/artisans/a1/listings") as r:
        assert r.status == 200
    before = stack.up.hits
    async with stack.request("POST", "/v1/artisans/zz/listings", data=b"payload") as r:
        assert r.status == 403
        err = await _error(r)
        assert err["code"] == "forbidden" and err["source"] == "gateway"
    assert stack.up.hits == before
    assert stack.up.hits_where(lambda s: "/zz/" in s.raw_path) == 0


async def test_artisan_from_header(stack: Stack) -> None:
    async with stack.request("GET", "/v1/shop", headers={"X-Artisan-Id": "a2"}) as r:
        assert r.status == 200
    async with stack.request("GET", "/v1/shop", headers={"X-Artisan-Id": "a9"}) as r:
        assert r.status == 403
    async with stack.request("GET", "/v1/shop") as r:
        assert r.status == 400
        assert (await _error(r))["code"] == "artisan_id_missing"
    assert stack.up.hits == 1


async def test_artisan_from_query_optional(stack: Stack) -> None:
    async with stack.request("GET", "/v1/search?artisan=a1&q=vase") as r:
        assert r.status == 200
    async with stack.request("GET", "/v1/search?artisan=a7") as r:
        assert r.status == 403
    async with stack.request("GET", "/v1/search?q=vase") as r:  # not required on this route
        assert r.status == 200
    assert stack.up.hits == 2


async def test_artisan_from_json_body(stack: Stack) -> None:
    body = {"order": {"artisan_id": "a2", "items": [1, 2]}}
    async with stack.request("POST", "/v1/orders", json=body) as r:
        assert r.status == 200
        echoed = await r.json()
    seen = stack.up.requests[0]
    assert json.loads(seen.body) == body  # the buffered body is forwarded intact
    assert echoed["body_size"] == len(json.dumps(body))
    async with stack.request("POST", "/v1/orders", json={"order": {"artisan_id": "a5"}}) as r:
        assert r.status == 403
    async with stack.request("POST", "/v1/orders", json={"order": {"artisan_id": 7}}) as r:
        assert r.status == 403  # numbers are ids too
    assert stack.up.hits == 1


async def test_invalid_or_missing_json_artisan_is_400(stack: Stack) -> None:
    cases = [
        (b'{"order": {"artisan_id": "a1"', "bad_request"),
        (b"not json at all", "bad_request"),
        (b"", "artisan_id_missing"),
        (b'{"order": {}}', "artisan_id_missing"),
        (b'{"order": {"artisan_id": true}}', "artisan_id_missing"),
        (b'{"order": {"artisan_id": ""}}', "artisan_id_missing"),
        (b'["a1"]', "artisan_id_missing"),
    ]
    for raw, code in cases:
        async with stack.request(
            "POST", "/v1/orders", data=raw, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400, raw
            assert (await _error(r))["code"] == code, raw
    assert stack.up.hits == 0


async def test_overlong_artisan_id_is_refused(stack: Stack) -> None:
    async with stack.request("GET", "/v1/shop", key=GLOBEX_KEY, headers={"X-Artisan-Id": "x" * 300}) as r:
        assert r.status == 400
    assert stack.up.hits == 0
