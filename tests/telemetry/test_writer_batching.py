"""The writer holds small batches back to insert them together, without losing them, and runs at a lower
CPU priority than the gateway."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from collectors.exporter import start_telemetry

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2}
SERVER_ROWS = "SELECT count() FROM otel_traces WHERE SpanKind = 'Server'"
ROOT = Path(__file__).resolve().parents[2]


async def held_records(tel: object) -> int:
    st = await tel.writer_status()  # type: ignore[attr-defined]
    return int(st["memory_records"])


async def test_small_batches_wait_for_company_then_flush_inserts_them_at_once(tmp_path: Path,
                                                                              kit: SimpleNamespace) -> None:
    recs = kit.make_records(300, seed=31)
    cfg = kit.make_config(tmp_path, insert_min_records=10_000, insert_max_wait=60.0)
    tel = await start_telemetry(cfg, **FAST)
    try:
        for chunk in range(3):  # three batch windows' worth of small batches
            for r in recs[chunk * 100:(chunk + 1) * 100]:
                tel.sink.submit(r)
            await asyncio.sleep(0.15)
        await kit.wait_for(lambda: _equals(held_records(tel), 300), what="batches held by the writer")
        assert await kit.count(tel, SERVER_ROWS) == 0
        assert tel.counters()["written"] == 0
        started = time.monotonic()
        assert await tel.flush()
        assert time.monotonic() - started < 30  # flushed on request, not after insert_max_wait
        assert await kit.count(tel, SERVER_ROWS) == 300
        assert tel.counters()["written"] == 300
        assert await held_records(tel) == 0
    finally:
        await tel.close()


@pytest.mark.parametrize(("n", "min_records", "max_wait"), [(120, 10_000, 0.5), (400, 100, 60.0)],
                         ids=["held-until-insert-max-wait", "batch-at-insert-min-records-not-held"])
async def test_rows_arrive_without_a_flush(tmp_path: Path, kit: SimpleNamespace, n: int, min_records: int,
                                           max_wait: float) -> None:
    recs = kit.make_records(n, seed=32)
    cfg = kit.make_config(tmp_path, insert_min_records=min_records, insert_max_wait=max_wait)
    tel = await start_telemetry(cfg, **FAST)
    try:
        for r in recs:
            tel.sink.submit(r)
        await kit.wait_for(lambda: _equals(kit.count(tel, SERVER_ROWS), n), timeout=20,
                           what="rows inserted without a flush")
        await kit.wait_for(lambda: tel.counters()["written"] == n, what="the acknowledgement")
    finally:
        await tel.close()


CRASHING_GATEWAY = """
import asyncio, os, pickle, sys
from collectors.exporter import start_telemetry

async def main():
    cfg, recs = pickle.loads(open(sys.argv[1], "rb").read())
    tel = await start_telemetry(cfg)
    for r in recs:
        tel.sink.submit(r)
    for _ in range(400):
        st = await tel.writer_status()
        if st["memory_records"] == len(recs):
            break
        await asyncio.sleep(0.05)
    else:
        sys.exit(3)
    print(tel.writer_pid, flush=True)
    os._exit(137)  # a crash: no close, no flush, the socket to the writer just goes away

asyncio.run(main())
"""


async def test_batches_held_by_the_writer_survive_a_gateway_crash(tmp_path: Path,
                                                                  kit: SimpleNamespace) -> None:
    recs = kit.make_records(250, seed=34)
    cfg = kit.make_config(tmp_path, insert_min_records=10_000, insert_max_wait=3600.0)
    job = tmp_path / "job.pickle"
    job.write_bytes(pickle.dumps((cfg, recs)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CRASHING_GATEWAY, str(job), env=env,
                                                stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 137, f"gateway script ended with {proc.returncode}"
    writer_pid = int(out.decode().split()[-1])
    await kit.wait_for(lambda: not _running(writer_pid), timeout=60, what="orphaned writer to finish")

    tel = await start_telemetry(cfg, **FAST)
    try:
        assert await kit.count(tel, SERVER_ROWS) == 250
        assert (await tel.writer_status())["spool_segments"] == 0
    finally:
        await tel.close()


@pytest.mark.parametrize(("priority", "policy", "nice_added"),
                         [("idle", os.SCHED_IDLE, 0), ("low", os.SCHED_OTHER, 10),
                          ("normal", os.SCHED_OTHER, 0)])
async def test_writer_runs_every_thread_at_the_configured_priority(tmp_path: Path, kit: SimpleNamespace,
                                                                   priority: str, policy: int,
                                                                   nice_added: int) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    tel = await start_telemetry(kit.make_config(tmp_path, writer_priority=priority), **FAST)
    try:
        assert await tel.ready()
        threads = [_thread(tel.writer_pid, tid) for tid in os.listdir(f"/proc/{tel.writer_pid}/task")]
        # ClickHouse raises its memory-accounting thread's nice value itself (it must run on time); it is
        # idle almost always.  Every other thread, its pools included, runs at the configured priority.
        others = [(name, pol, nice) for name, pol, nice in threads if name != "MemoryWorker"]
        assert len(others) > 3  # the embedded ClickHouse's pools are threads of the writer too
        assert {pol for _, pol, _ in threads} == {policy}, threads
        assert {nice for _, _, nice in others} == {min(19, own + nice_added)}, threads
    finally:
        await tel.close()


async def _equals(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _thread(pid: int, tid: str) -> tuple[str, int, int]:
    """(name, scheduling policy, nice) of a thread, from /proc/PID/task/TID/stat (fields 19 and 41)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is the line's field 3
    return name, int(fields[38]), int(fields[16])
