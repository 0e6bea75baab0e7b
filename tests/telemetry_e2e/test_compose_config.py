"""The compose stack's gateway config (config/docker-gateway.yaml) fills the same tables as the embedded
store: spans, and the OTel metric tables too.  Docker does not run here, so the file's own telemetry
settings run against an embedded store standing in for the ClickHouse server (same code and SQL: only the
DSN differs), with its upstreams on loopback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from gateway.config import AdminListener, Listener
from gateway.config_loader import load_config
from gateway.demo_traffic import DEMO_KEYS
from gateway.testing import RecordingUpstream

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 6


async def test_compose_gateway_config_writes_spans_and_metrics(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLICKHOUSE_USER", "u")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "p")
    monkeypatch.setenv("LOOMGATE_ADMIN_TOKEN", "compose-test-admin-token-0123456789")
    config = load_config(ROOT / "config" / "docker-gateway.yaml")
    ups = {u.name: await upstream_server(RecordingUpstream()) for u in config.upstreams}
    # Only addresses change: loopback listeners and upstreams, an embedded store for the server's DSN.
    tel = replace(config.telemetry, store=f"chdb://{tmp_path / 'clickhouse'}", data_dir=str(tmp_path),
                  batch_window=0.05)
    config = replace(
        config, partner_listener=Listener("127.0.0.1", 0),
        admin_listener=AdminListener("127.0.0.1", 0, config.admin_listener.token),
        upstreams=tuple(replace(u, url=ups[u.name].url, health_check=None) for u in config.upstreams),
        telemetry=tel)
    gw = await telemetry_gateway(config)
    for i in range(REQUESTS):
        s = await e2e.send(http, gw.partner_url, "GET", "/v1/artisans/art-0001/listings",
                           key=DEMO_KEYS["shopsync"], key_header="X-Api-Key", request_id=f"compose-{i}")
        assert s.status == 200
    await e2e.settle(gw)

    assert await e2e.scalar(gw, e2e.SERVER_ROWS) == REQUESTS
    assert await e2e.scalar(gw, "SELECT sum(Count) FROM otel_metrics_histogram "
                                "WHERE MetricName = 'http.server.request.duration'") == REQUESTS
    assert await e2e.scalar(gw, "SELECT count() FROM otel_metrics_gauge "
                                "WHERE MetricName = 'loomgate.circuit_breaker.state'") > 0

    async def pipeline_counters_written() -> bool:
        return bool(await e2e.scalar(gw, "SELECT count() FROM otel_metrics_sum "
                                         "WHERE MetricName = 'loomgate.telemetry.records'"))

    await e2e.wait_for(pipeline_counters_written, 10.0, "pipeline counters in otel_metrics_sum")
