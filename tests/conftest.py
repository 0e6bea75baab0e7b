"""Shared fixtures: a real embedded ClickHouse store (chDB), one per test session.

chDB binds one data directory per process for the life of the process, so the session owns one
directory and each test that needs a store gets a fresh database inside it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from collectors.record import ListSink, RecordSink
from collectors.store import Store
from gateway.config import Config
from gateway.server import RunningGateway, run_gateway
from gateway.testing import RecordingUpstream


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def chdb_dsn(chdb_dir: Path) -> str:
    return "chdb://" + str(chdb_dir)


@pytest.fixture
def store(chdb_dsn: str) -> Iterator[Store]:
    """A fresh, empty database in the session's embedded store (no schema applied)."""
    database = "t_" + uuid.uuid4().hex[:12]
    s = Store(chdb_dsn, database)
    try:
        yield s
    finally:
        s.command(f"DROP DATABASE IF EXISTS `{database}`")


# ------------------------------------------------------------------ real upstreams and a real gateway
# Factories, so a test can start as many as it needs; everything started is stopped at teardown.


@pytest.fixture
async def upstream_server() -> AsyncIterator[Callable[..., Awaitable[RecordingUpstream]]]:
    """``up = await upstream_server()``: a RecordingUpstream on 127.0.0.1 (ephemeral port), ``up.url``."""
    started: list[RecordingUpstream] = []

    async def start(upstream: RecordingUpstream | None = None) -> RecordingUpstream:
        up = await (upstream or RecordingUpstream()).start()
        started.append(up)
        return up

    yield start
    for up in reversed(started):
        await up.close()


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    """``gw = await gateway(config)``: run_gateway with a ListSink (``gw.services.sink.records``)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: Config, *, sink: RecordSink | None = None) -> RunningGateway:
            return await stack.enter_async_context(run_gateway(config, sink=sink or ListSink()))

        yield start
