"""Admin routes for uptime and SLAs: JSON API and the server-rendered status page.

* ``GET /api/sla?window=30d`` — the SLA report (``collectors.sla.sla_report``); without ``window`` each SLA
  uses its own compliance window.
* ``GET /api/incidents?window=30d&upstream=NAME`` — DOWN/DEGRADED periods overlapping the window.
* ``GET /api/checks?upstream=NAME&limit=20`` — current health per upstream and the latest results.
* ``GET /status?window=30d`` — the status page: per SLA its upstream's current state, the SLA status and
  figures, 90 daily uptime bars, latency p50/p95 and sync-lag p95 charts over the window, open and recent
  incidents, and maintenance in force or coming within a week (``gateway.status_page`` gathers it,
  ``templates/status.html`` lays it out; charts are inline SVG from ``gateway.charts``).

All of them sit behind the admin token (bearer header or the login cookie; see ``gateway.admin``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web

from collectors import maintenance
from collectors import sla as slamod
from collectors.store import AsyncStore
from gateway import errors
from gateway.appkeys import SERVICES_KEY
from gateway.config import Config
from gateway.headers import request_id
from gateway.status_page import build_status, iso

STATIC_DIR = Path(__file__).resolve().parent / "static"


class StoreUnavailable(errors.GatewayError):
    status, code, error_type = 503, "store_unavailable", "store_unavailable"


def setup(app: web.Application) -> None:
    app.router.add_get("/api/sla", api_sla)
    app.router.add_get("/api/incidents", api_incidents)
    app.router.add_get("/api/checks", api_checks)
    app.router.add_get("/status", status_page)
    app.router.add_get("/static/status.css", status_css)
    app.router.add_get("/static/favicon.svg", favicon)


# ------------------------------------------------------------------------------------------- helpers


def _error(request: web.Request, exc: errors.GatewayError) -> web.Response:
    return errors.error_response(exc, request_id(request.headers.get("X-Request-Id")))


def _store(request: web.Request) -> AsyncStore:
    store = request.app[SERVICES_KEY].store
    if store is None:
        raise StoreUnavailable("telemetry store is not configured (telemetry.enabled is false)")
    return store


def _window(request: web.Request, default: float | None) -> float | None:
    text = request.query.get("window")
    if text is None or text == "":
        return default
    try:
        return slamod.parse_window(text)
    except ValueError as exc:
        raise errors.BadRequest(f"query parameter window: {exc}") from None


def _config(request: web.Request) -> Config:
    return request.app[SERVICES_KEY].config


async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.GatewayError as exc:
        return _error(request, exc)


# --------------------------------------------------------------------------------------------- JSON API


async def api_sla(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        window = _window(req, None)
        rows = await slamod.sla_report(_store(req), _config(req), window)
        return web.json_response({"window_s": window, "generated_at": iso(time.time()), "slas": rows})

    return await _guard(request, handle)


async def api_incidents(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        window = _window(req, slamod.DEFAULT_WINDOW) or slamod.DEFAULT_WINDOW
        end = time.time()
        rows = await slamod.incidents(_store(req), _config(req), end - window, end,
                                      req.query.get("upstream", ""))
        return web.json_response({"window_s": window, "incidents": rows})

    return await _guard(request, handle)


async def api_checks(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        try:
            limit = int(req.query.get("limit", "20"))
        except ValueError:
            raise errors.BadRequest("query parameter limit: not an integer") from None
        if not 1 <= limit <= 1000:
            raise errors.BadRequest("query parameter limit: must be between 1 and 1000")
        upstream = req.query.get("upstream", "")
        params = {"upstream": upstream, "per_upstream": limit}
        res = await slamod.run_named(_store(req), "recent_checks", params)
        recent: dict[str, list[dict[str, Any]]] = {}
        for r in res.dicts():
            recent.setdefault(r.pop("upstream"), []).append({k: _jsonable(v) for k, v in r.items()})
        states = _states(req.app[SERVICES_KEY], _config(req))
        ups = [{**s, "recent": recent.get(s["upstream"], [])} for s in states
               if not upstream or s["upstream"] == upstream]
        return web.json_response({"upstreams": ups})

    return await _guard(request, handle)


def _states(services: Any, config: Config) -> list[dict[str, Any]]:
    """Current health per configured upstream; upstreams without a check are ``NOT CHECKED``."""
    snap = services.health.snapshot() if services.health is not None else {}
    out = []
    now = time.time()
    for up in config.upstreams:
        if up.name in snap:
            out.append(snap[up.name].as_dict())
        else:
            mw = maintenance.active(config.maintenance, up.name, now)
            out.append({"upstream": up.name, "state": "NOT CHECKED", "since": None,
                        "maintenance": mw.name if mw else None, "last_check": None})
    return out


def _jsonable(v: Any) -> Any:
    from collectors.querylib import jsonable

    return jsonable(v)


async def status_css(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "status.css", headers={"Cache-Control": "max-age=300"})


async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Cache-Control": "max-age=86400",
                                                                 "Content-Type": "image/svg+xml"})


# ------------------------------------------------------------------------------------------ status page


async def status_page(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.Response:
        config = _config(req)
        window = _window(req, slamod.DEFAULT_WINDOW) or slamod.DEFAULT_WINDOW
        services = req.app[SERVICES_KEY]
        states = {s["upstream"]: s for s in _states(services, config)}
        page = await build_status(_store(req), config, states, services, window, time.time())
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

    return await _guard(request, handle)
