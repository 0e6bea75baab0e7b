"""``GET /metrics`` on the admin listener: the Prometheus exposition of the gateway's live state.

A custom ``prometheus_client`` collector reads everything at scrape time; nothing is updated per request:

- ``loomgate_http_server_request_duration_seconds`` (histogram) and ``loomgate_http_server_requests_total``
  by ``route``, ``partner``, ``status_class``: folded from the telemetry batches
  (``collectors.request_stats``), so at most one ``telemetry.batch_window`` behind; absent when telemetry
  is disabled;
- ``loomgate_http_server_active_requests`` and ``loomgate_http_server_received_requests_total``: the proxy's
  own live counters (no lag);
- ``loomgate_telemetry_records_total`` by ``outcome`` (queued, written, spooled, dropped, replayed, and any
  other outcome the pipeline counts);
- ``loomgate_circuit_breaker_state`` by ``upstream`` and ``state`` (1 for the current state, 0 for the
  others) and ``loomgate_circuit_breaker_consecutive_failures``;
- ``loomgate_upstream_health_state`` by ``upstream`` and ``state`` (UP, DEGRADED, DOWN, UNKNOWN), for
  upstreams with a health check;
- the client library's ``process_*`` and ``python_info`` series.

Labels are config names only (routes, partners, upstreams): no artisan ids, paths or request ids.

``/metrics`` needs the admin token like every other admin route: the series name the partners.  Prometheus
sends it as a bearer token (``authorization: {credentials_file: ...}`` in the scrape config).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from collectors.health import State
from collectors.metrics import DURATION_BUCKETS
from collectors.request_stats import Series, SeriesKey
from gateway.app import PROXY_KEY
from gateway.appkeys import SERVICES_KEY
from gateway.fleet import FLEET_KEY, Fleet
from gateway.proxy import Proxy
from gateway.services import Services

CIRCUIT_STATES = ("closed", "half_open", "open")
HEALTH_STATES = tuple(str(s) for s in State)
_BOUNDS = [repr(float(b)) for b in DURATION_BUCKETS]

REGISTRY_KEY = web.AppKey("loomgate.metrics_registry", CollectorRegistry)


class GatewayCollector(Collector):
    """Reads the proxy, the telemetry pipeline and the health monitor when Prometheus scrapes."""

    def __init__(self, proxy: Proxy, services: Services) -> None:
        self._proxy = proxy
        self._services = services

    # What is read, separately from how it is exposed: FleetCollector reads every worker instead.
    def _inflight(self) -> int:
        return self._proxy.inflight

    def _received(self) -> int:
        return self._proxy.requests_total

    def _series(self) -> dict[SeriesKey, Series]:
        return self._services.telemetry.request_stats.snapshot()

    def _counters(self) -> dict[str, int]:
        return dict(self._services.telemetry.counters())

    def _breaker_states(self) -> dict[str, tuple[str, int]]:
        return {name: (pool.breaker.state, pool.breaker.consecutive_failures)
                for name, pool in self._proxy.upstreams.items()}

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        active = GaugeMetricFamily("loomgate_http_server_active_requests",
                                   "Partner requests being served now.")
        active.add_metric([], self._inflight())
        yield active
        received = CounterMetricFamily("loomgate_http_server_received_requests",
                                       "Partner requests received since start, including unparseable ones.")
        received.add_metric([], self._received())
        yield received
        yield from self._telemetry()
        yield from self._breakers()
        yield from self._health()

    def _requests(self) -> Iterator[Metric]:
        telemetry = self._services.telemetry
        if telemetry is None:
            return
        labels = ["route", "partner", "status_class"]
        hist = HistogramMetricFamily(
            "loomgate_http_server_request_duration_seconds",
            "Duration of partner requests (first byte in to last byte out), by route, partner and status "
            "class; from the telemetry batches.", labels=labels, unit="seconds")
        total = CounterMetricFamily("loomgate_http_server_requests",
                                    "Partner requests answered, by route, partner and status class; from "
                                    "the telemetry batches.", labels=labels)
        for key, series in sorted(self._series().items(),
                                  key=lambda kv: (kv[0].route, kv[0].partner, kv[0].status_class)):
            values = [key.route, key.partner, key.status_class]
            cumulative, running = [], 0
            for bound, n in zip([*_BOUNDS, "+Inf"], series.buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            hist.add_metric(values, cumulative, series.sum_seconds)
            total.add_metric(values, running)
        yield hist
        yield total

    def _telemetry(self) -> Iterator[Metric]:
        telemetry = self._services.telemetry
        if telemetry is None:
            return
        records = CounterMetricFamily("loomgate_telemetry_records",
                                      "Call records by telemetry pipeline outcome since start.",
                                      labels=["outcome"])
        for outcome, value in sorted(self._counters().items()):
            records.add_metric([outcome], value)
        yield records

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("loomgate_circuit_breaker_state",
                                  "Circuit breaker state per upstream: 1 for the current state.",
                                  labels=["upstream", "state"])
        failures = GaugeMetricFamily("loomgate_circuit_breaker_consecutive_failures",
                                     "Consecutive failures counted by each upstream's breaker.",
                                     labels=["upstream"])
        for name, (current, consecutive) in sorted(self._breaker_states().items()):
            for s in CIRCUIT_STATES:
                state.add_metric([name, s], 1.0 if s == current else 0.0)
            failures.add_metric([name], consecutive)
        yield state
        yield failures

    def _health(self) -> Iterator[Metric]:
        monitor: Any = self._services.health
        if monitor is None:
            return
        state = GaugeMetricFamily("loomgate_upstream_health_state",
                                  "Active health-check state per upstream: 1 for the current state.",
                                  labels=["upstream", "state"])
        for name, health in sorted(monitor.snapshot().items()):
            for s in HEALTH_STATES:
                state.add_metric([name, s], 1.0 if s == str(health.state) else 0.0)
        yield state


class FleetCollector(GatewayCollector):
    """The same metrics summed over every gateway worker (``gateway.fleet``)."""

    def __init__(self, proxy: Proxy, services: Services, fleet: Fleet) -> None:
        super().__init__(proxy, services)
        self._fleet = fleet

    def _inflight(self) -> int:
        return self._fleet.inflight

    def _received(self) -> int:
        return self._fleet.requests_total

    def _series(self) -> dict[SeriesKey, Series]:
        return self._fleet.request_series()

    def _counters(self) -> dict[str, int]:
        return self._fleet.telemetry_counters()

    def _breaker_states(self) -> dict[str, tuple[str, int]]:
        states = {name: ("closed", 0) for name in self._proxy.upstreams}
        for name, up in self._fleet.breakers().items():
            states[name] = (up["circuit"], up["consecutive_failures"])
        return states


def build_registry(proxy: Proxy, services: Services, fleet: Fleet | None = None) -> CollectorRegistry:
    """One registry per admin application (never the library's global one: tests run many gateways)."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(proxy, services) if fleet is None
                      else FleetCollector(proxy, services, fleet))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


async def metrics(request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application) -> None:
    app[REGISTRY_KEY] = build_registry(app[PROXY_KEY], app[SERVICES_KEY], app.get(FLEET_KEY))
    app.router.add_get("/metrics", metrics)
