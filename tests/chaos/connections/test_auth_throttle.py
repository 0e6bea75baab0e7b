"""Failed authentication is throttled per client address, on the partner and the admin listener.

A guesser gets ``auth_failure_burst`` wrong answers, then 429 ``auth_throttled`` with Retry-After for every
request until its bucket refills -- a right key included, so a throttled guess reveals nothing.  Other
addresses (127.0.0.2 here, a second loopback address) are not affected.  Real gateway, real HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from collectors.record import ListSink
from gateway.config import Config, Limits
from gateway.server import RunningGateway
from gateway.testing import GLOBEX_KEY, RecordingUpstream, standard_config, wait_for_records

BURST = 5
PATH = "/v1/artisans/a1/listings"


def _config(up: RecordingUpstream, *, rate: float = 0.01, token: str = "") -> Config:
    cfg = standard_config(up.url)
    limits = dataclasses.replace(Limits(), auth_failure_burst=BURST, auth_failure_rate=rate)
    cfg = dataclasses.replace(cfg, limits=limits)
    if token:
        cfg = dataclasses.replace(cfg, admin_listener=dataclasses.replace(cfg.admin_listener, token=token))
    return cfg


def _client(local: str = "127.0.0.1") -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(local, 0), force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def _get(client: aiohttp.ClientSession, url: str, key: str) -> tuple[int, Mapping[str, str], Any]:
    async with client.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
        body = await resp.json(content_type=None)
        return resp.status, resp.headers, body


async def test_partner_guesses_are_throttled_per_address_with_a_record_each(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
) -> None:
    up = await upstream_server()
    sink = ListSink()
    gw = await gateway(_config(up), sink=sink)
    url = gw.partner_url + PATH
    guesses = 40
    async with _client() as client:
        answers = [await _get(client, url, f"guess-{i:04d}") for i in range(guesses)]
        right_key = await _get(client, url, GLOBEX_KEY)  # same address, while throttled
    statuses = [status for status, _, _ in answers]
    assert statuses == [401] * BURST + [429] * (guesses - BURST)
    for _, headers, body in answers[BURST:]:
        err = body["error"]
        assert (err["code"], err["source"]) == ("auth_throttled", "gateway")
        assert err["request_id"] and headers["X-Request-Id"] == err["request_id"]
        assert int(headers["Retry-After"]) >= 1
    assert right_key[0] == 429 and right_key[2]["error"]["code"] == "auth_throttled"
    assert up.requests == []  # nothing reached the upstream

    async with _client("127.0.0.2") as other:  # another address: its own bucket, a right key works
        status, _, _ = await _get(other, url, GLOBEX_KEY)
        assert status == 200
        status, _, body = await _get(other, url, "wrong-from-elsewhere")
        assert (status, body["error"]["code"]) == (401, "unauthorized")

    records = await wait_for_records(sink, guesses + 3)
    throttled = [r for r in records if r.error_type == "auth_throttled"]
    assert len(throttled) == guesses - BURST + 1
    assert {(r.status, r.error_source, r.partner_id, r.client_address) for r in throttled} == {
        (429, "gateway", "", "127.0.0.1")
    }
    ids = {body["error"]["request_id"] for _, _, body in answers[BURST:]}
    assert ids <= {r.request_id for r in throttled}


async def test_a_throttled_address_is_let_in_again_once_its_bucket_refills(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
) -> None:
    up = await upstream_server()
    gw = await gateway(_config(up, rate=4.0))
    url = gw.partner_url + PATH
    async with _client() as client:
        statuses = [(await _get(client, url, f"guess-{i}"))[0] for i in range(BURST + 20)]
        assert 429 in statuses  # far more guesses than the burst in far less than their refill time
        await asyncio.sleep(0.5)  # at 4 per second: at least one failure refilled
        status, _, _ = await _get(client, url, GLOBEX_KEY)
    assert status == 200


async def test_missing_keys_are_not_failures(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
) -> None:
    up = await upstream_server()
    gw = await gateway(_config(up))
    async with _client() as client:
        for _ in range(3 * BURST):
            async with client.get(gw.partner_url + PATH) as resp:
                assert resp.status == 401
        status, _, _ = await _get(client, gw.partner_url + PATH, GLOBEX_KEY)
    assert status == 200


async def test_admin_token_guesses_and_login_attempts_are_throttled(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
) -> None:
    up = await upstream_server()
    token = "a-long-enough-admin-token-0123456789"
    gw = await gateway(_config(up, token=token))
    stats = gw.admin_url + "/api/stats"
    async with _client() as client:
        bearer = [await _get(client, stats, f"wrong-{i}") for i in range(BURST + 3)]
        assert [s for s, _, _ in bearer] == [401] * BURST + [429] * 3
        _, headers, body = bearer[-1]
        assert body["error"]["code"] == "auth_throttled" and int(headers["Retry-After"]) >= 1
        assert headers["X-Request-Id"] == body["error"]["request_id"]
        status, _, body = await _get(client, stats, token)  # the right token, while throttled
        assert (status, body["error"]["code"]) == (429, "auth_throttled")
        async with client.get(gw.admin_url + "/healthz") as resp:  # probes stay open
            assert resp.status == 200

    async with _client("127.0.0.2") as browser:  # the login form, from another address
        for i in range(BURST):
            async with browser.post(gw.admin_url + "/login", data={"token": f"nope-{i}"}) as resp:
                assert resp.status == 401
        login = gw.admin_url + "/login"
        async with browser.post(login, data={"token": token}, allow_redirects=False) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "auth_throttled"

    async with _client("127.0.0.3") as other:  # a third address is unaffected
        status, _, _ = await _get(other, stats, token)
        assert status == 200
