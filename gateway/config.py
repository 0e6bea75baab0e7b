"""Loomgate configuration: typed, frozen objects parsed once at start-up.

Durations are float seconds, sizes are int bytes.  The YAML loader (``load_config``) lives in
``gateway.config_loader`` and reports every problem as ``FILE:LINE: key.path: what is wrong``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ArtisanSource = Literal["path", "header", "query", "json"]
SyncLagSource = Literal["header", "json"]


@dataclass(frozen=True, slots=True)
class Listener:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True)
class AdminListener:
    host: str = "127.0.0.1"
    port: int = 8081
    token: str = ""  # bearer token for everything but /healthz and /readyz


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    read: float = 10.0  # max silence between reads from the upstream
    total: float = 30.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    failures: int = 5  # consecutive failures that open the circuit
    cooldown: float = 10.0  # seconds before a half-open probe


@dataclass(frozen=True, slots=True)
class HealthCheck:
    interval: float = 10.0
    timeout: float = 2.0
    method: str = "GET"
    path: str = "/healthz"
    # Gatus-style conditions, e.g. "[STATUS] == 200", "[RESPONSE_TIME] < 300", "[BODY].status == ok"
    conditions: tuple[str, ...] = ("[STATUS] == 200",)
    failure_threshold: int = 3  # consecutive failures before DOWN
    success_threshold: int = 2  # consecutive successes before UP
    degraded_response_time_ms: float | None = None  # slower than this while up -> DEGRADED


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str  # base URL, e.g. http://127.0.0.1:9001 (may carry a path prefix)
    timeouts: Timeouts = field(default_factory=Timeouts)
    pool_size: int = 100
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    health_check: HealthCheck | None = None


@dataclass(frozen=True, slots=True)
class ArtisanLookup:
    source: ArtisanSource  # where the artisan id lives
    name: str  # path parameter, header name, query parameter, or dotted JSON path
    required: bool = True


@dataclass(frozen=True, slots=True)
class SyncLagLookup:
    source: SyncLagSource
    name: str  # header name or dotted JSON path; value is ISO-8601 or epoch seconds / milliseconds


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    path: str  # template, e.g. /v1/artisans/{artisan_id}/listings/{listing_id}/inventory
    methods: tuple[str, ...]
    upstream: str
    max_body_size: int = 1 << 20
    artisan: ArtisanLookup | None = None
    sync_lag: SyncLagLookup | None = None
    upstream_path: str | None = None  # optional rewrite template using the same parameters


@dataclass(frozen=True, slots=True)
class RateLimit:
    rps: float = 50.0
    burst: int = 100


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    api_key_sha256: tuple[str, ...]  # lowercase hex digests; raw keys are never stored
    artisans: tuple[str, ...] | Literal["*"] = "*"
    rate_limit: RateLimit = field(default_factory=RateLimit)

    def allows(self, artisan_id: str) -> bool:
        return self.artisans == "*" or artisan_id in self.artisans


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    dir: str = ""  # default: <data_dir>/spool
    max_bytes: int = 256 << 20


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    endpoint: str  # e.g. http://127.0.0.1:4318 (http/protobuf) or 127.0.0.1:4317 (grpc)
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    enabled: bool = True
    data_dir: str = "./data"
    store: str = ""  # DSN: chdb:///path (default <data_dir>/clickhouse) or http(s)://user:pass@host:port/db
    database: str = "otel"
    ttl_days: int = 30  # 0 = keep forever
    cluster: str | None = None  # renders ON CLUSTER and Replicated engines
    service_name: str = "loomgate"
    batch_window: float = 1.0  # max seconds a record waits in memory
    batch_size: int = 5000
    queue_max_records: int = 200_000  # in-memory bound before spilling to the spool
    # The writer holds small batches back to insert them together (each insert has a fixed ClickHouse
    # cost); held batches survive a gateway crash (the writer inserts them on EOF) or a writer crash (the
    # gateway keeps them until acknowledged), so this delays rows, it does not widen the crash window.
    insert_min_records: int = 20_000
    insert_max_wait: float = 2.0  # seconds
    # CPU priority of the writer process: "idle" (Linux SCHED_IDLE: only CPU time nothing else wants, so
    # it never delays proxying; on a saturated machine batches wait, then spill to the spool), "low"
    # (nice +10: a small guaranteed share) or "normal".
    writer_priority: Literal["idle", "low", "normal"] = "idle"
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    otlp: OtlpConfig | None = None
    write_store: bool = True  # False: OTLP only
    sync_lag_max_skew: float = 2.0  # a source time further in the future is invalid, not negative lag
    # Records the store rejects for their content go to <data_dir>/deadletter.jsonl, up to this size.
    dead_letter_max_bytes: int = 64 << 20
    # /readyz and the status page report telemetry as not written once spooled records have waited this
    # long (seconds) with nothing reaching the store.
    unwritten_alert_after: float = 60.0


@dataclass(frozen=True, slots=True)
class LatencyObjective:
    threshold: float  # seconds
    target: float  # percent of requests faster than threshold, e.g. 95.0


@dataclass(frozen=True, slots=True)
class Sla:
    name: str
    upstream: str | None = None  # exactly one of upstream / route
    route: str | None = None
    availability: float = 99.9  # percent
    latency: LatencyObjective | None = None
    sync_lag_p95: float | None = None  # seconds
    window: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Recurrence:
    every: Literal["daily", "weekly"]
    weekday: int | None = None  # 0 = Monday, for weekly
    at: str = "00:00"  # HH:MM UTC
    duration: float = 3600.0


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    name: str
    upstreams: tuple[str, ...] | Literal["*"] = "*"
    start: float | None = None  # epoch seconds, one-off windows
    end: float | None = None
    recurrence: Recurrence | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    url: str
    format: Literal["json", "slack"] = "json"
    timeout: float = 5.0
    max_retries: int = 5


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    evaluate_every: float = 30.0
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    max_line_size: int = 8190  # request line
    max_field_size: int = 8190  # one header
    max_headers: int = 100
    drain_timeout: float = 10.0  # graceful shutdown: wait this long for in-flight requests
    # Longest single wait for a partner to read the response (room to write) before the gateway closes the
    # connection; never counts against the upstream's timeouts.  Request body waits are body_idle_timeout's.
    client_idle_timeout: float = 30.0
    # Every connection ends: slow or idle clients are closed, each listener holds a bounded number.
    header_timeout: float = 10.0  # from connect (or a kept-alive request's first byte) to a full request head
    body_idle_timeout: float = 30.0  # longest silence while waiting for request body bytes (any route): 408
    keepalive_timeout: float = 15.0  # an idle kept-alive connection is closed after this
    max_connections: int = 10_000  # partner listener; over it, new connections get 503 and are closed
    admin_max_connections: int = 256  # admin listener, counted separately so partner floods never starve it
    # Failed authentication per client address: a bucket of `auth_failure_burst` failures refilled at
    # `auth_failure_rate` per second; once empty the address gets 429 auth_throttled until it refills.
    auth_failure_rate: float = 1.0
    auth_failure_burst: int = 20
    auth_tracked_addresses: int = 100_000  # least recently failing addresses are forgotten beyond this


@dataclass(frozen=True, slots=True)
class Config:
    source: str  # file the config came from, for messages
    partner_listener: Listener
    admin_listener: AdminListener
    upstreams: tuple[Upstream, ...]
    routes: tuple[Route, ...]
    partners: tuple[Partner, ...]
    limits: Limits = field(default_factory=Limits)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    slas: tuple[Sla, ...] = ()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    def upstream(self, name: str) -> Upstream:
        for u in self.upstreams:
            if u.name == name:
                return u
        raise KeyError(name)

    @property
    def store_dsn(self) -> str:
        t = self.telemetry
        if t.store:
            return t.store
        from pathlib import Path

        return "chdb://" + str((Path(t.data_dir) / "clickhouse").resolve())
