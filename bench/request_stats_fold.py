"""What /metrics' request series cost the gateway: CPU per call record folded into RequestStats.

    python bench/request_stats_fold.py --records 200000 --rounds 5

The telemetry sender thread folds every cut batch in chunks of ``CHUNK_RECORDS`` (collectors.exporter), so
this folds synthetic records (4 routes x 3 partners x 3 status classes, log-normal durations) the same way
and prints the best round's process CPU per record.  The fold holds the GIL: at R requests a second it
takes R x (ns per record) of the gateway process's time.  Compare within one run: shared machines are noisy.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.exporter import CHUNK_RECORDS
from collectors.record import CallRecord
from collectors.request_stats import RequestStats


def records(n: int, seed: int) -> list[CallRecord]:
    rnd = random.Random(seed)
    base = CallRecord(0, 0, "0" * 32, "1" * 16, "", "GET", "/v1/x", "listings", "/v1/x", 200, "", "", "acme",
                      "a1", "api", "", 0, 0, None, False, "", "", "", 0, 0, "r", "http", 200)
    return [base._replace(route_name=rnd.choice("abcd"), partner_id=rnd.choice(("p1", "p2", "p3")),
                          status=rnd.choice((200, 200, 200, 404, 503)),
                          duration_ns=int(rnd.lognormvariate(17, 0.8))) for _ in range(n)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    recs = records(max(1, a.records), a.seed)
    best = float("inf")
    for _ in range(max(1, a.rounds)):
        stats = RequestStats()
        t0 = time.process_time()
        for i in range(0, len(recs), CHUNK_RECORDS):
            stats.observe(recs[i:i + CHUNK_RECORDS])
        best = min(best, time.process_time() - t0)
    per = best / len(recs) * 1e9
    print(f"RequestStats fold: {per:.0f} ns CPU per record (best of {a.rounds} rounds, {len(recs)} records, "
          f"chunks of {CHUNK_RECORDS}); at 7,000 requests/s: {per * 7000 / 1e7:.2f} % of a core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
