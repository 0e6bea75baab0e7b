"""Valid files load into exactly the objects they describe."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    AdminListener,
    AlertsConfig,
    ArtisanLookup,
    CircuitBreakerConfig,
    Config,
    HealthCheck,
    LatencyObjective,
    Limits,
    Listener,
    MaintenanceWindow,
    OtlpConfig,
    Partner,
    RateLimit,
    Recurrence,
    Route,
    Sla,
    SpoolConfig,
    SyncLagLookup,
    TelemetryConfig,
    Timeouts,
    Upstream,
    Webhook,
)
from gateway.config_loader import load_config

HERE = Path(__file__).parent
REPO = HERE.parent.parent
DIGESTS = (
    "49482788a9c5f002e1c76e607262ea1354b34fa582dcbcc5284ebf833a4abbac",
    "8a04861484fa4f016d154d105260c71a8e023c682d3f7212922001b600a334bc",
    "f4c2f4d71d1326b0bbd77936e79818e0b2feeed48662eca69421d542c0e5cded",
)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def test_full_file_loads_to_exact_objects(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the working directory
    source = str(HERE / "full.yaml")
    shared = Timeouts(connect=0.5, read=4.0, total=12.0)
    expected = Config(
        source=source,
        partner_listener=Listener(host="0.0.0.0", port=18080),
        admin_listener=AdminListener(host="127.0.0.2", port=18081, token="admin-token-0123456789"),
        upstreams=(
            Upstream(
                name="inventory",
                url="http://127.0.0.1:9001/base",
                timeouts=shared,
                pool_size=20,
                circuit_breaker=CircuitBreakerConfig(failures=3, cooldown=2.5),
                health_check=HealthCheck(
                    interval=5.0,
                    timeout=1.0,
                    method="HEAD",
                    path="/ping",
                    conditions=("[STATUS] < 500", "[BODY].items[0].ok == true", "[CONNECTED] == true"),
                    failure_threshold=4,
                    success_threshold=1,
                    degraded_response_time_ms=250.0,
                ),
            ),
            Upstream(name="orders", url="https://orders.example:8443", timeouts=Timeouts(0.5, 4.0, 20.0)),
        ),
        routes=(
            Route(
                name="listing-inventory",
                path="/v1/artisans/{artisan_id}/listings/{listing_id}/inventory",
                methods=("GET", "PUT"),
                upstream="inventory",
                max_body_size=2 * 1024 * 1024,
                artisan=ArtisanLookup(source="path", name="artisan_id", required=False),
                sync_lag=SyncLagLookup(source="header", name="X-Updated-At"),
                upstream_path="/inv/{listing_id}",
            ),
            Route(
                name="batch",
                path="/v1/batch/",
                methods=("POST",),
                upstream="inventory",
                max_body_size=1048577,
                artisan=ArtisanLookup(source="json", name="artisan.id"),
                sync_lag=SyncLagLookup(source="json", name="meta.changed_at"),
            ),
            Route(
                name="orders",
                path="/v1/orders",
                methods=("GET", "HEAD", "DELETE", "OPTIONS", "PATCH"),
                upstream="orders",
                artisan=ArtisanLookup(source="query", name="artisan"),
            ),
            Route(
                name="root",
                path="/",
                methods=("GET",),
                upstream="orders",
                artisan=ArtisanLookup(source="header", name="X-Artisan-Id"),
            ),
        ),
        partners=(
            Partner(
                id="shopsync",
                api_key_sha256=DIGESTS[:2],
                artisans=("art-1", "1002"),  # an unquoted number stays the id as written
                rate_limit=RateLimit(rps=2.5, burst=7),
            ),
            Partner(id="everyone", api_key_sha256=DIGESTS[2:]),
        ),
        limits=Limits(
            max_line_size=4096,
            max_field_size=16000,
            max_headers=50,
            drain_timeout=90.0,
            header_timeout=4.0,
            body_idle_timeout=20.0,
            keepalive_timeout=60.0,
            max_connections=5000,
            admin_max_connections=64,
            auth_failure_rate=0.5,
            auth_failure_burst=10,
            auth_tracked_addresses=5000,
        ),
        telemetry=TelemetryConfig(
            enabled=False,
            data_dir=str(tmp_path.resolve() / "relative" / "data"),
            store="chdb://" + str(tmp_path.resolve() / "relative" / "store"),
            database="metrics_1",
            ttl_days=7,
            cluster="main",
            service_name="loomgate-test",
            batch_window=0.25,
            batch_size=10,
            queue_max_records=1000,
            insert_min_records=500,
            insert_max_wait=0.0,
            writer_priority="normal",
            spool=SpoolConfig(dir="/var/tmp/spool", max_bytes=1 << 30),
            otlp=OtlpConfig(
                endpoint="collector:4317",
                protocol="grpc",
                headers=(("Authorization", "Bearer t"), ("X-Scope", "s")),
            ),
            write_store=False,
            sync_lag_max_skew=0.0,
            dead_letter_max_bytes=2 << 20,
            unwritten_alert_after=90.0,
        ),
        slas=(
            Sla(
                name="inv",
                upstream="inventory",
                availability=99.95,
                latency=LatencyObjective(threshold=0.3, target=99.0),
                sync_lag_p95=5.0,
                window=7 * 86400.0,
            ),
            Sla(name="orders-route", route="orders"),
        ),
        maintenance=(
            MaintenanceWindow(
                name="once",
                upstreams=("orders",),
                start=_epoch("2026-03-01T02:00:00+00:00"),
                end=_epoch("2026-03-01T02:30:00+00:00"),
            ),
            MaintenanceWindow(
                name="nightly", recurrence=Recurrence(every="daily", at="23:30", duration=1800.0)
            ),
            MaintenanceWindow(
                name="sundays",
                upstreams=("inventory", "orders"),
                recurrence=Recurrence(every="weekly", weekday=6, at="04:00", duration=3600.0),
            ),
        ),
        alerts=AlertsConfig(
            evaluate_every=10.0,
            webhooks=(
                Webhook(
                    name="ops", url="https://hooks.example/ops", format="slack", timeout=3.0, max_retries=0
                ),
                Webhook(name="audit", url="http://127.0.0.1:9999/hook"),
            ),
        ),
    )
    assert load_config(source, env={}) == expected


def test_omitted_keys_take_the_documented_defaults(case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case.path.parent)
    config = case.load(case.doc())
    assert config.source == str(case.path)
    assert config.partner_listener == Listener(host="127.0.0.1", port=0)
    assert config.admin_listener == AdminListener(host="127.0.0.1", port=0, token="s3cret")
    assert config.upstreams[0] == Upstream(name="inventory", url="http://127.0.0.1:9001")
    assert config.routes == (
        Route(
            name="stock",
            path="/v1/artisans/{artisan_id}/stock",
            methods=("GET",),
            upstream="inventory",
            artisan=ArtisanLookup(source="path", name="artisan_id"),
        ),
    )
    assert config.partners == (Partner(id="shopsync", api_key_sha256=(case.DIGEST_A,)),)
    assert config.limits == Limits()
    assert config.telemetry == TelemetryConfig(data_dir=str(case.path.parent.resolve() / "data"))
    assert (config.slas, config.maintenance, config.alerts) == ((), (), AlertsConfig())


def test_empty_values_mean_defaults(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: x\n    url: http://h\n    timeouts:\n    health_check: {}\n",
        tail="telemetry:\n  cluster:\n  otlp: null\n  spool: {dir: ~}\n",
    )
    config = case.load(text)
    assert config.upstreams[2].timeouts == Timeouts()
    assert config.upstreams[2].health_check == HealthCheck()
    assert config.telemetry.cluster is None and config.telemetry.otlp is None
    assert config.telemetry.spool == SpoolConfig()


def test_example_gateway_yaml_is_valid() -> None:
    token = "t" * 24
    config = load_config(REPO / "config" / "gateway.yaml", env={"LOOMGATE_ADMIN_TOKEN": token})
    assert len(config.upstreams) == 3 and len(config.routes) == 5 and len(config.partners) == 4
    assert config.admin_listener.token == token  # ${LOOMGATE_ADMIN_TOKEN}: required, no example default
    assert (config.partner_listener.host, config.admin_listener.host) == ("127.0.0.1", "127.0.0.1")
    assert config.upstreams[0].timeouts == Timeouts(connect=1.0, read=5.0, total=15.0)  # from the anchor


def _keys_without_comment(text: str) -> list[str]:
    """Mapping keys whose line has no comment and whose previous line is not a comment."""
    lines = text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        code = line.split(" #", 1)[0]
        if not re.match(r"\s*(- )?[A-Za-z_][\w-]*:", code) or line.lstrip().startswith("#"):
            continue
        commented = " #" in line or (i > 0 and lines[i - 1].lstrip().startswith("#"))
        if not commented:
            missing.append(f"{i + 1}: {line}")
    return missing


def test_example_gateway_yaml_documents_every_key() -> None:
    text = (REPO / "config" / "gateway.yaml").read_text(encoding="utf-8")
    assert _keys_without_comment(text) == []
    # the checker itself notices an undocumented key
    assert _keys_without_comment("# doc\nlisteners:\n  partner:\n") == ["3:   partner:"]
