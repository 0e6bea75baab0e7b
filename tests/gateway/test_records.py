"""The call record handed to telemetry: exactly one per request, every field filled, sync lag."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from yarl import URL

from gateway.proxy import artisan_value, parse_source_time_ms, sync_lag
from gateway.routing import normalize_path
from gateway.testing import ACME_KEY, GLOBEX_KEY, TINY_KEY, RecordingUpstream, Stack

# ------------------------------------------------------------------------------------- pure helpers


def test_source_times_in_every_accepted_form() -> None:
    ms = 1_700_000_000_123.0
    assert parse_source_time_ms(1_700_000_000.123) == pytest.approx(ms)
    assert parse_source_time_ms(1_700_000_000_123) == ms
    assert parse_source_time_ms("1700000000123") == ms
    assert parse_source_time_ms("1700000000.123") == pytest.approx(ms)
    assert parse_source_time_ms("2023-11-14T22:13:20.123Z") == pytest.approx(ms)
    assert parse_source_time_ms("2023-11-14T23:13:20.123+01:00") == pytest.approx(ms)
    assert parse_source_time_ms("2023-11-14T22:13:20.123") == pytest.approx(ms)  # naive = UTC
    for bad in ("", "yesterday", "nan", "inf", "-5", True, None, [], {"t": 1}, "9" * 80):
        assert parse_source_time_ms(bad) is None, bad


def test_sync_lag_clamps_small_skew_and_flags_large() -> None:
    assert sync_lag(10_000.0, 7_500.0, 2_000.0) == (2_500.0, False)
    assert sync_lag(10_000.0, 11_000.0, 2_000.0) == (0.0, False)
    assert sync_lag(10_000.0, 12_000.0, 2_000.0) == (0.0, False)
    assert sync_lag(10_000.0, 12_001.0, 2_000.0) == (None, True)


def test_artisan_values() -> None:
    assert artisan_value("a1") == "a1"
    assert artisan_value(" a1 ") == "a1"
    assert artisan_value(42) == "42"
    for bad in (None, "", "   ", True, 1.5, ["a1"], {"id": "a1"}, "x" * 257):
        assert artisan_value(bad) is None


# ------------------------------------------------------------------------------------ one per request


async def test_exactly_one_record_per_request_whatever_the_outcome(stack: Stack) -> None:
    calls = [
        ("GET", "/v1/artisans/a1/listings", ACME_KEY, 200),
        ("GET", "/v1/artisans/a1/listings", None, 401),
        ("GET", "/v1/artisans/a1/listings", "bogus", 401),
        ("GET", "/nowhere", ACME_KEY, 404),
        ("PUT", "/v1/artisans/a1/listings", ACME_KEY, 405),
        ("GET", "/v1/artisans/a9/listings", ACME_KEY, 403),
        ("GET", "/v1/shop", ACME_KEY, 400),
        ("GET", "/v1/a%2Fb", ACME_KEY, 400),
        ("GET", "/v1/misc/x", TINY_KEY, 200),
        ("GET", "/v1/misc/x", TINY_KEY, 200),
        ("GET", "/v1/misc/x", TINY_KEY, 429),
        ("POST", "/v1/orders", GLOBEX_KEY, 413),
    ]
    for i, (method, path, key, expected) in enumerate(calls):
        data = b"x" * 70_000 if expected == 413 else None
        async with stack.request(method, path, key=key, data=data) as r:
            assert r.status == expected, (method, path)
            request_id = r.headers["X-Request-Id"]
        records = await stack.records(i + 1)
        assert records[-1].request_id == request_id
    await_all = await stack.records(len(calls))
    assert len(await_all) == len(calls)  # and not one more
    assert [r.status for r in await_all] == [c[3] for c in calls]
    by_status = {r.status: r for r in await_all}
    assert by_status[401].partner_id == "" and by_status[401].error_type == "unauthorized"
    assert by_status[404].route_template == "" and by_status[404].partner_id == "acme"
    assert by_status[403].artisan_id == "a9" and by_status[403].upstream_span_id == ""
    assert by_status[429].error_type == "rate_limited" and by_status[429].partner_id == "tiny"
    for rec in await_all:
        if rec.status >= 400:
            assert rec.error_source == "gateway"
            assert rec.response_body_size > 0
            assert rec.upstream_status == 0 and rec.upstream_start_ns == 0


async def test_success_record_has_every_field(stack: Stack) -> None:
    before = time.time_ns()
    async with stack.request(
        "POST",
        "/v1/artisans/a2/listings?draft=1",
        data=b"q" * 1234,
        headers={"User-Agent": "shopsync/1.0", "X-Request-Id": "rid-42"},
    ) as r:
        body = await r.read()
    after = time.time_ns()
    rec = (await stack.records(1))[0]
    assert before <= rec.start_ns <= after and 0 < rec.duration_ns < after - before
    assert len(rec.trace_id) == 32 and len(rec.span_id) == 16 and len(rec.upstream_span_id) == 16
    assert rec.parent_span_id == ""
    assert (rec.method, rec.route_template, rec.route_name, rec.path) == (
        "POST",
        "/v1/artisans/{artisan_id}/listings",
        "listings",
        "/v1/artisans/a2/listings",
    )
    assert (rec.status, rec.error_type, rec.error_source, rec.upstream_status) == (200, "", "", 200)
    assert (rec.partner_id, rec.artisan_id, rec.upstream) == ("acme", "a2", "api")
    assert rec.start_ns <= rec.upstream_start_ns <= rec.start_ns + rec.duration_ns
    assert 0 < rec.upstream_duration_ns <= rec.duration_ns
    assert rec.sync_lag_ms is None and rec.sync_lag_invalid is False
    assert rec.server_address == URL(stack.url).raw_authority
    assert rec.client_address == "127.0.0.1"
    assert rec.user_agent == "shopsync/1.0"
    assert rec.request_body_size == 1234 and rec.response_body_size == len(body)
    assert (rec.request_id, rec.scheme) == ("rid-42", "http")
    # nothing secret in the record
    assert ACME_KEY not in repr(rec)


# ------------------------------------------------------------------------------------------- sync lag


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("make_value", "low_ms", "high_ms"),
    [
        (lambda now: str(now - 3.0), 2900, 4500),  # epoch seconds
        (lambda now: str(int((now - 3.0) * 1000)), 2900, 4500),  # epoch milliseconds
        (lambda now: _iso(datetime.fromtimestamp(now - 3.0, UTC)), 2900, 4500),  # ISO-8601
        (lambda now: str(now + 1.0), 0, 0),  # slightly ahead: within the 2 s skew -> 0
    ],
)
async def test_sync_lag_from_a_header(stack: Stack, make_value, low_ms: float, high_ms: float) -> None:
    value = make_value(time.time())
    async with stack.request(
        "PUT",
        "/v1/artisans/a1/listings/l9/inventory",
        json={"qty": 3},
        headers={"X-Source-Updated-At": value},
    ) as r:
        assert r.status == 200
    rec = (await stack.records(1))[0]
    assert rec.sync_lag_invalid is False
    assert rec.sync_lag_ms is not None and low_ms <= rec.sync_lag_ms <= high_ms


async def test_sync_lag_far_in_the_future_is_invalid_not_negative(stack: Stack) -> None:
    future = _iso(datetime.now(UTC) + timedelta(minutes=5))
    async with stack.request(
        "PUT", "/v1/artisans/a1/listings/l9/inventory", data=b"{}", headers={"X-Source-Updated-At": future}
    ) as r:
        assert r.status == 200
    rec = (await stack.records(1))[0]
    assert rec.sync_lag_ms is None and rec.sync_lag_invalid is True


async def test_sync_lag_from_a_json_field(stack: Stack) -> None:
    changed = int((time.time() - 1.5) * 1000)
    async with stack.request(
        "POST", "/v1/orders", key=GLOBEX_KEY, json={"order": {"artisan_id": "a7"}, "changed_at": changed}
    ) as r:
        assert r.status == 200
    rec = (await stack.records(1))[0]
    assert rec.sync_lag_ms is not None and 1400 <= rec.sync_lag_ms <= 3000
    assert rec.artisan_id == "a7" and rec.request_body_size > 0


async def test_sync_lag_only_when_the_upstream_accepted(make_stack) -> None:
    async def reject(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=409, text="conflict")

    up = RecordingUpstream()
    up.on("/v1/artisans/a1/listings/l1/inventory", reject)
    stack = await make_stack(up)
    stamp = str(time.time() - 2)
    async with stack.request(
        "PUT", "/v1/artisans/a1/listings/l1/inventory", data=b"{}", headers={"X-Source-Updated-At": stamp}
    ) as r:
        assert r.status == 409
    async with stack.request(
        "PUT", "/v1/artisans/a1/listings/l2/inventory", data=b"{}", headers={"X-Source-Updated-At": "soon"}
    ) as r:
        assert r.status == 200
    rejected, unreadable = await stack.records(2)
    assert (rejected.sync_lag_ms, rejected.sync_lag_invalid, rejected.upstream_status) == (None, False, 409)
    assert (unreadable.sync_lag_ms, unreadable.sync_lag_invalid) == (None, False)


async def test_upstream_5xx_passed_through_is_attributed_to_the_upstream(make_stack) -> None:
    up = RecordingUpstream()

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    async def refused(request: web.Request) -> web.Response:
        return web.Response(status=422, text="bad sku")

    up.on("/v1/misc/broken", broken)
    up.on("/v1/misc/refused", refused)
    stack = await make_stack(up)
    for path, expected in (("/v1/misc/broken", 503), ("/v1/misc/refused", 422)):
        async with stack.request("GET", path, key=TINY_KEY) as r:
            assert r.status == expected
            assert await r.text() in ("maintenance", "bad sku")  # the upstream's own body
    broken_rec, refused_rec = await stack.records(2)
    assert (broken_rec.status, broken_rec.error_type, broken_rec.error_source) == (503, "503", "upstream")
    # a 4xx from the upstream is the partner's problem, not an integration failure
    assert (refused_rec.status, refused_rec.error_type, refused_rec.error_source) == (422, "", "")


@pytest.mark.parametrize("tail", ["x" * 3000, "./" + "y" * 3000, "%7E" * 1000])
async def test_recorded_path_is_bounded_whatever_the_path(stack: Stack, tail: str) -> None:
    # a long path is answered (here 404: no route) and its record keeps the first 1,024 characters of the
    # normalised path, whether the path was already canonical or had to be normalised first
    async with stack.request("GET", "/v1/" + tail) as r:
        assert r.status == 404
    rec = (await stack.records(1))[0]
    assert rec.path == normalize_path("/v1/" + tail)[:1024]
