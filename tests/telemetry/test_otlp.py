"""OTLP export from the writer process to a real OTLP/HTTP receiver (aiohttp on 127.0.0.1, protobuf decoded
with opentelemetry-proto)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from collectors.exporter import start_telemetry
from collectors.otlp import traces_url, typed
from gateway.config import OtlpConfig

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2}


@dataclass
class Receiver:
    url: str
    accept: bool = True
    spans: list[tuple[dict[str, Any], PbSpan]] = field(default_factory=list)  # (resource attrs, span)
    rejected: int = 0


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if not state.accept:
            state.rejected += 1
            return web.Response(status=400, text="not now")
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                state.spans.extend((res, s) for s in ss.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_spans_reach_an_otlp_receiver_with_ids_and_attributes(tmp_path: Path, kit: SimpleNamespace,
                                                                  receiver: Receiver) -> None:
    recs = kit.make_records(90, seed=21)
    cfg = kit.make_config(tmp_path, service_name="loomgate-otlp-test", otlp=OtlpConfig(endpoint=receiver.url))
    tel = await start_telemetry(cfg, **FAST)
    try:
        for r in recs:
            tel.sink.submit(r)
        assert await tel.flush()
        # written to the store as well
        assert await kit.count(tel, "SELECT count() FROM otel_traces WHERE SpanKind = 'Server'") == 90
    finally:
        await tel.close()
    server = {s.span_id.hex(): (res, s) for res, s in receiver.spans if s.kind == PbSpan.SPAN_KIND_SERVER}
    client = {s.span_id.hex(): (res, s) for res, s in receiver.spans if s.kind == PbSpan.SPAN_KIND_CLIENT}
    assert len(server) == 90
    assert len(client) == sum(1 for r in recs if r.upstream_span_id)
    for r in recs:
        res, s = server[r.span_id]
        assert res["service.name"] == "loomgate-otlp-test"
        assert s.trace_id.hex() == r.trace_id
        assert s.parent_span_id.hex() == r.parent_span_id
        assert s.start_time_unix_nano == r.start_ns
        assert s.end_time_unix_nano == r.start_ns + r.duration_ns
        attrs = {a.key: _value(a.value) for a in s.attributes}
        assert attrs["http.response.status_code"] == r.status  # typed, not a string
        assert attrs["loomgate.request_id"] == r.request_id
        assert attrs["http.request.method"] == r.method
        assert s.status.code == (2 if r.status >= 500 else 0)  # STATUS_CODE_ERROR / UNSET
        if r.upstream_span_id:
            _, c = client[r.upstream_span_id]
            assert c.parent_span_id.hex() == r.span_id and c.trace_id.hex() == r.trace_id


async def test_otlp_only_mode_spools_rejected_batches_and_replays_them(tmp_path: Path, kit: SimpleNamespace,
                                                                       receiver: Receiver) -> None:
    recs = kit.make_records(300, seed=22)
    cfg = kit.make_config(tmp_path, write_store=False, batch_size=100, otlp=OtlpConfig(endpoint=receiver.url))
    receiver.accept = False
    tel = await start_telemetry(cfg, **FAST)
    try:
        assert tel.store is None
        for r in recs:
            tel.sink.submit(r)
        assert await tel.flush()
        assert receiver.rejected > 0 and tel.counters()["spooled"] == 300
        receiver.accept = True
        await kit.wait_for(lambda: kit.spool_drained(tel), what="OTLP replay")
        assert tel.counters()["replayed"] == 300
    finally:
        await tel.close()
    server_ids = [s.span_id.hex() for _, s in receiver.spans if s.kind == PbSpan.SPAN_KIND_SERVER]
    assert sorted(server_ids) == sorted(r.span_id for r in recs)


def test_traces_url_and_attribute_types() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/custom/path") == "http://collector:4318/custom/path"
    assert typed({"http.response.status_code": "502", "loomgate.sync_lag_ms": "12.5",
                  "loomgate.sync_lag_invalid": "true", "partner.id": "p1"}) == {
        "http.response.status_code": 502, "loomgate.sync_lag_ms": 12.5, "loomgate.sync_lag_invalid": True,
        "partner.id": "p1"}
