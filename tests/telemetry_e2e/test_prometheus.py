"""``GET /metrics`` on the admin listener, scraped like Prometheus does: a real gateway, real requests, the
exposition parsed with prometheus_client's parser, and every value checked against the traffic sent."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from collectors.metrics import DURATION_BUCKETS
from gateway.config import HealthCheck
from gateway.config_loader import load_config
from gateway.testing import (
    ACME_KEY,
    ADMIN_TOKEN,
    GLOBEX_KEY,
    RecordingUpstream,
    make_config,
    make_route,
    make_upstream,
    standard_partners,
    standard_routes,
)

DEAD = "/v1/dead/{name}"
# (method, path, key, status, route label, partner label, times)
TRAFFIC: tuple[tuple[str, str, str | None, int, str, str, int], ...] = (
    ("GET", "/v1/artisans/a1/listings", ACME_KEY, 200, "listings", "acme", 7),
    ("GET", "/v1/misc/boom", GLOBEX_KEY, 500, "misc", "globex", 3),
    ("GET", "/v1/misc/fine", GLOBEX_KEY, 200, "misc", "globex", 2),
    ("GET", "/v1/nothing", ACME_KEY, 404, "", "acme", 2),
    ("GET", "/v1/artisans/a1/listings", None, 401, "", "", 2),
    ("GET", "/v1/dead/x", ACME_KEY, 502, "dead", "acme", 1),  # opens the circuit (failures=1)
    ("GET", "/v1/dead/x", ACME_KEY, 503, "dead", "acme", 2),  # circuit open
)


def _upstream() -> RecordingUpstream:
    async def boom(request: web.Request) -> web.Response:
        return web.json_response({"detail": "broken"}, status=500)

    up = RecordingUpstream()
    up.on("/v1/misc/boom", boom)
    return up


async def _scrape(http: aiohttp.ClientSession, admin_url: str,
                  token: str | None = ADMIN_TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(admin_url + "/metrics", headers=headers) as r:
        return r.status, await r.text()


def _samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def _by(samples: list[Sample], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[k] for k in labels): s.value for s in samples}


async def test_metrics_scrape_matches_the_requests_made(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server(_upstream())
    check = HealthCheck(interval=0.1, timeout=0.5, failure_threshold=1, success_threshold=1)
    config = make_config(
        upstreams=[replace(make_upstream("api", up.url), health_check=check),
                   replace(make_upstream("dead", f"http://127.0.0.1:{e2e.closed_port()}", connect=0.5,
                                         failures=1, cooldown=120.0), health_check=check)],
        routes=[*standard_routes("api"), make_route("dead", DEAD, upstream="dead")],
        partners=standard_partners(), telemetry=e2e.telemetry(tmp_path))
    gw = await telemetry_gateway(config)

    # the admin token is required, as on every admin route but the probes
    status, body = await _scrape(http, gw.admin_url, token=None)
    assert status == 401 and "admin token required" in body

    want: Counter[tuple[str, str, str]] = Counter()
    n = 0
    for method, path, key, status, route, partner, times in TRAFFIC:
        for _ in range(times):
            s = await e2e.send(http, gw.partner_url, method, path, key=key, request_id=f"prom-{n}")
            assert s.status == status, (method, path)
            want[(route, partner, f"{status // 100}xx")] += 1
            n += 1
    await e2e.settle(gw)

    async def health_known() -> bool:
        states = {name: str(h.state) for name, h in gw.services.health.snapshot().items()}
        return states == {"api": "UP", "dead": "DOWN"}

    await e2e.wait_for(health_known, 15.0, "health states UP / DOWN")
    # on a loaded machine a batch may go through the spool first (the writer runs at idle priority):
    # scrape once every record is in the store, so the exposition can be compared with the rows
    tel = e2e.tel_of(gw)
    await e2e.wait_for(lambda: tel.counters()["written"] == n, 30.0, "every record written")

    status, text = await _scrape(http, gw.admin_url)
    assert status == 200
    samples = _samples(text)

    labels = ("route", "partner", "status_class")
    assert _by(samples["loomgate_http_server_requests_total"], *labels) == want
    assert _by(samples["loomgate_http_server_request_duration_seconds_count"], *labels) == want
    # the +Inf bucket holds every request; buckets are cumulative and use the semantic-convention bounds
    buckets = samples["loomgate_http_server_request_duration_seconds_bucket"]
    assert _by([b for b in buckets if b.labels["le"] == "+Inf"], *labels) == want
    bounds = sorted({float(b.labels["le"]) for b in buckets} - {float("inf")})
    assert bounds == list(DURATION_BUCKETS)
    for key in want:
        series = sorted((float(b.labels["le"]), b.value) for b in buckets
                        if tuple(b.labels[k] for k in labels) == key)
        assert [v for _, v in series] == sorted(v for _, v in series), key
    # the histogram sums the durations the span rows carry
    span_seconds = await e2e.scalar(
        gw, "SELECT sum(Duration) / 1e9 FROM otel_traces WHERE SpanKind = 'Server'")
    hist_sum = sum(s.value for s in samples["loomgate_http_server_request_duration_seconds_sum"])
    assert abs(hist_sum - span_seconds) < 1e-6 * max(1.0, span_seconds)

    assert samples["loomgate_http_server_received_requests_total"][0].value == n
    assert samples["loomgate_http_server_active_requests"][0].value == 0
    records = _by(samples["loomgate_telemetry_records_total"], "outcome")
    assert records[("written",)] == n and records[("queued",)] == n
    assert records[("dropped",)] == 0 and records[("spooled",)] == 0

    circuit = _by(samples["loomgate_circuit_breaker_state"], "upstream", "state")
    assert circuit == {("api", "closed"): 1, ("api", "half_open"): 0, ("api", "open"): 0,
                       ("dead", "closed"): 0, ("dead", "half_open"): 0, ("dead", "open"): 1}
    health = _by(samples["loomgate_upstream_health_state"], "upstream", "state")
    assert {k for k, v in health.items() if v == 1} == {("api", "UP"), ("dead", "DOWN")}
    assert len(health) == 8

    # no per-artisan or per-request labels anywhere
    assert not any(s.labels.get(k) for series in samples.values() for s in series
                   for k in ("artisan", "artisan_id", "path", "request_id"))

    # OpenMetrics when the scraper asks for it
    async with http.get(gw.admin_url + "/metrics", headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Accept": "application/openmetrics-text; version=1.0.0"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await r.text()).rstrip().endswith("# EOF")


def test_readme_scrape_job_targets_the_compose_gateways_admin_listener(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```yaml\n(.*?)```", (root / "README.md").read_text(), re.S)
    (job,) = [yaml.safe_load(b)["scrape_configs"][0] for b in blocks if "scrape_configs" in b]
    monkeypatch.setenv("CLICKHOUSE_USER", "u")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "p")
    monkeypatch.setenv("LOOMGATE_ADMIN_TOKEN", "compose-test-admin-token-0123456789")
    config = load_config(root / "config" / "docker-gateway.yaml")
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    host, port = job["static_configs"][0]["targets"][0].rsplit(":", 1)
    assert host in services and int(port) == config.admin_listener.port
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    assert "credentials_file" in job["authorization"]  # the token stays out of the scrape config
