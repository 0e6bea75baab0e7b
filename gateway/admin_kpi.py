"""Admin routes for retention analytics: KPI ingest, the query library, and the Insights page.

* ``POST /api/kpi/{table}``: JSON Lines body (commerce-platform webhooks), validated completely before
  anything is written (same checks as ``loomgate import``); 400 names the line, column and reason.
* ``GET /api/queries``: the query library (names, descriptions, formulas, typed parameters, defaults).
* ``GET /api/queries/{name}?k=v``: run one query; 400 for unknown, missing or bad parameters.
* ``GET /insights``: health metrics vs KPIs per artisan (scatter plots with r and n), before/after bars for
  integration changes, and the benchmark scorecard, rendered server-side as SVG.

All of them sit behind the admin auth middleware (bearer token or login cookie), like ``/status``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from collectors import querylib
from collectors.kpi_import import KpiImportError, import_jsonl, spec_for
from collectors.query_notes import empty_window_note
from collectors.store import AsyncStore
from gateway import errors
from gateway.appkeys import SERVICES_KEY
from gateway.headers import request_id

MAX_INGEST_BYTES = 64 << 20


class _NoStore(errors.GatewayError):
    status, code, error_type = 503, "store_unavailable", "store_unavailable"


class _BadQuery(errors.BadRequest):
    code = "bad_query_parameter"


class _UnknownQuery(errors.GatewayError):
    status, code, error_type = 404, "unknown_query", "unknown_query"


class _InvalidData(errors.BadRequest):
    code = "invalid_kpi_data"


class _TooLarge(errors.PayloadTooLarge):
    pass


def _rid(request: web.Request) -> str:
    return request_id(request.headers.get("X-Request-Id"))


def _error(exc: errors.GatewayError, request: web.Request, details: Mapping[str, Any] | None = None
           ) -> web.Response:
    """The gateway's JSON error shape; ``details`` adds machine-readable fields (line, column, …)."""
    return errors.error_response(exc, _rid(request), details)


def _store(request: web.Request) -> AsyncStore:
    store = request.app[SERVICES_KEY].store
    if store is None:
        raise _NoStore("no telemetry store: enable telemetry to use the KPI API")
    return store


async def ingest(request: web.Request) -> web.Response:
    table = request.match_info["table"]
    try:
        spec_for(table)
    except KpiImportError as exc:
        return _error(errors.NotFound(str(exc)), request)
    try:
        store = _store(request)
    except _NoStore as exc:
        return _error(exc, request)
    body = await _read_capped(request, MAX_INGEST_BYTES)
    if body is None:
        too_large = _TooLarge(f"body over {MAX_INGEST_BYTES} bytes: split it into several requests")
        return _error(too_large, request)
    try:
        result = await import_jsonl(store, table, body, source="request body")
    except KpiImportError as exc:
        return _error(_InvalidData(str(exc)), request, exc.as_json())
    return web.json_response({"table": result.table, "rows": result.rows})


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds ``limit`` (read() may return short chunks)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(1 << 20):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def list_queries(request: web.Request) -> web.Response:
    out = []
    for q in querylib.list_queries():
        out.append({"name": q.name, "description": q.description, "formulas": list(q.formulas),
                    "params": [{"name": n, "type": t, "default": q.defaults.get(n),
                                "required": n not in q.defaults, "help": (q.param_help or {}).get(n, "")}
                               for n, t in q.params.items()]})
    return web.json_response({"queries": out})


async def run_named_query(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        store = _store(request)
        raw = dict(request.query)
        result = await querylib.run_query(store, name, raw)
        note = await empty_window_note(store, querylib.load_query(name), raw, result)
    except querylib.UnknownQueryError as exc:
        return _error(_UnknownQuery(str(exc)), request)
    except querylib.QueryParamError as exc:
        return _error(_BadQuery(str(exc)), request, {"param": exc.param})
    except _NoStore as exc:
        return _error(exc, request)
    body = querylib.result_json(name, result)
    if note:
        body["note"] = note
    return web.Response(text=json.dumps(body), content_type="application/json")


async def insights(request: web.Request) -> web.Response:
    from gateway.insights import render_insights

    try:
        store = _store(request)
    except _NoStore as exc:
        return _error(exc, request)
    page = await render_insights(store, dict(request.query))
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Register the KPI ingest, query library and Insights routes (behind the admin auth middleware)."""
    app.router.add_post("/api/kpi/{table}", ingest)
    app.router.add_get("/api/queries", list_queries)
    app.router.add_get("/api/queries/{name}", run_named_query)
    app.router.add_get("/insights", insights)
