"""Fixtures for the scoping chaos tests: a real gateway and real upstreams on loopback, raw-socket clients.

aiohttp's own client normalises what it sends (merges header spellings, frames bodies itself), so the
requests that probe the gateway are written by hand and sent over plain sockets.  The telemetry fixtures
of ``tests/telemetry_e2e/conftest.py`` (a gateway whose writer owns an embedded ClickHouse store) are
loaded from that file and re-exported here, so rows are checked exactly as the telemetry tests check them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from yarl import URL

from gateway.server import RunningGateway

_E2E = Path(__file__).resolve().parents[2] / "telemetry_e2e" / "conftest.py"
_spec = importlib.util.spec_from_file_location("scoping_telemetry_e2e_fixtures", _E2E)
assert _spec is not None and _spec.loader is not None
_e2e_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _e2e_module  # dataclasses look their module up while the file runs
_spec.loader.exec_module(_e2e_module)
e2e = _e2e_module.e2e
telemetry_gateway = _e2e_module.telemetry_gateway


@dataclass
class Reply:
    """An HTTP response read off a raw socket."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        return str(self.json()["error"]["code"])


def address(gw: RunningGateway) -> tuple[str, int]:
    url = URL(gw.partner_url)
    assert url.host is not None and url.port is not None
    return url.host, url.port


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """A hand-written HTTP/1.1 request, header names spelt and repeated exactly as given."""
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test", *(f"{k}: {v}" for k, v in headers)]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    body = await (reader.readexactly(length) if length is not None else reader.read())
    return Reply(int(status_line.split(" ")[1]), headers, body)


async def exchange(gw: RunningGateway, data: bytes, timeout: float = 15.0) -> Reply:
    """Send raw request bytes to the gateway's partner listener and read the one response."""
    reader, writer = await asyncio.open_connection(*address(gw))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(read_reply(reader), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def small_window_socket(gw: RunningGateway, rcvbuf: int = 16 * 1024) -> socket.socket:
    """A connected non-blocking socket with a small receive buffer, so a slow reader applies backpressure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address(gw))
    return sock


@pytest.fixture
def raw() -> SimpleNamespace:
    """The raw-socket helpers above, for test modules (they cannot import this conftest)."""
    return SimpleNamespace(
        exchange=exchange, request_bytes=request_bytes, read_reply=read_reply, address=address,
        small_window_socket=small_window_socket,
    )
