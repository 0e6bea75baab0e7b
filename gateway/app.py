"""The partner-facing aiohttp application: every request, whatever its target, goes to ``Proxy.handle``.

aiohttp's own router is bypassed with a single catch-all resource, so the gateway's route table (matched
on the normalised path) is the only routing, and even odd request targets (``*``, absolute-form URLs)
get the gateway's JSON errors and a call record (``CONNECT``, whose target has no path, included).
Upstream connection pools live exactly as long as the application (``cleanup_ctx``).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator, Sized
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractMatchInfo
from aiohttp.web_urldispatcher import AbstractResource, ResourceRoute, UrlMappingMatchInfo
from yarl import URL

from gateway.appkeys import CONFIG_KEY, SERVICES_KEY
from gateway.config import Config
from gateway.proxy import Proxy
from gateway.services import Services

PROXY_KEY = web.AppKey("loomgate.proxy", Proxy)


async def _defer_expect(request: web.Request) -> None:
    """Leave ``Expect`` to the proxy: it sends ``100 Continue`` only once the request passed every check,
    so a rejected upload is never transmitted, and every request gets the gateway's answer and record."""
    return None


class _CatchAll(AbstractResource, Sized):
    """A resource that matches every request target and every method."""

    def __init__(self, handler: Any) -> None:
        super().__init__(name=None)
        self._route = ResourceRoute("*", handler, self, expect_handler=_defer_expect)

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, **kwargs: str) -> URL:
        return URL.build(path="/")

    async def resolve(self, request: web.Request) -> tuple[AbstractMatchInfo | None, set[str]]:
        return UrlMappingMatchInfo({}, self._route), set()

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the gateway's catch-all resource cannot be mounted under a prefix")

    def get_info(self) -> dict[str, Any]:
        return {"catch_all": True}

    def raw_match(self, path: str) -> bool:
        return True

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[ResourceRoute]:
        return iter((self._route,))


class _CatchAllRouter(web.UrlDispatcher):
    """Resolves every request to the one catch-all resource without looking at the path.

    aiohttp's own lookup walks the path's segments, so a target with an empty path (authority-form,
    ``CONNECT host:443``) would never reach the catch-all and get aiohttp's plain-text 404 with no request
    id and no call record.
    """

    def __init__(self, resource: _CatchAll) -> None:
        super().__init__()
        self._catch_all = resource
        self.register_resource(resource)

    async def resolve(self, request: web.Request) -> UrlMappingMatchInfo:
        match, _ = await self._catch_all.resolve(request)
        assert isinstance(match, UrlMappingMatchInfo)
        return match


def build_partner_app(config: Config, services: Services) -> web.Application:
    """The partner listener's application; ``app[PROXY_KEY]`` is its proxy (in-flight count, breakers)."""
    proxy = Proxy(config, services.sink)
    router = _CatchAllRouter(_CatchAll(proxy.handle))
    with warnings.catch_warnings():  # passing a router is deprecated but is the only way to replace lookup
        warnings.simplefilter("ignore", DeprecationWarning)
        # Request bodies are relayed exactly as received: aiohttp must not inflate a gzip upload on the way
        # in (the upstream would get decompressed bytes still labelled gzip, with the compressed length).
        app = web.Application(client_max_size=1 << 20, handler_args={"auto_decompress": False}, router=router)
    app[CONFIG_KEY] = config
    app[SERVICES_KEY] = services
    app[PROXY_KEY] = proxy

    async def upstream_pools(_app: web.Application) -> AsyncIterator[None]:
        await proxy.start()
        try:
            yield
        finally:
            await proxy.close()

    app.cleanup_ctx.append(upstream_pools)
    return app
