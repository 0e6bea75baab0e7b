"""Fixtures for the schema / row-builder tests: a migrated store and a deterministic CallRecord factory."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from collectors.record import CallRecord
from collectors.schema import migrate
from collectors.store import Store
from gateway.config import TelemetryConfig

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, on a minute boundary

RecordFactory = Callable[..., list[CallRecord]]


@pytest.fixture
def schema_store(store: Store) -> Store:
    """A fresh database with every versioned schema file applied (no TTL, so old timestamps stay)."""
    migrate(store, TelemetryConfig(database=store.database, ttl_days=0))
    return store


def _hex(rnd: random.Random, digits: int) -> str:
    return f"{rnd.getrandbits(digits * 4):0{digits}x}"


def make_records(n: int, seed: int = 7, spread_s: int = 600) -> list[CallRecord]:
    """Mixed outcomes: successes, 4xx rejected by the gateway, upstream 5xx, gateway timeouts, aborted
    clients, sync lag measured / invalid / absent; spread over ``spread_s`` seconds from BASE_NS."""
    rnd = random.Random(seed)
    out: list[CallRecord] = []
    for _ in range(n):
        start = BASE_NS + rnd.randrange(spread_s * 10**9)
        kind = rnd.choices(["ok", "rejected", "upstream_5xx", "timeout", "aborted"], [80, 8, 6, 4, 2])[0]
        partner = f"partner-{rnd.randrange(4)}"
        artisan = f"art-{rnd.randrange(25)}"
        route, template, upstream = rnd.choice([
            ("listings", "/v1/artisans/{artisan_id}/listings", "inventory"),
            ("orders", "/v1/artisans/{artisan_id}/orders", "orders"),
        ])
        duration = int(rnd.lognormvariate(17.0, 0.8))  # median ~24 ms in ns
        called = kind in ("ok", "upstream_5xx", "timeout", "aborted")
        up_dur = max(duration - rnd.randrange(10**5, 10**6), 1) if called else 0
        status = {"ok": 200, "rejected": rnd.choice([401, 403, 429]), "upstream_5xx": 503, "timeout": 504,
                  "aborted": 0}[kind]
        error_type = {"ok": "", "rejected": "unauthorized", "upstream_5xx": "503", "timeout": "timeout",
                      "aborted": "client_disconnect"}[kind]
        error_source = {"ok": "", "rejected": "gateway", "upstream_5xx": "upstream", "timeout": "gateway",
                        "aborted": "gateway"}[kind]
        lag_roll = rnd.random()
        lag = rnd.uniform(50.0, 9000.0) if kind == "ok" and lag_roll < 0.5 else None
        invalid = kind == "ok" and lag_roll > 0.95
        out.append(CallRecord(
            start_ns=start, duration_ns=duration, trace_id=_hex(rnd, 32), span_id=_hex(rnd, 16),
            parent_span_id=_hex(rnd, 16) if rnd.random() < 0.3 else "", method=rnd.choice(["GET", "POST"]),
            route_template=template, route_name=route, path=template.replace("{artisan_id}", artisan),
            status=status, error_type=error_type, error_source=error_source,
            partner_id="" if status == 401 else partner, artisan_id=artisan,
            upstream=upstream if called else "", upstream_span_id=_hex(rnd, 16) if called else "",
            upstream_start_ns=start + 50_000 if called else 0, upstream_duration_ns=up_dur,
            sync_lag_ms=lag, sync_lag_invalid=invalid, server_address="gw.example.test",
            client_address=f"10.0.0.{rnd.randrange(1, 250)}", user_agent="partner-sdk/1.2",
            request_body_size=rnd.randrange(0, 5000), response_body_size=rnd.randrange(0, 20000),
            request_id=_hex(rnd, 32), scheme="https",
            upstream_status={"ok": 200, "upstream_5xx": 503}.get(kind, 0),
        ))
    return out


@pytest.fixture
def records() -> RecordFactory:
    return make_records
