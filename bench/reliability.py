"""Reliability benchmark: steady partner load through a real gateway while the telemetry writer fails.

Each scenario runs its own gateway (``bench/serve_gateway.py``, telemetry into an embedded store under a
temporary directory) in front of ``bench/fast_upstream.py`` on loopback, sends ``--rate`` requests a second
for ``--duration`` seconds (open loop, every request with its own ``X-Request-Id``) and injects one fault
``--fault-at`` seconds in:

- ``outage``: the store is unavailable to the writer: it is frozen (SIGSTOP) for ``--outage`` seconds, then
  resumed (SIGCONT); the gateway spills to the spool meanwhile (``queue_max_records`` is small);
- ``kill``: the writer is killed (SIGKILL); the gateway spills, restarts it, the new writer replays;
- ``overflow``: the ``outage`` with a spool budget of ``--overflow-spool`` bytes: what does not fit is dropped
  and counted;
- ``backlog``: no fault; the spool already holds ``--backlog`` records in gateway-sized batches (the spill of
  an earlier outage) when the gateway starts, and is replayed while the load runs (default in-memory bound,
  so the live batches do not join the spool being measured).

Afterwards the gateway stops gracefully and the store is opened here to count, per request id, the SERVER
spans (missing, duplicates) and the rollup's calls.  The replay rate is the records replayed from the spool
over the wall time the writer spent replaying them (``/api/stats``: ``replayed`` / ``replay_ms``: reading
segments, inserting, removing them); "drain s" is the wall time from the first replayed record seen to an
empty spool, live batches and new spills included.  Live latency is compared before the fault and while the
spool drains.  ``capacity`` first measures the gateway's own
maximum request rate (32 connections, closed loop, ``bench/loadgen.py``, telemetry on), the figure the
replay rate is compared with.  Bounded: every wait has a timeout; traffic goes to 127.0.0.1 only.

    python bench/reliability.py [--rate 300] [--duration 12] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import percentile, run_load  # noqa: E402

KEY = "reliability-bench-key"
ADMIN = {"Authorization": "Bearer bench-admin-token"}
PATH = "/v1/artisans/a1/listings"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    scenario: str
    sent: int = 0
    failed: int = 0
    stored: int = 0
    missing: int = 0
    duplicates: int = 0
    rollup_calls: int = 0
    spooled: int = 0
    dropped: int = 0
    replayed: int = 0
    restarts: int = 0
    replay_rate: float = 0.0
    drain_s: float = 0.0  # first replayed record to an empty spool
    p50_before: float = 0.0
    p99_before: float = 0.0
    p50_drain: float = 0.0
    p99_drain: float = 0.0
    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


class Gateway:
    def __init__(self, workdir: Path, upstream: str, extra: list[str]) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.data_dir = workdir
        self.log = open(workdir / "gateway.log", "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "serve_gateway.py"), "--port", str(self.port),
             "--admin-port", str(self.admin_port), "--upstream", upstream, "--key", KEY, "--telemetry",
             "--data-dir", str(workdir), *extra], stdout=self.log, stderr=subprocess.STDOUT, env=env)

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}); see {self.log.name}")
            try:
                async with http.get(self.admin + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("gateway not ready in time")

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.admin + "/api/stats", headers=ADMIN) as r:
            return dict((await r.json())["telemetry"])

    def spool_segments(self) -> int:
        spool = self.data_dir / "spool"
        return sum(1 for p in spool.glob("*.seg")) if spool.exists() else 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


async def one(http: aiohttp.ClientSession, url: str, rid: str, lat: list[tuple[float, float]]) -> bool:
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-Id": rid}
    t0 = time.monotonic()
    try:
        async with http.get(url + PATH, headers=headers) as r:
            await r.read()
            ok = r.status == 200
    except aiohttp.ClientError:
        ok = False
    lat.append((t0, (time.monotonic() - t0) * 1e3))
    return ok


def prefill(spool_dir: Path, records: int, per_batch: int, prefix: str) -> list[str]:
    """Spool ``records`` call records in batches of ``per_batch``, as a gateway spills them; their ids."""
    import uuid

    from collectors.record import CallRecord
    from collectors.spool import Batch, Spool

    spool = Spool(spool_dir, 1 << 34)
    now, rids = time.time_ns(), []
    for start in range(0, records, per_batch):
        batch = []
        for i in range(start, min(records, start + per_batch)):
            rid = f"{prefix}{i:06d}"
            rids.append(rid)
            batch.append(tuple(CallRecord(
                now + i * 1000, 2_000_000, uuid.uuid4().hex, uuid.uuid4().hex[:16], "", "GET",
                "/v1/artisans/{artisan_id}/listings", "listings", PATH, 200, "", "", "bench-partner", "a1",
                "bench", uuid.uuid4().hex[:16], now + i * 1000 + 10_000, 1_500_000, None, False,
                "127.0.0.1", "127.0.0.1", "reliability-bench", 0, 70, rid, "http", 200)))
        spool.append(Batch(uuid.uuid4().hex, now, batch, {}))
    return rids


async def fault(gw: Gateway, http: aiohttp.ClientSession, kind: str, at: float, outage: float) -> float:
    """Inject the fault ``at`` seconds from now; returns when the writer can work again (monotonic)."""
    if kind == "backlog":
        return time.monotonic()
    await asyncio.sleep(at)
    pid = int((await gw.stats(http))["writer_pid"])
    if kind == "kill":
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(outage)
    finally:
        os.kill(pid, signal.SIGCONT)
    return time.monotonic()


async def sample(gw: Gateway, http: aiohttp.ClientSession, out: list[tuple[float, dict[str, Any]]],
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            stats = await asyncio.wait_for(gw.stats(http), 2.0)
            stats["segments"] = gw.spool_segments()
            out.append((time.monotonic(), stats))
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            pass
        await asyncio.sleep(0.1)


def drain_window(samples: list[tuple[float, dict[str, Any]]]) -> float:
    """Seconds from the first sample that saw records replayed (less one 0.1 s interval) to an empty spool."""
    grew = [t for (t, s), (_, prev) in zip(samples[1:], samples, strict=False)
            if s["replayed"] > prev["replayed"]]
    if not grew:
        return 0.0
    empty = next((t for t, s in samples if t >= grew[-1] and s["segments"] == 0), grew[-1])
    return max(0.1, empty - (grew[0] - 0.1))


def count_store(data_dir: Path, prefix: str) -> tuple[dict[str, int], int]:
    from collectors.store import Store
    from gateway.config import TelemetryConfig

    store = Store("chdb://" + str((data_dir / "clickhouse").resolve()), TelemetryConfig().database)
    try:
        rows = store.query("SELECT SpanAttributes['loomgate.request_id'] AS rid, count() FROM otel_traces "
                           "WHERE SpanKind = 'Server' AND startsWith(rid, {p:String}) GROUP BY rid",
                           {"p": prefix}).rows
        calls = store.query("SELECT sum(calls) FROM loomgate_calls_1m").rows[0][0]
    finally:
        store.close()
    return {str(r): int(n) for r, n in rows}, int(calls or 0)


async def scenario(kind: str, args: argparse.Namespace, upstream: str) -> Result:
    res = Result(kind)
    workdir = Path(tempfile.mkdtemp(prefix=f"lg-rel-{kind}-"))
    # backlog: the default in-memory bound, so live batches never join the spool being measured
    extra = [*(["--queue-max-records", str(args.queue_max_records)] if kind != "backlog" else []),
             *priority(args)]
    if kind == "overflow":
        extra += ["--spool-max-bytes", str(args.overflow_spool)]
    spooled_rids = (prefill(workdir / "spool", args.backlog, args.backlog_batch, f"{kind}-spooled-")
                    if kind == "backlog" else [])
    gw = Gateway(workdir, upstream, extra)
    lat: list[tuple[float, float]] = []
    oks: dict[str, bool] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400)) as http:
            await gw.ready(http)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(gw, http, res.samples, stop))
            faulted = asyncio.create_task(fault(gw, http, kind, args.fault_at, args.outage))
            start = time.monotonic()
            total = int(args.rate * args.duration)

            async def send(i: int) -> None:
                await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                rid = f"{kind}-{i:06d}"
                oks[rid] = await one(http, gw.url, rid, lat)

            await asyncio.gather(*(send(i) for i in range(total)))
            resumed = await faulted if kind != "backlog" else start
            deadline = time.monotonic() + args.drain_timeout
            while time.monotonic() < deadline and gw.spool_segments():
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # a last counters sample after the drain
            stop.set()
            await sampler
            last = res.samples[-1][1] if res.samples else {}
    finally:
        gw.stop()
    res.sent, res.failed = len(oks), sum(1 for ok in oks.values() if not ok)
    res.spooled, res.dropped = int(last.get("spooled", 0)), int(last.get("dropped", 0))
    res.replayed, res.restarts = int(last.get("replayed", 0)), int(last.get("writer_restarts", 0))
    res.drain_s = drain_window(res.samples)
    replay_ms = int(last.get("replay_ms", 0))
    res.replay_rate = res.replayed / (replay_ms / 1000) if replay_ms else 0.0
    per_rid, res.rollup_calls = count_store(workdir, f"{kind}-")
    res.stored = len(per_rid)
    res.missing = sum(1 for rid in [*oks, *spooled_rids] if rid not in per_rid)
    res.duplicates = sum(n - 1 for n in per_rid.values())
    before = sorted(ms for t, ms in lat if t < start + args.fault_at)
    grew = [t for (t, s), (_, p) in zip(res.samples[1:], res.samples, strict=False)
            if s["replayed"] > p["replayed"]]
    drain_end = grew[-1] if grew else resumed
    during = sorted(ms for t, ms in lat if resumed <= t <= drain_end)
    res.p50_before, res.p99_before = percentile(before, 50), percentile(before, 99)
    res.p50_drain, res.p99_drain = percentile(during, 50), percentile(during, 99)
    return res


def priority(args: argparse.Namespace) -> list[str]:
    return ["--writer-priority", args.writer_priority] if args.writer_priority else []


async def capacity(args: argparse.Namespace, upstream: str) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="lg-rel-capacity-"))
    gw = Gateway(workdir, upstream, priority(args))
    try:
        async with aiohttp.ClientSession() as http:
            await gw.ready(http)
        out = await run_load(gw.url + PATH, {"Authorization": f"Bearer {KEY}"}, 32, args.capacity_seconds)
    finally:
        gw.stop()
    return float(out["requests"]) / args.capacity_seconds


def render(results: list[Result], max_rps: float, args: argparse.Namespace) -> str:
    lines = [
        f"load {args.rate:.0f} req/s for {args.duration:.0f} s, fault at {args.fault_at:.0f} s "
        f"(outage {args.outage:.0f} s), queue_max_records {args.queue_max_records}, overflow spool "
        f"{args.overflow_spool} bytes, writer priority {args.writer_priority or 'idle'}; "
        f"gateway max {max_rps:.0f} req/s (32 connections, telemetry on); load average before/after "
        f"{args.load_before}/{os.getloadavg()[0]:.1f}",
        "",
        "| scenario | sent | failed | rows stored | missing | duplicates | rollup calls | spooled "
        "| dropped | replayed | restarts | drain s | replay rec/s | replay / max req/s "
        "| p50/p99 ms before | p50/p99 ms draining |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r.replay_rate / max_rps if max_rps else 0.0
        lines.append(
            f"| {r.scenario} | {r.sent} | {r.failed} | {r.stored} | {r.missing} | {r.duplicates} | "
            f"{r.rollup_calls} | {r.spooled} | {r.dropped} | {r.replayed} | {r.restarts} | "
            f"{r.drain_s:.1f} | {r.replay_rate:,.0f} | {ratio:.1f}x | "
            f"{r.p50_before:.1f}/{r.p99_before:.1f} | {r.p50_drain:.1f}/{r.p99_drain:.1f} |")
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> None:
    args.load_before = f"{os.getloadavg()[0]:.1f}"
    port = free_port()
    up = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(port)])
    upstream = f"http://127.0.0.1:{port}"
    try:
        time.sleep(0.5)
        max_rps = await capacity(args, upstream) if args.capacity_seconds > 0 else 0.0
        results = [await scenario(kind, args, upstream) for kind in args.scenarios.split(",")]
    finally:
        up.terminate()
        up.wait(timeout=10)
    text = render(results, max_rps, args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=300.0, help="requests per second (open loop)")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of load per scenario")
    p.add_argument("--fault-at", type=float, default=2.0)
    p.add_argument("--outage", type=float, default=6.0, help="seconds the writer is frozen")
    p.add_argument("--queue-max-records", type=int, default=1000)
    p.add_argument("--overflow-spool", type=int, default=64 << 10, help="spool budget (bytes) in overflow")
    p.add_argument("--capacity-seconds", type=float, default=5.0, help="0 skips the max req/s run")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--scenarios", default="outage,kill,overflow,backlog")
    p.add_argument("--backlog", type=int, default=20_000, help="records spooled before the backlog run")
    p.add_argument("--backlog-batch", type=int, default=300, help="records per spooled batch (backlog)")
    p.add_argument("--writer-priority", choices=("idle", "low", "normal"),
                   help="telemetry.writer_priority (default: the config default, idle)")
    p.add_argument("--out", help="also write the markdown table to this file")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
