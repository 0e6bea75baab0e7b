"""A batch the store rejects for its content is not an outage.  Records the store cannot take (text that is
not valid UTF-8 and a string where a number belongs) reach the real writer process through the gateway's
own telemetry interface, mixed with good records, live and from a spool segment a previous run left: the
batch is split, good rows are stored once, the rejected records are in the dead-letter file with the store's
reason, ``dead_lettered`` counts them everywhere it is reported, and later calls are stored as usual.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from collectors.exporter import spool_dir
from collectors.record import CallRecord
from collectors.spool import Batch, Spool
from gateway.server import RunningGateway
from gateway.testing import GLOBEX_KEY, standard_config

GOOD = 40
PIPELINE_DEAD = ("SELECT max(Value) FROM otel_metrics_sum WHERE MetricName = 'loomgate.telemetry.records' "
                 "AND Attributes['loomgate.pipeline.outcome'] = 'dead_lettered'")
SERVER_ROWS = ("SELECT count(), uniqExact(SpanId) FROM otel_traces WHERE SpanKind = 'Server' "
               "AND startsWith(SpanAttributes['loomgate.request_id'], {prefix:String})")


def record(rid: str, **changes: Any) -> CallRecord:
    now = time.time_ns()
    rec = CallRecord(now, 1_500_000, f"{abs(hash(rid)):032x}"[-32:], f"{abs(hash(rid)):016x}"[-16:], "",
                     "GET", "/v1/artisans/{artisan_id}/listings", "listings", "/v1/artisans/a1/listings", 200,
                     "", "", "globex", "a1", "api", "", 0, 0, None, False, "gw.test", "127.0.0.1", "probe",
                     0, 10, rid, "http", 0)
    return rec._replace(**changes)


def mixed(prefix: str) -> tuple[list[CallRecord], dict[str, str]]:
    """GOOD good records with two the store rejects among them; {request id: expected reason} of those."""
    recs = [record(f"{prefix}-{i:03d}") for i in range(GOOD)]
    recs.insert(7, record(f"{prefix}-bad-text", user_agent="ua\udcff", artisan_id="a\ud800"))
    recs.insert(29, record(f"{prefix}-bad-type", status="two hundred"))  # type: ignore[arg-type]
    return recs, {f"{prefix}-bad-text": "UnicodeEncodeError", f"{prefix}-bad-type": "ValueError"}


async def stored(gw: RunningGateway, content: SimpleNamespace, prefix: str) -> tuple[int, int]:
    count, distinct = (await content.rows(gw, SERVER_ROWS, prefix=prefix))[0]
    return int(count), int(distinct)


async def later_calls_are_stored(gw: RunningGateway, content: SimpleNamespace,
                                 http: aiohttp.ClientSession) -> None:
    for i in range(5):
        async with http.get(URL(gw.partner_url + "/v1/artisans/a1/listings"),
                            headers={"Authorization": f"Bearer {GLOBEX_KEY}",
                                     "X-Request-Id": f"later-{i}"}) as r:
            assert r.status == 200
    await content.settle(gw)

    async def five() -> bool:
        return await stored(gw, content, "later-") == (5, 5)

    await content.wait_for(five, 30.0, "later calls' rows")


def check_dead_letters(content: SimpleNamespace, data_dir: Path, expected: dict[str, str]) -> None:
    lines = content.dead_letters(data_dir)
    assert {d["record"]["request_id"]: d["reason"].split(":")[0] for d in lines} == expected, lines
    for d in lines:
        assert d["batch_id"] and d["time"].endswith("Z") and len(d["record"]) == len(CallRecord._fields)
    text = {d["record"]["request_id"]: d["record"] for d in lines}
    bad_text = next(r for rid, r in text.items() if rid.endswith("bad-text"))
    assert (bad_text["user_agent"], bad_text["artisan_id"]) == ("ua\udcff", "a\ud800")  # kept as received


async def test_a_rejected_live_batch_is_split_and_only_the_bad_records_are_dead_lettered(
    tmp_path: Path, content: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server()
    gw = await telemetry_gateway(standard_config(up.url, telemetry=content.telemetry(tmp_path)))
    tel = content.tel_of(gw)
    recs, expected = mixed("live")
    for rec in recs:  # one batch: nothing awaits between the submits
        tel.sink.submit(rec)
    await content.settle(gw)

    async def good_stored() -> bool:
        return await stored(gw, content, "live-") == (GOOD, GOOD)

    await content.wait_for(good_stored, 30.0, "the good records' rows")
    check_dead_letters(content, tmp_path, expected)
    c = tel.counters()
    assert (c["written"], c["dead_lettered"], c["spooled"], c["dropped"]) == (GOOD, 2, 0, 0), c
    status = await tel.writer_status()
    assert status["healthy"] and status["counters"]["dead_lettered"] == 2 and status["spool_segments"] == 0

    # the duration histogram counts exactly the stored records of the split batch
    hist = await content.rows(gw, "SELECT sum(Count) FROM otel_metrics_histogram "
                                  "WHERE MetricName = 'http.server.request.duration'")
    assert hist[0][0] == GOOD

    await later_calls_are_stored(gw, content, http)
    code, stats = await content.admin_json(gw, "/api/stats")
    assert code == 200 and stats["telemetry"]["dead_lettered"] == 2 and stats["telemetry"]["dropped"] == 0

    async def pipeline_row() -> bool:
        return (await content.rows(gw, PIPELINE_DEAD))[0][0] == 2.0

    await content.wait_for(pipeline_row, 15.0, "the dead_lettered pipeline counter row")
    code, ready = await content.admin_json(gw, "/readyz")
    assert code == 200, ready


async def test_a_rejected_spool_segment_is_isolated_and_replay_goes_on(
    tmp_path: Path, content: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server()
    tcfg = content.telemetry(tmp_path)
    # what a previous run left: a segment with records the store rejects, and a good one behind it
    spool = Spool(spool_dir(tcfg), tcfg.spool.max_bytes)
    recs, expected = mixed("old")
    assert spool.append(Batch("poisoned-batch", time.time_ns(), [tuple(r) for r in recs], {}))
    behind = [tuple(record(f"old-behind-{i}")) for i in range(3)]
    assert spool.append(Batch("behind-batch", time.time_ns(), behind, {}))

    gw = await telemetry_gateway(standard_config(up.url, telemetry=replace(tcfg)))
    tel = content.tel_of(gw)

    async def drained() -> bool:
        st = await tel.writer_status()
        return bool(st["healthy"]) and st["spool_segments"] == 0

    await content.wait_for(drained, 30.0, "the spool replayed past the rejected segment")
    assert await stored(gw, content, "old-") == (GOOD + 3, GOOD + 3)
    check_dead_letters(content, tmp_path, expected)
    st = await tel.writer_status()
    c = st["counters"]
    assert (c["replayed"], c["dead_lettered"], c["dropped"]) == (GOOD + 3, 2, 0), c
    await later_calls_are_stored(gw, content, http)
    assert content.tel_of(gw).counters()["dead_lettered"] == 2
