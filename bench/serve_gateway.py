"""Run the Loomgate gateway for the benchmark: one partner, one route, auth + rate limit always on,
telemetry on (embedded store under --data-dir) or off.

The config is built from the typed objects directly, so the benchmark does not depend on a YAML file.
Once serving, the process applies ``gateway.gctune`` (as ``loomgate serve`` should; ``--default-gc`` keeps
CPython's defaults for comparison).

Event-loop lag (``--loop-lag FILE``): a 10 ms ticker records how late each tick fires, i.e. how long a
request arriving then would have waited for the loop.  Each SIGUSR1 writes the samples taken since the
previous one to FILE (JSON list of milliseconds, replaced atomically) and starts a new set, so the
benchmark reads the lag of exactly one load run.  The ticker costs ~100 wake-ups a second.

    python bench/serve_gateway.py --port 9103 --upstream http://127.0.0.1:9101 --key KEY [--telemetry]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from pathlib import Path

from gateway.config import (
    AdminListener,
    ArtisanLookup,
    Config,
    Listener,
    Partner,
    RateLimit,
    Route,
    SpoolConfig,
    TelemetryConfig,
    Upstream,
)

BENCH_PATH = "/v1/artisans/{artisan_id}/listings"


def bench_config(args: argparse.Namespace) -> Config:
    digest = hashlib.sha256(args.key.encode()).hexdigest()
    return Config(
        source="bench/serve_gateway.py",
        partner_listener=Listener(host="127.0.0.1", port=args.port),
        admin_listener=AdminListener(host="127.0.0.1", port=args.admin_port, token="bench-admin-token"),
        upstreams=(Upstream(name="bench", url=args.upstream, pool_size=128),),
        routes=(Route(name="listings", path=BENCH_PATH, methods=("GET",), upstream="bench",
                      artisan=ArtisanLookup(source="path", name="artisan_id")),),
        # A real limit that the load never reaches: the bucket is checked on every request.
        partners=(Partner(id="bench-partner", api_key_sha256=(digest,), artisans=("a1", "a2", "a3"),
                          rate_limit=RateLimit(rps=1_000_000.0, burst=1_000_000)),),
        telemetry=TelemetryConfig(enabled=args.telemetry, data_dir=args.data_dir, **writer_overrides(args)),
    )


def writer_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Telemetry writer settings given on the command line (the config's defaults otherwise)."""
    out: dict[str, object] = {}
    if args.insert_max_wait is not None:
        out["insert_max_wait"] = args.insert_max_wait
    if args.writer_priority is not None:
        out["writer_priority"] = args.writer_priority
    if getattr(args, "queue_max_records", None) is not None:
        out["queue_max_records"] = args.queue_max_records
    if getattr(args, "spool_max_bytes", None) is not None:
        out["spool"] = SpoolConfig(max_bytes=args.spool_max_bytes)
    return out


LAG_TICK = 0.010
LAG_MAX_SAMPLES = 100_000


class LagProbe:
    """Lateness of a periodic tick on the event loop, in milliseconds, dumped per load run on SIGUSR1."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LAG_TICK)
            if len(self.samples) < LAG_MAX_SAMPLES:
                self.samples.append((time.perf_counter() - t0 - LAG_TICK) * 1e3)

    def dump(self) -> None:
        samples, self.samples = self.samples, []
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(samples))
        os.replace(tmp, self.path)


async def serve(config: Config, *, tune_gc: bool = True, lag_file: str | None = None) -> None:
    from gateway.server import run_gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_gateway(config) as gw:
        if tune_gc:
            from gateway.gctune import tune_gc_for_serving

            tune_gc_for_serving()
        probe_task = None
        if lag_file:
            probe = LagProbe(Path(lag_file))
            loop.add_signal_handler(signal.SIGUSR1, probe.dump)
            probe_task = loop.create_task(probe.run())
        print(f"gateway on {gw.partner_url} (admin {gw.admin_url})", flush=True)
        await stop.wait()
        if probe_task is not None:
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, default=0)
    p.add_argument("--upstream", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--telemetry", action="store_true")
    p.add_argument("--data-dir", default="./bench-data")
    p.add_argument("--default-gc", action="store_true", help="keep CPython's garbage-collector defaults")
    p.add_argument("--insert-max-wait", type=float, help="telemetry.insert_max_wait, seconds (0: no holding)")
    p.add_argument("--writer-priority", choices=("idle", "low", "normal"), help="telemetry.writer_priority")
    p.add_argument("--queue-max-records", type=int, help="telemetry.queue_max_records (spill sooner)")
    p.add_argument("--spool-max-bytes", type=int, help="telemetry.spool.max_bytes")
    p.add_argument("--loop-lag", metavar="FILE", help="record event-loop lag; SIGUSR1 writes it to FILE")
    args = p.parse_args()
    asyncio.run(serve(bench_config(args), tune_gc=not args.default_gc, lag_file=args.loop_lag))


if __name__ == "__main__":
    main()
