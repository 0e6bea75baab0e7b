"""Fixtures for the telemetry pipeline tests: deterministic call records of mixed outcome, config builders,
and helpers that wait (bounded) for the writer process to reach a state."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from collectors.exporter import Telemetry
from collectors.record import CallRecord
from gateway.config import AdminListener, Config, Listener, SpoolConfig, TelemetryConfig
from gateway.testing import wait_for

# (status, error_type, error_source, upstream called?, upstream status)
OUTCOMES: tuple[tuple[int, str, str, bool, int], ...] = (
    (200, "", "", True, 200),
    (201, "", "", True, 201),
    (401, "unauthorized", "gateway", False, 0),
    (404, "route_not_found", "gateway", False, 0),
    (429, "rate_limited", "gateway", False, 0),
    (502, "connect_error", "upstream", True, 0),
    (503, "circuit_open", "gateway", False, 0),
    (504, "timeout", "upstream", True, 0),
    (500, "", "", True, 500),
)
DURATIONS_S: tuple[float, ...] = (0.001, 0.005, 0.0051, 0.02, 0.09, 0.3, 1.0, 3.0, 12.0)


def make_records(n: int, seed: int = 1, start_ns: int | None = None) -> list[CallRecord]:
    rng = random.Random(seed)
    base = start_ns or time.time_ns()
    out = []
    for i in range(n):
        status, error_type, error_source, called, up_status = OUTCOMES[i % len(OUTCOMES)]
        duration_ns = int(DURATIONS_S[(i // len(OUTCOMES)) % len(DURATIONS_S)] * 1e9)
        matched = status != 404
        artisan = f"a{rng.randrange(40)}"
        out.append(CallRecord(
            start_ns=base + i * 1000, duration_ns=duration_ns, trace_id=f"{rng.getrandbits(128):032x}",
            span_id=f"{rng.getrandbits(64):016x}",
            parent_span_id=f"{rng.getrandbits(64):016x}" if i % 4 else "",
            method="GET" if i % 2 else "POST",
            route_template="/v1/artisans/{artisan_id}/listings" if matched else "",
            route_name="listings" if matched else "", path=f"/v1/artisans/{artisan}/listings",
            status=status, error_type=error_type, error_source=error_source,
            partner_id="" if status == 401 else f"p{i % 3}", artisan_id=artisan,
            upstream="inventory" if called or status == 503 else "",
            upstream_span_id=f"{rng.getrandbits(64):016x}" if called else "",
            upstream_start_ns=base + i * 1000 + 50_000 if called else 0,
            upstream_duration_ns=duration_ns - 100_000 if called else 0,
            sync_lag_ms=float(i % 700) if status == 201 else None, sync_lag_invalid=False,
            server_address="127.0.0.1:8080", client_address="127.0.0.1", user_agent="partner-test/1.0",
            request_body_size=100 if i % 2 == 0 else 0, response_body_size=512, request_id=f"req-{seed}-{i}",
            scheme="http", upstream_status=up_status,
        ))
    return out


def make_config(data_dir: Path, **telemetry: Any) -> Config:
    spool_bytes = telemetry.pop("spool_max_bytes", 64 << 20)
    tcfg = TelemetryConfig(data_dir=str(data_dir), batch_window=0.05, ttl_days=0,
                           spool=SpoolConfig(max_bytes=spool_bytes))
    tcfg = replace(tcfg, **telemetry)
    return Config(source="test.yaml", partner_listener=Listener(port=0), admin_listener=AdminListener(port=0),
                  upstreams=(), routes=(), partners=(), telemetry=tcfg)



async def spool_drained(tel: Telemetry) -> bool:
    st = await tel.writer_status()
    return bool(st["healthy"]) and st["spool_segments"] == 0


async def count(tel: Telemetry, sql: str, **params: Any) -> int:
    assert tel.store is not None
    res = await tel.store.query(sql, params)
    return int(res.rows[0][0])


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above (test modules cannot import conftest under importlib import mode)."""
    return SimpleNamespace(make_records=make_records, make_config=make_config, wait_for=wait_for,
                           spool_drained=spool_drained, count=count, OUTCOMES=OUTCOMES)
