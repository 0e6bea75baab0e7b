"""The benchmark's baseline: the least a correct aiohttp reverse proxy does, and nothing else.

One pooled keep-alive ``ClientSession``; request and response bodies streamed; hop-by-hop headers
stripped both ways; no auth, routing, limits, logging or telemetry.  Whatever the gateway does on top
of this is what the benchmark prices.

    python bench/minimal_proxy.py --port 9102 --upstream http://127.0.0.1:9101
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM_KEY = web.AppKey("upstream", str)


def strip_hop_by_hop(headers: CIMultiDictProxy[str], *, drop_host: bool) -> CIMultiDict[str]:
    """Copy ``headers`` without hop-by-hop ones (including any named in Connection)."""
    named = {t.strip().lower() for v in headers.getall("Connection", []) for t in v.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in HOP_BY_HOP or low in named or (drop_host and low == "host"):
            continue
        out.add(name, value)
    return out


async def proxy(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION_KEY]
    url = request.app[UPSTREAM_KEY] + request.raw_path
    body = request.content if request.body_exists else None
    async with session.request(request.method, url, headers=strip_hop_by_hop(request.headers, drop_host=True),
                               data=body, allow_redirects=False) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=strip_hop_by_hop(upstream.headers, drop_host=False))
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def build_app(upstream: str, pool_size: int = 100) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    app[UPSTREAM_KEY] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         skip_auto_headers=("User-Agent", "Accept-Encoding")) as session:
            app[SESSION_KEY] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9102)
    p.add_argument("--upstream", default="http://127.0.0.1:9101")
    args = p.parse_args()
    web.run_app(build_app(args.upstream), host=args.host, port=args.port, access_log=None,
                print=lambda *_: print(f"minimal proxy on http://{args.host}:{args.port}", flush=True))


if __name__ == "__main__":
    main()
