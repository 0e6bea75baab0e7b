"""A value the gateway decides on, carried twice (or padded), is refused before the upstream; every other
repeated header reaches the upstream with all its values, in order.

Requests are written by hand over raw sockets: aiohttp's client would merge the header spellings."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from gateway.testing import (
    ACME_KEY,
    GLOBEX_KEY,
    RecordingUpstream,
    standard_config,
    wait_for_records,
)

ACME = [("Authorization", f"Bearer {ACME_KEY}")]


@pytest.fixture
async def gw_up(upstream_server: Any, gateway: Any) -> tuple[Any, RecordingUpstream]:
    up = await upstream_server()
    return await gateway(standard_config(up.url)), up


def _orders(body: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    return "POST", "/v1/orders", [*ACME, ("Content-Type", "application/json")], body


def _shop(*headers: tuple[str, str]) -> tuple[str, str, list[tuple[str, str]], bytes]:
    return "GET", "/v1/shop", [*ACME, *headers], b""


AMBIGUOUS_ARTISAN = {
    # acme may act for a1 and a2 only; a9 belongs to another partner
    "header in two spellings": _shop(("x-artisan-id", "a1"), ("X-ARTISAN-ID", "a9")),
    "header repeated": _shop(("X-Artisan-Id", "a1"), ("X-Artisan-Id", "a9")),
    "header with underscores": _shop(("X-Artisan-Id", "a1"), ("X_Artisan_Id", "a9")),
    "same id twice, padded": _shop(("X-Artisan-Id", "a1"), ("x-artisan-id", "  a1")),
    "query key repeated": ("GET", "/v1/search?artisan=a1&artisan=a9", ACME, b""),
    "query key repeated, encoded": ("GET", "/v1/search?artisan=a1&artis%61n=a9", ACME, b""),
    "padded query value": ("GET", "/v1/search?artisan=%20a1", ACME, b""),
    "padded path value": ("GET", "/v1/artisans/a1%20/listings", ACME, b""),
    "JSON key repeated": _orders(b'{"order": {"artisan_id": "a9", "artisan_id": "a1"}}'),
    "JSON parent key repeated": _orders(b'{"order": {"artisan_id": "a9"}, "order": {"artisan_id": "a1"}}'),
    "JSON key repeated, escaped": _orders(b'{"order": {"artisan_id": "a9", "artisan\\u005fid": "a1"}}'),
    "padded JSON value": _orders(b'{"order": {"artisan_id": "a1 "}}'),
}  # fmt: skip


@pytest.mark.parametrize("case", list(AMBIGUOUS_ARTISAN), ids=list(AMBIGUOUS_ARTISAN))
async def test_artisan_id_carried_twice_is_refused_before_the_upstream(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace, case: str
) -> None:
    gw, up = gw_up
    method, target, headers, body = AMBIGUOUS_ARTISAN[case]
    reply = await raw.exchange(gw, raw.request_bytes(method, target, headers, body))
    assert reply.status == 400, reply
    err = reply.json()["error"]
    assert (err["code"], err["source"]) == ("ambiguous_artisan", "gateway")
    assert up.hits == 0
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.status, rec.error_type, rec.artisan_id) == (400, "ambiguous_artisan", "")


async def test_one_artisan_id_still_passes_exactly_as_checked(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/shop", [*ACME, ("x-artisan-id", "a1")]))
    assert reply.status == 200
    assert up.requests[0].headers.getall("X-Artisan-Id") == ["a1"]
    body = b'{"order": {"artisan_id": "a2"}, "x": {"y": 1}}'
    reply = await raw.exchange(gw, raw.request_bytes(*_orders(body)))
    assert reply.status == 200
    assert json.loads(up.requests[1].body)["order"]["artisan_id"] == "a2"
    records = await wait_for_records(gw.services.sink, 2)
    assert [r.artisan_id for r in records] == ["a1", "a2"]


AMBIGUOUS_CREDENTIALS = {
    "Authorization in two spellings": [("Authorization", f"Bearer {ACME_KEY}"),
                                       ("authorization", f"Bearer {GLOBEX_KEY}")],
    "X-Api-Key repeated": [("X-Api-Key", ACME_KEY), ("x-api-key", GLOBEX_KEY)],
    "X-Api-Key repeated, same key": [("X-Api-Key", ACME_KEY), ("X-API-KEY", ACME_KEY)],
    "Authorization and X-Api-Key differ": [*ACME, ("X-Api-Key", GLOBEX_KEY)],
    "Basic Authorization and X-Api-Key": [("Authorization", "Basic dXNlcjpwYXNz"), ("X-Api-Key", GLOBEX_KEY)],
}  # fmt: skip


@pytest.mark.parametrize("case", list(AMBIGUOUS_CREDENTIALS), ids=list(AMBIGUOUS_CREDENTIALS))
async def test_more_than_one_credential_is_refused(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace, case: str
) -> None:
    gw, up = gw_up
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/misc/x", AMBIGUOUS_CREDENTIALS[case]))
    assert reply.status == 400
    assert reply.error_code == "ambiguous_credentials"
    assert up.hits == 0
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.error_type, rec.partner_id) == ("ambiguous_credentials", "")


async def test_the_same_key_in_both_headers_is_one_credential(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    headers = [("Authorization", f"Bearer {GLOBEX_KEY}"), ("X-Api-Key", GLOBEX_KEY)]
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/misc/x", headers))
    assert reply.status == 200
    assert up.requests[0].headers["X-Partner-Id"] == "globex"


async def test_sync_lag_source_carried_twice_is_refused(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    headers = [*ACME, ("X-Source-Updated-At", "2026-01-01T00:00:00Z"), ("x-source-updated-at", "1700000000")]
    inventory = "/v1/artisans/a1/listings/l1/inventory"
    reply = await raw.exchange(gw, raw.request_bytes("PUT", inventory, headers, b"{}"))
    assert reply.status == 400
    assert reply.error_code == "ambiguous_sync_lag"
    body = b'{"order": {"artisan_id": "a1"}, "changed_at": 1700000000, "changed_at": 1800000000}'
    reply = await raw.exchange(gw, raw.request_bytes(*_orders(body)))
    assert reply.status == 400
    assert reply.error_code == "ambiguous_sync_lag"
    assert up.hits == 0


async def test_repeated_headers_reach_the_upstream_with_every_value_in_order(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    raw_headers: list[list[tuple[bytes, bytes]]] = []

    async def capture(request: web.Request) -> web.Response:
        raw_headers.append(list(request.raw_headers))
        return web.Response(text="ok")

    up = RecordingUpstream()
    up.on("/v1/misc/tags", capture)
    up = await upstream_server(up)
    gw = await gateway(standard_config(up.url))
    headers = [*ACME, ("X-Tag", "one"), ("x-tag", "two"), ("Accept", "text/plain"), ("X-TAG", "three"),
               ("Cache-Control", "no-cache"), ("cache-control", "no-store")]  # fmt: skip
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/misc/tags", headers))
    assert reply.status == 200
    (seen,) = raw_headers
    values = {}
    for name, value in seen:
        values.setdefault(name.lower(), []).append(value)
    assert values[b"x-tag"] == [b"one", b"two", b"three"]
    assert values[b"cache-control"] == [b"no-cache", b"no-store"]
    assert values[b"accept"] == [b"text/plain"]
