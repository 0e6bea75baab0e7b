"""The admin listener: health and readiness probes, a login form, stats, and the features' admin routes.

Everything except ``/healthz``, ``/readyz``, ``/login`` and ``/static/*`` needs the admin token, either as
``Authorization: Bearer TOKEN`` (scripts) or as the ``loomgate_admin`` cookie the login form sets
(browsers).  The cookie never holds the token itself: it holds an expiry and an HMAC of it keyed by the
token, so it stops working when the token changes and reveals nothing about it.  It is HttpOnly and
SameSite=Strict (no cross-site requests carry it), Secure when served over HTTPS.  Tokens are compared in
constant time and never accepted in URLs.  Wrong tokens (bearer or ``/login``) are throttled per address
(``gateway.auth_throttle``): over the limit, 429 ``auth_throttled`` before any token is compared.

Errors are JSON (``gateway.errors`` shape); a browser asking for an HTML page without credentials is
sent to the login form instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from yarl import URL

from collectors import querylib
from collectors.store import WriterUnavailable
from gateway import admin_kpi, admin_metrics, admin_sla, errors, pages
from gateway.admin_telemetry import telemetry_unwritten
from gateway.app import PROXY_KEY
from gateway.appkeys import CONFIG_KEY, SERVICES_KEY
from gateway.auth_throttle import AuthThrottle
from gateway.config import Config
from gateway.fleet import FLEET_KEY, Fleet
from gateway.headers import request_id
from gateway.services import Services

COOKIE_NAME = "loomgate_admin"
SESSION_SECONDS = 12 * 3600
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login"})
PUBLIC_PREFIXES = ("/static/",)
READY_CHECK_TIMEOUT = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminAuth:
    """Checks the admin token and issues / verifies login cookies."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    @property
    def configured(self) -> bool:
        return bool(self._token)

    def token_ok(self, presented: str) -> bool:
        return self.configured and hmac.compare_digest(presented.encode(), self._token)

    def _mac(self, expires: int) -> str:
        return hmac.new(self._token, f"loomgate-admin:{expires}".encode(), hashlib.sha256).hexdigest()

    def issue_cookie(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        return f"{expires}.{self._mac(expires)}"

    def cookie_ok(self, value: str, now: float | None = None) -> bool:
        if not self.configured:
            return False
        expires_s, _, mac = value.partition(".")
        if not expires_s.isdigit() or len(expires_s) > 12:
            return False
        expires = int(expires_s)
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(mac.encode(), self._mac(expires).encode())

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        """The bearer token the request presents, if any."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def request_ok(self, request: web.Request) -> bool:
        token = self.bearer(request)
        if token is not None:
            return self.token_ok(token)
        cookie = request.cookies.get(COOKIE_NAME)
        return bool(cookie) and self.cookie_ok(cookie)


AUTH_KEY = web.AppKey("loomgate.admin_auth", AdminAuth)
# Wrong tokens (bearer or /login form) per address; cookies are not counted: their MAC cannot be guessed.
THROTTLE_KEY = web.AppKey("loomgate.admin_auth_throttle", AuthThrottle)


# ----------------------------------------------------------------------------------------- middlewares


def _json_error(exc: errors.GatewayError, request: web.Request) -> web.Response:
    return errors.error_response(exc, request_id(request.headers.get("X-Request-Id")))


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


class BadQueryParameter(errors.BadRequest):
    code = "bad_query_parameter"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's HTTP errors (404, 405, 400 …), the gateway's errors, bad query parameters (400) and an
    unavailable store (503) as the gateway's JSON errors: the one place the admin listener maps failures to
    answers."""
    try:
        return await handler(request)
    except errors.GatewayError as exc:
        return _json_error(exc, request)
    except querylib.QueryParamError as exc:
        return _json_error(BadQueryParameter(str(exc)), request)
    except WriterUnavailable as exc:  # the writer is restarting: the store answers again shortly
        return _json_error(admin_sla.StoreUnavailable(f"telemetry store unavailable: {exc}"), request)
    except web.HTTPException as exc:
        if exc.status < 400 or (exc.content_type or "").endswith("json"):
            raise
        if exc.status == 404:
            return _json_error(errors.NotFound(f"no admin endpoint {request.path}"), request)
        if exc.status == 405:
            allow = sorted(m for m in exc.headers.get("Allow", "").split(",") if m)
            return _json_error(
                errors.MethodNotAllowed(f"{request.method} is not allowed for {request.path}", allow), request
            )
        err = errors.GatewayError(exc.text or exc.reason)
        err.status, err.code, err.error_type = exc.status, exc.reason.lower().replace(" ", "_"), "admin"
        return _json_error(err, request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    auth = request.app[AUTH_KEY]
    throttle = request.app[THROTTLE_KEY]
    address = request.remote or ""
    try:
        throttle.check(address)  # before the token is compared: a throttled guess learns nothing
    except errors.AuthThrottled as exc:
        return _json_error(exc, request)
    if auth.request_ok(request):
        return await handler(request)
    if auth.configured and auth.bearer(request) is not None:
        throttle.failed(address)
    if _wants_html(request):
        raise web.HTTPSeeOther(URL("/login").with_query(next=request.path_qs))
    if not auth.configured:
        return _json_error(errors.Unauthorized("admin token is not configured; admin API disabled"), request)
    return _json_error(errors.Unauthorized("admin token required (Authorization: Bearer TOKEN)"), request)


# ------------------------------------------------------------------------------------------- probes


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _tcp_check(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port opens within the timeout, else why not."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return "connect timed out"
    except OSError as exc:
        return f"connect failed: {exc.strerror or type(exc).__name__}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def _telemetry_check(services: Services) -> str | None:
    try:
        ok = await asyncio.wait_for(services.telemetry.ready(), READY_CHECK_TIMEOUT)
        if not ok:
            return "telemetry store unreachable"
        return await asyncio.wait_for(telemetry_unwritten(services), READY_CHECK_TIMEOUT)
    except Exception as exc:
        return f"telemetry check failed: {type(exc).__name__}"


async def readyz(request: web.Request) -> web.Response:
    """200 when the gateway can serve: store reachable, upstreams connectable, no circuit open."""
    app = request.app
    services = app[SERVICES_KEY]
    proxy = app[PROXY_KEY]
    names: list[str] = []
    checks: list[Awaitable[str | None]] = []
    if services.telemetry is not None:
        names.append("telemetry")
        checks.append(_telemetry_check(services))
    for pool in proxy.upstreams.values():
        names.append(f"upstream:{pool.name}")
        if pool.breaker.state == "open":
            checks.append(_const(f"circuit open after {pool.breaker.consecutive_failures} failures"))
            continue
        host = pool.base.host or "127.0.0.1"
        port = pool.base.port or (443 if pool.base.scheme == "https" else 80)
        timeout = min(pool.config.timeouts.connect, READY_CHECK_TIMEOUT)
        checks.append(_tcp_check(host, port, timeout))
    results = await asyncio.gather(*checks)
    report = {name: (problem or "ok") for name, problem in zip(names, results, strict=True)}
    not_ready = [name for name, problem in zip(names, results, strict=True) if problem]
    if proxy.draining:
        report["gateway"] = "draining"
        not_ready.append("gateway")
    body = {"status": "not_ready" if not_ready else "ready", "checks": report, "not_ready": not_ready}
    return web.json_response(body, status=503 if not_ready else 200)


async def _const(value: str | None) -> str | None:
    return value


# --------------------------------------------------------------------------------------------- stats


async def stats(request: web.Request) -> web.Response:
    app = request.app
    proxy = app[PROXY_KEY]
    services = app[SERVICES_KEY]
    fleet = app.get(FLEET_KEY)
    if fleet is not None:  # loomgate serve --workers N: every worker together
        return web.json_response(await fleet.stats(proxy.draining))
    body: dict[str, Any] = {
        "inflight": proxy.inflight,
        "requests_total": proxy.requests_total,
        "draining": proxy.draining,
        "upstreams": {
            pool.name: {
                "circuit": pool.breaker.state,
                "consecutive_failures": pool.breaker.consecutive_failures,
            }
            for pool in proxy.upstreams.values()
        },
    }
    if services.telemetry is not None:
        body["telemetry"] = {**services.telemetry.counters(), "writer_pid": services.telemetry.writer_pid}
    return web.json_response(body)


# --------------------------------------------------------------------------------------------- login

def _safe_next(value: str | None) -> str:
    """Only same-site absolute paths: no scheme, no host, no '//' or backslash tricks."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(ch) < 0x20 for ch in value):
        return "/"
    return value


def _login_page(next_path: str, message: str = "", status: int = 200) -> web.Response:
    return pages.response("login.html", status=status, message=message, next_path=_safe_next(next_path),
                          signed_in=False)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request.query.get("next", "/"))


async def login_submit(request: web.Request) -> web.StreamResponse:
    throttle = request.app[THROTTLE_KEY]
    address = request.remote or ""
    try:
        throttle.check(address)  # before the form is read or the token compared
    except errors.AuthThrottled as exc:
        return _json_error(exc, request)
    form = await request.post()
    token = form.get("token")
    next_path = _safe_next(str(form.get("next") or "/"))
    auth = request.app[AUTH_KEY]
    if not isinstance(token, str) or not auth.token_ok(token):
        if auth.configured:
            throttle.failed(address)
        return _login_page(next_path, "Wrong admin token.", status=401)
    resp = _see_other(next_path)
    resp.set_cookie(
        COOKIE_NAME,
        auth.issue_cookie(),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    resp = _see_other("/login")
    resp.del_cookie(COOKIE_NAME, path="/")
    return resp


async def index(request: web.Request) -> web.Response:
    paths = sorted(
        {
            info["path"]
            for resource in request.app.router.resources()
            if "path" in (info := resource.get_info())
            and any(route.method in ("GET", "*") for route in resource)
            and info["path"] not in ("/", "/login", "/status", "/insights")  # pages: linked above the list
            and not info["path"].startswith(PUBLIC_PREFIXES)
        }
    )
    return pages.response("index.html", paths=paths, current="API")


# ------------------------------------------------------------------------------------ response headers

# Admin pages show operational data behind a login: never framed, never sniffed, never cached, and no
# scripts at all (the pages are server-rendered HTML and SVG).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# ----------------------------------------------------------------------------------------------- app


def build_admin_app(config: Config, services: Services, partner_app: web.Application,
                    fleet: Fleet | None = None) -> web.Application:
    """``fleet``: the gateway workers this admin listener reports on (else the one partner app's proxy)."""
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    if fleet is not None:
        app[FLEET_KEY] = fleet
    app[CONFIG_KEY] = config
    app[SERVICES_KEY] = services
    app[PROXY_KEY] = partner_app[PROXY_KEY]
    app[AUTH_KEY] = AdminAuth(config.admin_listener.token)
    app[THROTTLE_KEY] = AuthThrottle.from_limits(config.limits, "admin")
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/", index)
    admin_sla.setup(app)
    admin_kpi.setup(app)
    admin_metrics.setup(app)
    return app
