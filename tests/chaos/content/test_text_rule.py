"""Bytes that are not UTF-8 in any recorded header, and JSON strings with lone surrogate escapes, sent on raw
sockets to a gateway with real telemetry: such headers are refused (400 ``invalid_header_encoding``, they
could not be forwarded as received) and the JSON call gets its normal answer; either call is stored with
each bad byte (or lone surrogate) as U+FFFD, and every later call is stored too; nothing is spooled or
dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from gateway.testing import GLOBEX_KEY, standard_config

AUTH = f"Authorization: Bearer {GLOBEX_KEY}\r\n".encode()
R = "\ufffd"
GOOD = 12


def get(path: bytes, rid: bytes, *headers: bytes, key: bool = True) -> bytes:
    return (b"GET " + path + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers)
            + b"X-Request-Id: " + rid + b"\r\n" + (AUTH if key else b"") + b"Connection: close\r\n\r\n")


def error_code(answer: bytes) -> str:
    return str(json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"])


def post_json(path: bytes, rid: bytes, body: bytes) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n" % len(body) + b"X-Request-Id: " + rid + b"\r\n" + AUTH
            + b"Connection: close\r\n\r\n" + body)


async def test_bad_bytes_and_lone_surrogates_are_recorded_as_replacement_characters(
    tmp_path: Path, content: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server()
    gw = await telemetry_gateway(standard_config(up.url, telemetry=content.telemetry(tmp_path)))

    status, answer = await content.send_raw(gw, get(
        b"/v1/shop", b"bad-headers", b"Host: ex\xffample", b"User-Agent: ua\xfe\xc3(",
        b"X-Artisan-Id: art\xff1", b"X-Other: o\xff"))
    assert status == 400 and error_code(answer) == "invalid_header_encoding", answer
    body = b'{"order": {"artisan_id": "a\\ud800b"}, "changed_at": 1}'  # a JSON escape of a lone surrogate
    status, answer = await content.send_raw(gw, post_json(b"/v1/orders", b"bad-json", body))
    assert status == 200, answer
    # no API key needed: the header bytes are refused, and recorded, before any key is asked for
    status, answer = await content.send_raw(gw, get(
        b"/v1/shop", b"bad-nokey", b"Host: h\xff", b"User-Agent: \xc3\xff", key=False))
    assert status == 400 and error_code(answer) == "invalid_header_encoding", answer
    # valid UTF-8 beyond ASCII is text, recorded and forwarded exactly as sent
    status, answer = await content.send_raw(gw, get(
        b"/v1/shop", b"utf8-ok", b"Host: gw.test", "User-Agent: café ☕".encode(), b"X-Artisan-Id: a1"))
    assert status == 200, answer

    for i in range(GOOD):
        async with http.get(URL(gw.partner_url + "/v1/artisans/a1/listings"),
                            headers={"Authorization": f"Bearer {GLOBEX_KEY}",
                                     "X-Request-Id": f"good-{i:02d}"}) as r:
            assert r.status == 200

    rids = ["bad-headers", "bad-json", "bad-nokey", "utf8-ok", *(f"good-{i:02d}" for i in range(GOOD))]
    await content.settle(gw)
    got: dict[str, tuple[Any, ...]] = {}

    async def all_stored() -> bool:
        got.update(await content.rows_by_request(gw, rids))
        return len(got) == len(rids)

    await content.wait_for(all_stored, 30.0, "every call's row in otel_traces")
    # refused before the artisan id is read: the record has none, and its Host and User-Agent made valid
    assert got["bad-headers"] == (f"ex{R}ample", f"ua{R}{R}(", "", "400")
    assert got["bad-json"][2] == f"a{R}b"
    assert got["bad-nokey"][:2] == (f"h{R}", f"{R}{R}") and got["bad-nokey"][3] == "400"
    assert got["utf8-ok"][:3] == ("gw.test", "café ☕", "a1")
    assert all(got[f"good-{i:02d}"][3] == "200" for i in range(GOOD))

    # the bad bytes never reached the upstream, in any form; valid UTF-8 did, byte for byte
    seen = {r.headers.get("X-Request-Id"): r for r in up.requests}
    assert "bad-headers" not in seen and "bad-nokey" not in seen
    assert R not in "".join(v for r in up.requests for _, v in r.headers.items())
    assert seen["utf8-ok"].headers["User-Agent"] == "café ☕"

    c = content.tel_of(gw).counters()
    assert (c["dropped"], c["spooled"], c["dead_lettered"]) == (0, 0, 0), c
    status, ready = await content.admin_json(gw, "/readyz")
    assert status == 200, ready
