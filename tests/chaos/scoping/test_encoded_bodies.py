"""Compressed request bodies reach the upstream byte for byte, still labelled; the gateway inflates only a
bounded private copy, and only on routes that read the JSON body."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.testing import ACME_KEY, RecordingUpstream, standard_config, wait_for_records

ACME = [("Authorization", f"Bearer {ACME_KEY}")]


@pytest.fixture
async def gw_up(upstream_server: Any, gateway: Any) -> tuple[Any, RecordingUpstream]:
    # The upstream records bodies as they arrive on the wire (no inflating on its side either).
    up = await upstream_server(RecordingUpstream(keep_body=1 << 20, auto_decompress=False))
    return await gateway(standard_config(up.url)), up


async def test_streamed_gzip_upload_is_forwarded_exactly_as_received(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    plain = os.urandom(200_000) + b"\0" * 300_000
    packed = gzip.compress(plain)
    headers = [*ACME, ("Content-Encoding", "gzip"), ("Content-Type", "application/octet-stream")]
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/upload", headers, packed))
    assert reply.status == 200, reply
    seen = up.requests[0]
    assert (seen.body_size, seen.body_sha256) == (len(packed), hashlib.sha256(packed).hexdigest())
    assert seen.headers["Content-Encoding"] == "gzip"
    assert seen.headers["Content-Length"] == str(len(packed))
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.status, rec.request_body_size) == (200, len(packed))


@pytest.mark.parametrize("coding", ["gzip", "deflate", "gzip, deflate"])
async def test_compressed_json_is_read_from_a_copy_and_forwarded_untouched(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace, coding: str
) -> None:
    gw, up = gw_up
    doc = json.dumps({"order": {"artisan_id": "a2"}, "changed_at": 1_700_000_000, "lines": ["x"] * 50})
    body = doc.encode()
    for one in coding.split(", "):
        body = gzip.compress(body) if one == "gzip" else zlib.compress(body)
    headers = [*ACME, ("Content-Type", "application/json"), ("Content-Encoding", coding)]
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", headers, body))
    assert reply.status == 200, reply
    seen = up.requests[0]
    assert seen.body == body
    assert seen.headers["Content-Encoding"] == coding
    rec = (await wait_for_records(gw.services.sink, 1))[0]
    assert (rec.artisan_id, rec.sync_lag_invalid) == ("a2", False)
    assert rec.sync_lag_ms is not None and rec.sync_lag_ms > 0


async def test_compressed_json_is_refused_when_it_scopes_to_another_artisan(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    body = gzip.compress(b'{"order": {"artisan_id": "a9"}}')
    headers = [*ACME, ("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", headers, body))
    assert (reply.status, reply.error_code) == (403, "forbidden")
    assert up.hits == 0


async def test_the_body_limit_applies_after_decompression(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    # Well under the orders route's 64 KiB limit compressed, 10 MiB once inflated.
    bomb = gzip.compress(b'{"order": {"artisan_id": "a1"}, "pad": "' + b"0" * (10 << 20) + b'"}')
    assert len(bomb) < 64 * 1024
    headers = [*ACME, ("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", headers, bomb))
    assert (reply.status, reply.error_code) == (413, "payload_too_large")
    assert up.hits == 0


async def test_an_encoding_the_gateway_cannot_read_is_415_only_where_it_must_read(
    gw_up: tuple[Any, RecordingUpstream], raw: SimpleNamespace
) -> None:
    gw, up = gw_up
    opaque = os.urandom(3000)  # stands for a brotli body: the gateway has no decoder for it
    headers = [*ACME, ("Content-Type", "application/json"), ("Content-Encoding", "br")]
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/orders", headers, opaque))
    assert reply.status == 415
    err = reply.json()["error"]
    assert (err["code"], err["source"]) == ("unsupported_content_encoding", "gateway")
    assert "br" in err["message"]
    assert up.hits == 0
    # A route that only streams the body does not need to read it: forwarded as is.
    reply = await raw.exchange(gw, raw.request_bytes("POST", "/v1/upload", headers, opaque))
    assert reply.status == 200
    assert up.requests[0].body == opaque and up.requests[0].headers["Content-Encoding"] == "br"
    records = await wait_for_records(gw.services.sink, 2)
    assert [r.status for r in records] == [415, 200]
