"""`loomgate demo`: config rewriting, the simulated partners' mix, and the whole demo end to end as a
subprocess (real sample upstreams, real gateway, real embedded ClickHouse)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config_loader import cli_main as check_config_main
from gateway.config_loader import load_config
from gateway.demo import (
    DEFAULT_CONFIG,
    DemoOptions,
    check_demo_keys,
    demo_config,
    describe_alert,
    partner_scopes,
)
from gateway.demo_traffic import ALL_ARTISANS, CHRONIC_LAGGERS, DEFAULT_SCOPES, DEMO_KEYS, CallFactory

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {"inventory-sync", "inventory-bulk", "listings", "listing-feed", "orders", "order-search"}


def _opts(tmp_path: Path, **kw: object) -> DemoOptions:
    base: dict[str, object] = dict(duration=5.0, data_dir=tmp_path / "d", config_path=DEFAULT_CONFIG,
                                   port=0, admin_port=0, rate=50.0, workers=4, seed=1, kpi=False)
    base.update(kw)
    return DemoOptions(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- config
def test_demo_yaml_passes_check_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_main([str(DEFAULT_CONFIG)]) == 0
    assert "OK" in capsys.readouterr().out


def test_demo_config_points_at_this_runs_upstreams_ports_and_data_dir(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG)
    urls = {"inventory": "http://127.0.0.1:40001", "orders": "http://127.0.0.1:40002"}
    cfg = demo_config(config, urls, "http://127.0.0.1:40003/alerts", _opts(tmp_path, port=0, admin_port=0))
    assert {u.name: u.url for u in cfg.upstreams} == urls
    assert cfg.partner_listener.port == 0 and cfg.admin_listener.port == 0
    assert cfg.telemetry.enabled and cfg.telemetry.data_dir == str((tmp_path / "d").resolve())
    assert cfg.store_dsn == "chdb://" + str((tmp_path / "d" / "clickhouse").resolve())
    receivers = [w.url for w in cfg.alerts.webhooks if w.name == "demo-receiver"]
    assert receivers == ["http://127.0.0.1:40003/alerts"]
    # everything else is the file's: routes, partners, SLAs
    assert cfg.routes == config.routes and cfg.partners == config.partners and cfg.slas == config.slas


def test_demo_config_refuses_a_config_without_the_sample_upstreams(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG)
    with pytest.raises(ValueError, match="missing"):
        demo_config(config, {"warehouse": "http://127.0.0.1:1"}, None, _opts(tmp_path))


def test_demo_keys_match_the_digests_and_scopes_in_demo_yaml() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert check_demo_keys(config) == []
    assert partner_scopes(config) == DEFAULT_SCOPES
    for partner in config.partners:  # the raw keys are not in the file, only their digests
        assert DEMO_KEYS[partner.id] not in DEFAULT_CONFIG.read_text()
        assert hashlib.sha256(DEMO_KEYS[partner.id].encode()).hexdigest() in partner.api_key_sha256


# ------------------------------------------------------------------------------------------ traffic
def _calls(n: int, seed: int) -> list[tuple[str, object]]:
    factory = CallFactory(seed)
    return [factory.next_call() for _ in range(n)]


def test_call_mix_is_deterministic_and_covers_every_route_and_mistake() -> None:
    calls = _calls(3000, 5)
    assert [(p, c.method, c.path) for p, c in calls[:50]] == \
        [(p, c.method, c.path) for p, c in _calls(50, 5)]  # type: ignore[attr-defined]
    paths = {c.path.split("?")[0] for _, c in calls}  # type: ignore[attr-defined]
    assert "/v1/inventory/bulk" in paths and "/v1/feed/listings" in paths and "/v1/orders/search" in paths
    kinds = {c.kind for _, c in calls}  # type: ignore[attr-defined]
    assert kinds == {"inventory sync", "listings", "orders", "refused"}
    assert {p for p, _ in calls} == set(DEMO_KEYS)


def test_refused_calls_are_really_out_of_bounds_for_the_gateway() -> None:
    config = load_config(DEFAULT_CONFIG)
    bulk = next(r for r in config.routes if r.name == "inventory-bulk")
    refused = [(p, c) for p, c in _calls(4000, 9) if c.kind == "refused"]  # type: ignore[attr-defined]
    oversize = [c for _, c in refused if c.body and len(c.body) > bulk.max_body_size]
    assert oversize, "expected oversize bulk bodies"
    scopes = partner_scopes(config)
    outsiders = [(p, c) for p, c in refused if c.method == "GET" and c.path.endswith("/orders")]
    assert outsiders and all(c.path.split("/")[3] not in scopes[p] for p, c in outsiders)
    assert any(c.headers["X-Api-Key"] not in DEMO_KEYS.values() for _, c in refused)


def test_chronic_laggers_sync_more_than_5_s_late() -> None:
    factory = CallFactory(3)
    for artisan in ALL_ARTISANS:
        lags = []
        for _ in range(40):
            call = factory._inventory_put(None, artisan)  # type: ignore[arg-type]
            sent = datetime.fromisoformat(json.loads(call.body)["source_updated_at"].replace("Z", "+00:00"))
            lags.append((datetime.now(UTC) - sent).total_seconds())
        lags.sort()
        if artisan in CHRONIC_LAGGERS:
            assert lags[len(lags) // 2] > 5.0
        else:
            assert lags[int(len(lags) * 0.95)] < 5.0


def test_describe_alert_renders_any_payload_shape() -> None:
    assert "firing" in describe_alert({"alert": {"state": "firing", "name": "orders-availability"}})
    assert describe_alert({"state": "firing", "summary": "[FIRING] page: SLA x"}) == "[FIRING] page: SLA x"
    assert describe_alert({"x": 1}) == '{"x": 1}'


# --------------------------------------------------------------------------------------- end to end
def _demo_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path / "demo-data"),
            "--port", "0", "--admin-port", "0", "--rate", "80", *extra]


def _summary_rows(stdout: str) -> dict[tuple[str, str], int]:
    """(route, partner) -> calls, parsed from the SQL summary table."""
    section = stdout.split("Calls per route and partner", 1)[1]
    rows: dict[tuple[str, str], int] = {}
    for line in section.splitlines()[3:]:
        if line.startswith("(") and "row" in line:
            break
        cells = line.split()
        if len(cells) >= 3:
            rows[(cells[0], cells[1])] = int(cells[2])
    return rows


def _check_report(stdout: str, stderr: str) -> None:
    assert "Calls per route and partner" in stdout, stdout + stderr
    rows = _summary_rows(stdout)
    routes = {route for route, _ in rows}
    assert routes >= ROUTES, rows
    assert all(calls > 0 for calls in rows.values())
    stored = re.search(r"([\d,]+) spans stored for ([\d,]+) requests sent", stderr)
    assert stored, stderr
    spans, sent = (int(x.replace(",", "")) for x in stored.groups())
    assert sent > 0 and spans == sent  # every request that reached the gateway has exactly one SERVER span
    assert sum(rows.values()) == spans  # the summary is computed from those spans
    assert "phase:" in stderr  # the live progress line


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reports_from_clickhouse(tmp_path: Path) -> None:
    proc = subprocess.run(_demo_cmd(tmp_path, "--duration", "8"), cwd=ROOT, capture_output=True, text=True,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_report(proc.stdout, proc.stderr)
    assert "/status" in proc.stdout and "demo-admin-token" in proc.stdout
    assert "Inventory sync lag per artisan" in proc.stdout
    lag_section = proc.stdout.split("Inventory sync lag per artisan", 1)[1].split("\n== ", 1)[0]
    assert any(a in lag_section for a in CHRONIC_LAGGERS)
    assert (tmp_path / "demo-data" / "clickhouse").is_dir()


@pytest.mark.slow
def test_demo_without_duration_runs_until_interrupted(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(_demo_cmd(tmp_path, "--no-kpi"), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # the banner's last line comes once traffic starts
            if line.strip().startswith("traffic") or time.monotonic() > deadline:
                break
        time.sleep(5)
        assert proc.poll() is None, "the demo stopped without being asked to"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "until Ctrl-C" in line
    _check_report(stdout, stderr)
