"""Headers an upstream would trust as facts about the client or the request are the gateway's to state:
what a client sends under those names never reaches the upstream."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.testing import ACME_KEY, standard_config, wait_for_records

SPOOFED = [
    ("Forwarded", "for=10.9.8.7;proto=https;host=admin.internal"),
    ("X-Real-IP", "10.9.8.7"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Original-URL", "/v1/artisans/a9/listings"),
    ("X-Rewrite-URL", "/v1/artisans/a9/listings"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/internal"),
    ("X-Client-IP", "10.9.8.7"),
    ("True-Client-IP", "10.9.8.7"),
    ("CF-Connecting-IP", "10.9.8.7"),
    ("Fastly-Client-IP", "10.9.8.7"),
    ("X-Cluster-Client-IP", "10.9.8.7"),
    ("forwarded", "for=10.9.8.6"),  # a second spelling must not survive either
]


async def test_client_claims_are_dropped_and_the_gateway_states_the_real_peer(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    headers = [("Authorization", f"Bearer {ACME_KEY}"), *SPOOFED, ("X-Custom", "kept")]
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/artisans/a1/listings", headers))
    assert reply.status == 200
    seen = up.requests[0]
    assert seen.method == "GET" and seen.path == "/v1/artisans/a1/listings"
    for name, _ in SPOOFED:
        if name.lower() not in ("forwarded", "x-real-ip"):
            assert name not in seen.headers, name
    assert seen.headers.getall("Forwarded") == ["for=127.0.0.1;proto=http;host=gateway.test"]
    assert seen.headers.getall("X-Real-IP") == ["127.0.0.1"]
    assert "10.9.8.7" not in str(list(seen.headers.items()))
    assert seen.headers["X-Custom"] == "kept"
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.method, rec.status) == ("GET", 200)

