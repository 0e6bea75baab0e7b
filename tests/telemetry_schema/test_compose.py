"""docker-compose.yml cannot run here: check its structure, the files it mounts and that ports line up."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config_loader import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / "otel-collector.yaml").read_text())


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service listens on inside the network: `expose` plus the container side of `ports`."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        ports.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _host_ports(services: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for svc in services.values():
        for p in svc.get("ports", []):
            parts = str(p).split(":")
            ip = parts[0] if len(parts) == 3 else "0.0.0.0"
            out.append((ip, int(parts[-2])))
    return out


def test_services_and_images(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert {"clickhouse", "otel-collector", "gateway", "migrate"} <= set(s)
    assert s["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert s["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    for name in ("gateway", "migrate"):
        assert s[name]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()
    assert s["gateway"]["command"] == ["serve", "--config", "/etc/loomgate/docker-gateway.yaml"]
    samples = [n for n, svc in s.items() if svc.get("entrypoint", [])[-1:] == ["gateway.sample_upstreams"]]
    assert samples, "a sample upstream service"


def test_every_mounted_local_file_exists(compose: dict[str, Any]) -> None:
    mounted = []
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                mounted.append(src)
                assert (ROOT / src).is_file() or (ROOT / src).is_dir(), src
    assert "./config/otel-collector.yaml" in mounted and "./config/docker-gateway.yaml" in mounted
    assert "./config/grafana/provisioning" in mounted and "./config/grafana/dashboards" in mounted


def test_published_ports_are_unique(compose: dict[str, Any]) -> None:
    ports = _host_ports(compose["services"])
    assert ports
    assert len({p for _, p in ports}) == len(ports)


def test_collector_writes_to_the_clickhouse_service(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    exp = collector["exporters"]["clickhouse"]
    ep = urlsplit(exp["endpoint"])
    assert ep.hostname == "clickhouse"
    assert ep.port in _container_ports(compose["services"]["clickhouse"])
    assert exp["database"] == compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_DB"]
    assert exp["traces_table_name"] == "otel_traces"
    assert {k: v["name"] for k, v in exp["metrics_tables"].items()} == {
        "gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum", "histogram": "otel_metrics_histogram",
        "exponential_histogram": "otel_metrics_exponential_histogram", "summary": "otel_metrics_summary"}
    assert exp["create_schema"] is False
    pipelines = collector["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["clickhouse"] and pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["metrics"]["exporters"] == ["clickhouse"]


def test_gateway_config_points_at_the_stack(compose: dict[str, Any], collector: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    monkeypatch.setenv("CLICKHOUSE_USER", "u")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "p")
    monkeypatch.setenv("LOOMGATE_ADMIN_TOKEN", "k" * 32)  # compose requires it; the config has no default
    cfg = load_config(ROOT / "config" / "docker-gateway.yaml")
    tel = cfg.telemetry

    # The gateway writes spans and metrics into the server itself (the embedded store's tables); exporting
    # OTLP to the collector too would store every span twice.
    assert tel.enabled and tel.write_store and tel.otlp is None

    store = urlsplit(tel.store)
    assert (store.hostname, store.username, store.password) == ("clickhouse", "u", "p")
    assert store.port in _container_ports(services["clickhouse"])
    assert tel.database == collector["exporters"]["clickhouse"]["database"]

    published = {int(str(p).rsplit(":", 1)[-1]) for p in services["gateway"]["ports"]}
    assert {cfg.partner_listener.port, cfg.admin_listener.port} == published
    for up in cfg.upstreams:
        u = urlsplit(up.url)
        assert u.hostname in services, up.url
        assert u.port in _container_ports(services[u.hostname]), up.url
        cmd = services[u.hostname]["command"]
        assert cmd[cmd.index("--port") + 1] == str(u.port)
