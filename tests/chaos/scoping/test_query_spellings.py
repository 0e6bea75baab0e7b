"""Upstream frameworks read a query key in more spellings than the gateway's own parser: ``;`` as a
separator (older Python, Java, Perl), ``key[]`` as the key (PHP, Rails), keys compared without letter case
(ASP.NET) or trimmed.  The artisan id under any of those spellings, beside the plain key or instead of it,
is ambiguous: the gateway would check one reading and the upstream act on another."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gateway.testing import ACME_KEY, RecordingUpstream, standard_config, wait_for_records

ACME = [("Authorization", f"Bearer {ACME_KEY}")]

# /v1/search reads the artisan from the query key "artisan" and does not require it; acme may act for
# a1 and a2, and a9 belongs to another partner.
SPELT_OTHERWISE = {
    "semicolon separator, alone": "/v1/search?x=1;artisan=a9",
    "semicolon separator, beside": "/v1/search?artisan=a1;artisan=a9",
    "brackets": "/v1/search?artisan[]=a9",
    "brackets, encoded, beside": "/v1/search?artisan=a1&artisan%5B%5D=a9",
    "indexed brackets": "/v1/search?artisan[0]=a9",
    "letter case": "/v1/search?Artisan=a9",
    "letter case, beside": "/v1/search?artisan=a1&ARTISAN=a9",
    "padded key": "/v1/search?artisan+=a9",
    "padded key, encoded, beside": "/v1/search?artisan=a1&%20artisan=a9",
    "escaped letters, alone": "/v1/search?%41rtisan=a9",
}


@pytest.mark.parametrize("case", list(SPELT_OTHERWISE), ids=list(SPELT_OTHERWISE))
async def test_the_artisan_key_in_another_spelling_is_refused_before_the_upstream(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace, case: str
) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    reply = await raw.exchange(gw, raw.request_bytes("GET", SPELT_OTHERWISE[case], ACME))
    assert reply.status == 400, reply
    err = reply.json()["error"]
    assert (err["code"], err["source"]) == ("ambiguous_artisan", "gateway")
    assert "artisan" in err["message"]
    assert up.hits == 0
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.status, rec.error_type, rec.artisan_id) == (400, "ambiguous_artisan", "")


async def test_other_keys_and_one_plain_artisan_key_still_pass(
    upstream_server: Any, gateway: Any, raw: SimpleNamespace
) -> None:
    up: RecordingUpstream = await upstream_server()
    gw = await gateway(standard_config(up.url))
    target = "/v1/search?%61rtisan=a1&artisans=x;artisan_name=y&q[]=z&Q=w"
    reply = await raw.exchange(gw, raw.request_bytes("GET", target, ACME))
    assert reply.status == 200, reply
    assert up.requests[0].raw_path == target
    reply = await raw.exchange(gw, raw.request_bytes("GET", "/v1/search?q=1", ACME))
    assert reply.status == 200, reply
    records = await wait_for_records(gw.services.sink, 2)
    assert [r.artisan_id for r in records] == ["a1", ""]
