"""Long-lived services of a gateway process, started before the listeners and stopped after them.

Order matters: telemetry first (it owns the store), then health checks and alerts that write to it; on
shutdown the reverse, so telemetry flushes last and nothing already accepted is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collectors.record import NullSink, RecordSink
from collectors.store import AsyncStore
from gateway.config import Config


@dataclass
class Services:
    config: Config
    sink: RecordSink
    store: AsyncStore | None = None
    telemetry: Any = None  # collectors.exporter.Telemetry
    health: Any = None  # collectors.health.HealthMonitor
    alerts: Any = None  # collectors.alerts.AlertManager
    extras: dict[str, Any] = field(default_factory=dict)


async def start_services(config: Config, *, sink: RecordSink | None = None, writer_listen: str = "",
                         writer_authkey: bytes = b"") -> Services:
    """Start what the config asks for.  ``sink`` overrides telemetry (tests of the proxy alone);
    ``writer_listen``/``writer_authkey``: the socket gateway workers reach the writer on."""
    services = Services(config=config, sink=sink or NullSink())
    try:
        if sink is None and config.telemetry.enabled:
            from collectors.exporter import start_telemetry

            services.telemetry = await start_telemetry(config, listen=writer_listen, authkey=writer_authkey)
            services.sink = services.telemetry.sink
            services.store = services.telemetry.store
        if services.store is not None and any(u.health_check for u in config.upstreams):
            from collectors.health import start_health

            services.health = await start_health(config, services.store)
        if services.store is not None and (config.alerts.webhooks or config.slas):
            from collectors.alerts import start_alerts

            services.alerts = await start_alerts(config, services.store, services.health)
    except BaseException:
        await stop_services(services)
        raise
    return services


async def stop_services(services: Services) -> None:
    for svc in (services.alerts, services.health, services.telemetry):
        if svc is not None:
            await svc.close()
