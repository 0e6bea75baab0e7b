"""Run the Loomgate gateway for the benchmark: one partner, one route, auth + rate limit always on,
telemetry on (embedded store under --data-dir) or off.

The config is built from the typed objects directly, so the benchmark does not depend on a YAML file.

    python bench/serve_gateway.py --port 9103 --upstream http://127.0.0.1:9101 --key KEY [--telemetry]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal

from gateway.config import (
    AdminListener,
    ArtisanLookup,
    Config,
    Listener,
    Partner,
    RateLimit,
    Route,
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
        telemetry=TelemetryConfig(enabled=args.telemetry, data_dir=args.data_dir),
    )


async def serve(config: Config) -> None:
    from gateway.server import run_gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_gateway(config) as gw:
        print(f"gateway on {gw.partner_url} (admin {gw.admin_url})", flush=True)
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, default=0)
    p.add_argument("--upstream", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--telemetry", action="store_true")
    p.add_argument("--data-dir", default="./bench-data")
    asyncio.run(serve(bench_config(p.parse_args())))


if __name__ == "__main__":
    main()
