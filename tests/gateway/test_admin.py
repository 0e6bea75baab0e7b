"""The admin listener: probes, token and cookie auth, login form, stats, JSON errors."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from typing import Any

from aiohttp import web

from gateway.admin import COOKIE_NAME, SESSION_SECONDS, AdminAuth
from gateway.testing import ADMIN_TOKEN, RecordingUpstream, Stack, make_upstream, standard_config

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _admin(stack: Stack, path: str) -> str:
    return stack.gw.admin_url + path


async def _get(stack: Stack, path: str, **kw: Any) -> tuple[int, Any]:
    async with stack.http.get(_admin(stack, path), allow_redirects=False, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_admin_listens_on_its_own_port(stack: Stack) -> None:
    assert stack.gw.admin_url != stack.gw.partner_url
    # partner routes are not served on the admin port and vice versa
    status, body = await _get(stack, "/v1/misc/x", headers=BEARER)
    assert status == 404 and body["error"]["code"] == "route_not_found"
    async with stack.request("GET", "/healthz") as r:
        assert r.status == 404


async def test_healthz_needs_no_auth(stack: Stack) -> None:
    assert await _get(stack, "/healthz") == (200, {"status": "ok"})


async def test_readyz_ready_when_upstreams_connect(stack: Stack) -> None:
    status, body = await _get(stack, "/readyz")
    assert status == 200
    assert body["status"] == "ready" and body["checks"] == {"upstream:api": "ok"}


async def test_readyz_lists_what_is_not_ready(make_stack) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]

    def config(url: str) -> Any:
        cfg = standard_config(url)
        dead = make_upstream("dead", f"http://127.0.0.1:{dead_port}")
        return dataclasses.replace(cfg, upstreams=(*cfg.upstreams, dead))

    stack = await make_stack(config=config)
    status, body = await _get(stack, "/readyz")
    assert status == 503
    assert body["status"] == "not_ready" and body["not_ready"] == ["upstream:dead"]
    assert body["checks"]["upstream:api"] == "ok"
    assert body["checks"]["upstream:dead"].startswith("connect failed")


async def test_readyz_not_ready_while_a_circuit_is_open(make_stack) -> None:
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=502)

    up = RecordingUpstream()
    up.on("/v1/misc/bad", failing)
    stack = await make_stack(up)
    for _ in range(3):
        async with stack.request("GET", "/v1/misc/bad") as r:
            assert r.status == 502
    status, body = await _get(stack, "/readyz")
    assert status == 503 and body["not_ready"] == ["upstream:api"]
    assert "circuit open" in body["checks"]["upstream:api"]
    status, stats = await _get(stack, "/api/stats", headers=BEARER)
    assert status == 200 and stats["upstreams"]["api"]["circuit"] == "open"


async def test_everything_else_needs_the_token(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        status, body = await _get(stack, "/api/stats", headers=headers)
        assert status == 401, headers
        assert body["error"]["code"] == "unauthorized"
        assert ADMIN_TOKEN not in str(body)
    status, body = await _get(stack, "/no-such-page")
    assert status == 401  # unknown paths do not reveal themselves before auth
    status, body = await _get(stack, "/no-such-page", headers=BEARER)
    assert status == 404 and body["error"]["code"] == "route_not_found"
    # the token is never accepted from the URL
    status, _ = await _get(stack, f"/api/stats?token={ADMIN_TOKEN}")
    assert status == 401


async def test_stats_report_inflight_and_circuits(make_stack) -> None:
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    up = RecordingUpstream()
    up.on("/v1/misc/hold", hold)
    stack = await make_stack(up)
    pending = [asyncio.ensure_future(stack.request("GET", "/v1/misc/hold")) for _ in range(3)]
    for _ in range(100):
        if stack.up.hits == 3:
            break
        await asyncio.sleep(0.02)
    status, stats = await _get(stack, "/api/stats", headers=BEARER)
    assert status == 200
    assert stats["inflight"] == 3 and stats["draining"] is False
    assert stats["upstreams"] == {"api": {"circuit": "closed", "consecutive_failures": 0}}
    release.set()
    for resp in await asyncio.gather(*pending):
        assert resp.status == 200
        resp.release()
    status, stats = await _get(stack, "/api/stats", headers=BEARER)
    assert stats["inflight"] == 0 and stats["requests_total"] == 3


async def test_method_not_allowed_is_json(stack: Stack) -> None:
    async with stack.http.delete(_admin(stack, "/api/stats"), headers=BEARER) as r:
        assert r.status == 405
        assert (await r.json())["error"]["code"] == "method_not_allowed"
        assert "GET" in r.headers["Allow"]


# --------------------------------------------------------------------------------------------- login


async def test_login_form_sets_a_strict_httponly_cookie_that_is_not_the_token(stack: Stack) -> None:
    status, page = await _get(stack, "/login")
    assert status == 200 and 'type="password"' in page and 'method="post"' in page
    async with stack.http.post(
        _admin(stack, "/login"), data={"token": ADMIN_TOKEN, "next": "/api/stats"}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/api/stats"
        set_cookie = r.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    assert ADMIN_TOKEN not in set_cookie
    value = re.match(rf"{COOKIE_NAME}=([^;]+)", set_cookie).group(1)  # type: ignore[union-attr]
    status, stats = await _get(stack, "/api/stats", headers={"Cookie": f"{COOKIE_NAME}={value}"})
    assert status == 200 and "upstreams" in stats
    status, _ = await _get(stack, "/api/stats", headers={"Cookie": f"{COOKIE_NAME}={value[:-1]}x"})
    assert status == 401


async def test_wrong_login_is_401_and_next_cannot_leave_the_site(stack: Stack) -> None:
    async with stack.http.post(_admin(stack, "/login"), data={"token": "nope"}, allow_redirects=False) as r:
        assert r.status == 401
        assert "Set-Cookie" not in r.headers
        assert "Wrong admin token" in await r.text()
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        async with stack.http.post(
            _admin(stack, "/login"), data={"token": ADMIN_TOKEN, "next": evil}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/", evil


async def test_browsers_without_a_session_are_sent_to_the_login_form(stack: Stack) -> None:
    async with stack.http.get(
        _admin(stack, "/api/stats"), headers={"Accept": "text/html"}, allow_redirects=False
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/login?next=/api/stats"


async def test_logout_clears_the_cookie(stack: Stack) -> None:
    async with stack.http.post(_admin(stack, "/logout"), headers=BEARER, allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Set-Cookie"].startswith(f'{COOKIE_NAME}=""')


def test_session_cookies_expire_and_depend_on_the_token() -> None:
    auth = AdminAuth("token-a")
    cookie = auth.issue_cookie(now=1_000_000.0)
    assert auth.cookie_ok(cookie, now=1_000_000.0 + SESSION_SECONDS - 1)
    assert not auth.cookie_ok(cookie, now=1_000_000.0 + SESSION_SECONDS + 1)
    assert not AdminAuth("token-b").cookie_ok(cookie, now=1_000_000.0)
    for junk in ("", ".", "abc.def", "99999999999999999.00", cookie.replace(".", "")):
        assert not auth.cookie_ok(junk, now=1_000_000.0)


async def test_without_a_configured_token_the_admin_api_is_closed(make_stack) -> None:
    from gateway.testing import make_config, standard_partners, standard_routes

    stack = await make_stack(
        config=lambda url: make_config(
            upstreams=[make_upstream("api", url)],
            routes=standard_routes(),
            partners=standard_partners(),
            admin_token="",
        )
    )
    status, body = await _get(stack, "/api/stats", headers={"Authorization": "Bearer "})
    assert status == 401 and "not configured" in body["error"]["message"]
    async with stack.http.post(_admin(stack, "/login"), data={"token": ""}, allow_redirects=False) as r:
        assert r.status == 401
    assert (await _get(stack, "/healthz"))[0] == 200


async def test_unparseable_admin_requests_get_json_errors(stack: Stack) -> None:
    from yarl import URL

    url = URL(stack.gw.admin_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"BROKEN\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b" 400 " in raw.split(b"\r\n", 1)[0] and b'"bad_request"' in raw
    assert stack.sink.records == []  # admin traffic is not partner traffic


async def test_admin_responses_forbid_framing_sniffing_caching_and_scripts(stack: Stack) -> None:
    for path, headers in (("/login", {}), ("/api/stats", BEARER), ("/api/stats", {}), ("/status", BEARER)):
        async with stack.http.get(_admin(stack, path), headers=headers, allow_redirects=False) as r:
            assert r.headers["X-Frame-Options"] == "DENY", path
            assert r.headers["X-Content-Type-Options"] == "nosniff", path
            assert r.headers["Cache-Control"] == "no-store", path
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
