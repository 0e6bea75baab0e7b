"""Bounded Python load generator, used when ``wrk`` is not installed.

N connections (one keep-alive connection per worker), fixed duration, every latency recorded.  Prints
one ``LGJSON {...}`` line in the same shape as the wrk script, so ``bench/run.py`` parses either.

    python bench/loadgen.py --url http://127.0.0.1:9102/v1/artisans/a1/listings -c 32 -d 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[idx]


async def _worker(session: aiohttp.ClientSession, url: str, headers: dict[str, str], deadline: float,
                  latencies: list[float], counts: dict[str, int]) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status >= 400:
                    counts["status"] += 1
        except TimeoutError:
            counts["timeout"] += 1
            continue
        except aiohttp.ClientError:
            counts["read"] += 1
            await asyncio.sleep(0.01)  # a refused connection must not turn into a busy loop
            continue
        latencies.append(time.perf_counter() - started)


async def run_load(url: str, headers: dict[str, str], connections: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    counts = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(_worker(session, url, headers, deadline, latencies, counts)
                               for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies) + counts["timeout"] + counts["read"],
        "duration_us": elapsed * 1e6,
        **counts,
        "p50_us": percentile(latencies, 50) * 1e6,
        "p99_us": percentile(latencies, 99) * 1e6,
        "mean_us": (sum(latencies) / len(latencies) * 1e6) if latencies else 0.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-d", "--duration", type=float, default=8.0)
    p.add_argument("-H", "--header", action="append", default=[], help="Name: value")
    args = p.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    result = asyncio.run(run_load(args.url, headers, args.connections, min(args.duration, 120.0)))
    print("LGJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
