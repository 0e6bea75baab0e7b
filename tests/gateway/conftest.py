"""Fixtures for the gateway integration tests (helpers live in gateway.testing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gateway.config import Config
from gateway.testing import RecordingUpstream, Stack, client_session, standard_config

StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session() as session:
        yield session


@pytest.fixture
async def make_stack(upstream_server: Any, gateway: Any, http: aiohttp.ClientSession) -> StackFactory:
    """``await make_stack(upstream=None, config=None)``; ``config`` maps the upstream URL to a Config."""

    async def build(
        upstream: RecordingUpstream | None = None, config: Callable[[str], Config] | None = None
    ) -> Stack:
        up = await upstream_server(upstream)
        gw = await gateway((config or standard_config)(up.url))
        return Stack(up, gw, http)

    return build


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()
