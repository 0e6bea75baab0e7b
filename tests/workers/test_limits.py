"""A partner's rate limit holds across workers: one shared bucket, not one per worker."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from types import SimpleNamespace

import aiohttp

BURST = 20
RPS = 0.5


async def test_burst_is_shared_by_all_workers(fleet: SimpleNamespace, http: aiohttp.ClientSession) -> None:
    gw = await fleet.start(workers=2, rps=RPS, burst=BURST)
    started = time.monotonic()
    answers = []
    for start in range(0, 3 * BURST, 10):
        answers += await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"rl-{i}")
                                          for i in range(start, start + 10)))
    elapsed = time.monotonic() - started
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {200, 429}, statuses
    assert len({a.pid for a in answers}) == 2, "both workers answered"
    # Tolerance: the tokens refilled while the requests were sent (RPS x elapsed), nothing per worker.
    allowed = BURST + math.ceil(RPS * elapsed)
    assert BURST <= statuses[200] <= allowed, f"{statuses[200]} successes, bucket allows {allowed}"
    gw.sigterm()
    assert await gw.wait() == 0, gw.log()
