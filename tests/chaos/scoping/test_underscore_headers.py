"""A header spelt with underscores reads, to a CGI-style upstream (``HTTP_X_PARTNER_ID``), as the same
header spelt with dashes.  So a client may not reach the upstream under an underscore spelling of a name
the gateway drops or states itself: its own partner id, credentials, client address or a method override."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.testing import ACME_KEY, standard_config

UNDERSCORED = [
    ("X_Partner_Id", "globex"),  # the gateway's own statement of who called
    ("X_Request_Id", "forged"),
    ("X_HTTP_Method_Override", "DELETE"),  # the route allows GET only
    ("X_Real_IP", "10.9.8.7"),
    ("X_Forwarded_For", "10.9.8.7"),
    ("x_api_key", "a-second-key"),  # credentials never go upstream, in any spelling
    ("Proxy_Authorization", "Basic eDp5"),
    ("X-Original_URL", "/v1/artisans/a9/listings"),  # dashes and underscores mixed
]


async def test_underscore_spellings_of_dropped_headers_never_reach_the_upstream(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    headers = [("Authorization", f"Bearer {ACME_KEY}"), ("X-Artisan-Id", "a1"), *UNDERSCORED,
               ("X_Custom_Tag", "kept")]  # fmt: skip
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/shop", headers))
    assert reply.status == 200, reply
    seen = up.requests[0]
    names = {k.lower().replace("_", "-") for k in seen.headers}
    for name, value in UNDERSCORED:
        assert name not in seen.headers, name
        assert value not in str(list(seen.headers.values())), name
    assert seen.headers.getall("X-Partner-Id") == ["acme"]
    assert "x-http-method-override" not in names
    assert seen.headers["X_Custom_Tag"] == "kept"  # other underscore names are the upstream's business
