"""The JSON body an upstream acts on must be the one the gateway read.

* Go's encoding/json (and others) match object keys without letter case, using Unicode simple folding
  (the long s, U+017F, is ``s``; the Kelvin sign, U+212A, is ``k``), the last match winning: keys that
  fold together are the same key.
* An upstream picks its body parser by ``Content-Type``: a form-encoded body that also parses as JSON would
  be checked as JSON and acted on as a form.
* Only strict JSON is read: UTF-8 without a byte-order mark, no ``NaN``/``Infinity``; and a numeric
  artisan id must survive a double-precision parser unchanged (at most 2**53 - 1)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gateway.testing import (
    ACME_KEY,
    make_config,
    make_partner,
    make_upstream,
    standard_config,
    standard_routes,
)

ACME = [("Authorization", f"Bearer {ACME_KEY}")]
JSON = ("Content-Type", "application/json")

FOLDED = {
    "key in another case": '{"order": {"artisan_id": "a1", "Artisan_Id": "a9"}}',
    "key with a long s": '{"order": {"artisan_id": "a1", "arti\u017fan_id": "a9"}}',
    "key with a long s, escaped": '{"order": {"artisan_id": "a1", "arti\\u017fan_id": "a9"}}',
    "parent in another case": '{"order": {"artisan_id": "a1"}, "ORDER": {"artisan_id": "a9"}}',
    "only another case": '{"order": {"ARTISAN_ID": "a9"}}',
}


@pytest.mark.parametrize("case", list(FOLDED), ids=list(FOLDED))
async def test_json_keys_that_fold_together_are_ambiguous(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace, case: str
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    body = FOLDED[case].encode()
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", [*ACME, JSON], body))
    assert reply.status == 400, reply
    assert reply.error_code == "ambiguous_artisan"
    assert up.hits == 0


NOT_JSON_TYPES = ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"]


@pytest.mark.parametrize("ctype", NOT_JSON_TYPES)
async def test_a_json_reading_route_refuses_a_body_labelled_otherwise(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace, ctype: str
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    # Valid JSON for the gateway (artisan a1), and a form whose order[artisan_id] is a9 for the upstream.
    body = b'{"order": {"artisan_id": "a1"}, "x": "&order[artisan_id]=a9&"}'
    reply = await raw.exchange(
        gw, raw.request_bytes("POST", "/v1/orders", [*ACME, ("Content-Type", ctype)], body)
    )
    assert reply.status == 415, reply
    err = reply.json()["error"]
    assert (err["code"], err["source"]) == ("unsupported_media_type", "gateway")
    assert "Content-Type" in err["message"]
    assert up.hits == 0


@pytest.mark.parametrize("ctype", [None, "application/json; charset=utf-8", "application/vnd.acme+json"])
async def test_json_media_types_and_an_unlabelled_body_are_read(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace, ctype: str | None
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    headers = [*ACME] if ctype is None else [*ACME, ("Content-Type", ctype)]
    body = b'{"order": {"artisan_id": "a2"}}'
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", headers, body))
    assert reply.status == 200, reply
    assert up.requests[0].body == body


NOT_STRICT_JSON = {
    "byte-order mark": b'\xef\xbb\xbf{"order": {"artisan_id": "a1"}}',
    "UTF-16": '{"order": {"artisan_id": "a1"}}'.encode("utf-16"),
    "UTF-16 without a mark": '{"order": {"artisan_id": "a1"}}'.encode("utf-16-le"),
    "NaN": b'{"order": {"artisan_id": "a1"}, "changed_at": NaN}',
    "Infinity": b'{"order": {"artisan_id": "a1"}, "changed_at": -Infinity}',
}


@pytest.mark.parametrize("case", list(NOT_STRICT_JSON), ids=list(NOT_STRICT_JSON))
async def test_only_strict_json_is_read(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace, case: str
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    reply = await raw.exchange(
        gw, raw.request_bytes("POST", "/v1/orders", [*ACME, JSON], NOT_STRICT_JSON[case])
    )
    assert reply.status == 400, reply
    err = reply.json()["error"]
    assert err["code"] == "bad_request" and "not valid JSON" in err["message"]
    assert up.hits == 0


async def test_a_numeric_artisan_id_past_double_precision_is_refused(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    up = await upstream_server()
    # 2**53 + 1 reads as 2**53 in a double-precision parser (JavaScript, many others): another artisan.
    partner = make_partner("numeric", ACME_KEY, artisans=("9007199254740993", "9007199254740991"))
    gw = await gateway(
        make_config(upstreams=[make_upstream("api", up.url)], routes=standard_routes(), partners=[partner])
    )
    unsafe, safe = (
        b'{"order": {"artisan_id": 9007199254740993}}',
        b'{"order": {"artisan_id": 9007199254740991}}',
    )
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", [*ACME, JSON], unsafe))
    assert (reply.status, reply.error_code) == (400, "artisan_id_missing"), reply
    assert up.hits == 0
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", [*ACME, JSON], safe))
    assert reply.status == 200, reply
