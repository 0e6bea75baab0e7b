"""The telemetry writer process crashes, freezes or dies mid-insert under partner traffic through a real
gateway; the gateway restarts it and every request ends up in ClickHouse exactly once, rollups included.

The crash between an insert and its acknowledgement uses the writer's fault injection: with
``LOOMGATE_WRITER_EXIT_AFTER_INSERT`` naming a file, the writer exits right after the next insert that
succeeds while that file exists (see ``collectors.writer``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from collectors import exporter
from collectors.writer import EXIT_AFTER_INSERT_ENV
from gateway.testing import standard_config

RATE = 60.0


async def test_kill9_under_traffic_restarts_the_writer_and_stores_every_span_once(
    tmp_path: Path, chaos: SimpleNamespace, upstream_server: Any, chaos_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server()
    gw = await chaos_gateway(standard_config(up.url, telemetry=chaos.telemetry(tmp_path)))
    tel = chaos.tel_of(gw)
    statuses: dict[str, int] = {}
    load = chaos.Load(http, gw.partner_url, "kill", RATE, 360, statuses, asyncio.Event())
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(2.0)
    first = tel.writer_pid
    os.kill(first, signal.SIGKILL)
    await chaos.wait_for(lambda: tel.writer_alive and tel.writer_pid != first, 30.0, "a new writer")
    await runner
    await chaos.settled(gw)
    status, stats = await chaos.admin_get(http, gw, "/api/stats")
    assert status == 200 and stats["telemetry"]["writer_restarts"] == 1
    assert stats["telemetry"]["dropped"] == 0
    await chaos.exactly_once(gw, statuses)


async def test_sigstop_then_sigcont_loses_and_duplicates_nothing_and_the_backlog_drains_under_traffic(
    tmp_path: Path, chaos: SimpleNamespace, upstream_server: Any, chaos_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server()
    # A small in-memory bound: while the writer is frozen the gateway spills to the spool.
    tcfg = chaos.telemetry(tmp_path, queue_max_records=100)
    gw = await chaos_gateway(standard_config(up.url, telemetry=tcfg))
    tel = chaos.tel_of(gw)
    statuses: dict[str, int] = {}
    stop = asyncio.Event()
    # Traffic keeps flowing until the backlog is replayed (bounded by ``limit``).
    load = chaos.Load(http, gw.partner_url, "stop", RATE, 3000, statuses, stop)
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(1.5)
    os.kill(tel.writer_pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(5.0)
    finally:
        os.kill(tel.writer_pid, signal.SIGCONT)
    assert tel.counters()["spooled"] > 100, "the freeze did not reach the spool"

    async def backlog_replayed() -> bool:
        st = await tel.writer_status()
        return st["spool_segments"] == 0

    try:
        await chaos.wait_for(backlog_replayed, 30.0, "the spool replayed while traffic continues")
    finally:
        stop.set()
        await runner
    assert len(statuses) < 3000, "traffic ran out before the backlog was replayed"
    await chaos.settled(gw)
    assert tel.counters()["writer_restarts"] == 0 and tel.counters()["dropped"] == 0
    await chaos.exactly_once(gw, statuses)


@pytest.mark.parametrize("combine", [True, False], ids=["combined-batches", "single-batches"])
async def test_crash_between_insert_and_ack_replays_without_duplicates(
    tmp_path: Path, chaos: SimpleNamespace, upstream_server: Any, chaos_gateway: Any,
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, combine: bool,
) -> None:
    flag = tmp_path / "exit-after-insert"
    monkeypatch.setenv(EXIT_AFTER_INSERT_ENV, str(flag))
    up = await upstream_server()
    # combined: the writer holds batches back and inserts several at once (the default's behaviour, scaled)
    held = {"insert_min_records": 100_000, "insert_max_wait": 1.5} if combine else {"insert_max_wait": 0.0}
    gw = await chaos_gateway(standard_config(up.url, telemetry=chaos.telemetry(tmp_path, **held)))
    tel = chaos.tel_of(gw)
    statuses: dict[str, int] = {}
    load = chaos.Load(http, gw.partner_url, "ack", RATE, 300, statuses, asyncio.Event())
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(1.0)
    first = tel.writer_pid
    flag.touch()
    await chaos.wait_for(lambda: not flag.exists() and tel.writer_pid != first and tel.writer_alive, 30.0,
                         "the writer to exit after an insert and be restarted")
    await runner
    await chaos.settled(gw)
    assert tel.counters()["writer_restarts"] == 1
    await chaos.exactly_once(gw, statuses)


async def test_crash_during_a_grouped_replay_replays_the_same_group_once(
    tmp_path: Path, chaos: SimpleNamespace, upstream_server: Any, chaos_gateway: Any,
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag = tmp_path / "exit-after-insert"
    monkeypatch.setenv(EXIT_AFTER_INSERT_ENV, str(flag))
    monkeypatch.setattr(exporter, "RESTART_DELAY_INITIAL", 1.0)
    up = await upstream_server()
    gw = await chaos_gateway(standard_config(up.url, telemetry=chaos.telemetry(tmp_path,
                                                                               queue_max_records=100)))
    tel = chaos.tel_of(gw)
    statuses: dict[str, int] = {}
    load = chaos.Load(http, gw.partner_url, "replay", RATE, 240, statuses, asyncio.Event())
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(0.5)
    os.kill(tel.writer_pid, signal.SIGSTOP)  # the gateway spills many small batches
    try:
        await asyncio.sleep(3.0)
        flag.touch()  # the next insert after the thaw is the grouped replay or a live batch
    finally:
        os.kill(tel.writer_pid, signal.SIGCONT)
    await runner
    await chaos.wait_for(lambda: not flag.exists(), 30.0, "the writer to exit after an insert")
    await chaos.settled(gw)
    assert tel.counters()["writer_restarts"] == 1
    await chaos.exactly_once(gw, statuses)


async def test_admin_answers_503_store_unavailable_while_the_writer_is_down(
    tmp_path: Path, chaos: SimpleNamespace, upstream_server: Any, chaos_gateway: Any,
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exporter, "RESTART_DELAY_INITIAL", 4.0)  # a window wide enough to ask in
    up = await upstream_server()
    gw = await chaos_gateway(standard_config(up.url, telemetry=chaos.telemetry(tmp_path)))
    tel = chaos.tel_of(gw)
    paths = ("/api/queries/demo_span_count", "/api/sla", "/status")
    for path in paths:
        assert (await chaos.admin_get(http, gw, path))[0] == 200, path
    os.kill(tel.writer_pid, signal.SIGKILL)
    await chaos.wait_for(lambda: not tel.writer_alive, 10.0, "the writer loss noticed")
    for path in paths:
        status, body = await chaos.admin_get(http, gw, path)
        assert status == 503, (path, status, body)
        assert body["error"]["code"] == "store_unavailable" and body["error"]["source"] == "gateway"
        assert body["error"]["request_id"] and "writer" in body["error"]["message"]
    await chaos.wait_for(lambda: tel.writer_alive, 30.0, "the writer restarted")

    async def answers() -> bool:
        return (await chaos.admin_get(http, gw, "/api/sla"))[0] == 200

    await chaos.wait_for(answers, 30.0, "the admin API answering again")
