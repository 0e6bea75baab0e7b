"""The demo's per route / partner summary adds up: errors is the sum of its parts by source, and the
status-class columns say what they count (an upstream's own 404 is a 4xx answer, not an error)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

from collectors.querylib import run_query
from collectors.store import Store, ThreadStore
from gateway.demo import SUMMARY_LEGEND, print_summary
from tests.sla.conftest import apply_schema, call, insert_calls

# (status, error_source, error_type, how many): one partner on one route, every kind of outcome
PLANTED = (
    (200, "", "", 50),  # good
    (404, "", "", 7),  # the upstream's own answer, passed through: not an error
    (401, "gateway", "unauthorized", 5),  # refused by the gateway
    (502, "upstream", "connect_error", 4),  # the gateway could not reach the upstream
    (503, "upstream", "503", 6),  # the upstream failed
    (0, "upstream", "upstream_reset", 2),  # broken mid-body: aborted
    (408, "client", "client_timeout", 3),  # the partner stalled
)


async def test_summary_errors_are_the_sum_of_their_parts(store: Store) -> None:
    apply_schema(store)
    t = time.time() // 60 * 60 - 120
    records, seq = [], 0
    for status, source, error_type, count in PLANTED:
        for _ in range(count):
            records.append(call(t + seq % 50, status=status, error_source=source, error_type=error_type,
                                seq=seq))
            seq += 1
    insert_calls(store, records)
    out = io.StringIO()
    rows = await print_summary(ThreadStore(store), datetime.fromtimestamp(t - 60, UTC),
                               datetime.fromtimestamp(t + 120, UTC), "loomgate", out)
    assert rows == 1
    result = await run_query(ThreadStore(store), "demo_summary", {
        "start": datetime.fromtimestamp(t - 60, UTC).isoformat(),
        "end": datetime.fromtimestamp(t + 120, UTC).isoformat()})
    (row,) = result.dicts()

    assert row["calls"] == sum(n for *_, n in PLANTED) == 77
    assert row["errors"] == row["err_gateway"] + row["err_upstream"] + row["err_client"] == 20
    assert (row["err_gateway"], row["err_upstream"], row["err_client"]) == (5, 12, 3)
    # by status class, errors or not: the 404s are 4xx answers but not errors
    assert row["status_4xx"] == 7 + 5 + 3 and row["status_5xx"] == 4 + 6 and row["aborted"] == 2
    assert row["error_pct"] == round(100 * 20 / 77, 1)
    text = out.getvalue()
    assert "err_client" in text and SUMMARY_LEGEND in text
