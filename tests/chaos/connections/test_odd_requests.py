"""Odd methods and request targets get the gateway's JSON error, an X-Request-Id and (partner listener) a
call record, like every other refused request: ``CONNECT`` in authority- and origin-form, absolute-form and
authority-form ``GET``, ``OPTIONS *``, unknown methods.  Raw sockets: HTTP clients will not send these."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable

import pytest
from yarl import URL

from collectors.record import ListSink
from gateway.server import RunningGateway
from gateway.testing import RecordingUpstream, standard_config, wait_for_records

TOKEN = "odd-requests-admin-token-0123456789"

ODD = [
    ("CONNECT example.com:443", 405, "method_not_allowed"),
    ("CONNECT /v1/search", 405, "method_not_allowed"),
    ("GET http://example.com/v1/search", 400, "bad_path"),
    ("GET example.com:443", 400, "bad_request"),
    ("OPTIONS *", 400, "bad_path"),
    ("BREW /v1/search", 400, "bad_request"),
]


async def _exchange(url: str, request_line: str, headers: str = "") -> bytes:
    u = URL(url)
    assert u.host is not None and u.port is not None
    reader, writer = await asyncio.open_connection(u.host, u.port)
    try:
        writer.write(f"{request_line} HTTP/1.1\r\nHost: example.com\r\n{headers}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15.0)
        fields = (h.partition(b":") for h in head.split(b"\r\n"))
        length = next(int(v) for k, _, v in fields if k.lower() == b"content-length")
        return head + await asyncio.wait_for(reader.readexactly(length), 15.0)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, json.loads(body)["error"]


@pytest.mark.parametrize(("line", "status", "code"), ODD)
async def test_partner_listener_answers_odd_requests_with_a_json_error_and_a_record(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
    line: str,
    status: int,
    code: str,
) -> None:
    up = await upstream_server()
    sink = ListSink()
    gw = await gateway(standard_config(up.url), sink=sink)
    got, headers, err = _parse(await _exchange(gw.partner_url, line))
    assert (got, err["code"], err["source"]) == (status, code, "gateway")
    assert err["message"] and err["request_id"] == headers["x-request-id"]
    assert headers["content-type"].startswith("application/json")
    (rec,) = await wait_for_records(sink, 1)
    assert (rec.status, rec.request_id) == (status, err["request_id"])
    assert up.requests == []


@pytest.mark.parametrize(("line", "status", "code"), ODD)
async def test_admin_listener_answers_odd_requests_with_a_json_error(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
    line: str,
    status: int,
    code: str,
) -> None:
    up = await upstream_server()
    cfg = standard_config(up.url)
    cfg = dataclasses.replace(cfg, admin_listener=dataclasses.replace(cfg.admin_listener, token=TOKEN))
    gw = await gateway(cfg)
    got, headers, err = _parse(await _exchange(gw.admin_url, line, f"Authorization: Bearer {TOKEN}\r\n"))
    assert 400 <= got < 500 and got == int(got)
    assert err["code"] and err["message"] and err["source"] == "gateway"
    assert err["request_id"] == headers["x-request-id"]
