"""collectors.cli_store: --config/--dsn/--database resolution, the admin API path and the direct path."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from collectors import cli_store, kpi_import, schema
from collectors.cli_store import StoreTarget, StoreTargetError
from gateway.config import TelemetryConfig
from gateway.testing import cli_config_yaml, free_port

TOKEN = "cli-store-secret"


def _config(tmp_path: Path, port: int, host: str = "127.0.0.1", token: str = TOKEN) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(cli_config_yaml(admin_port=port, admin_token=token, store_dir=tmp_path / "not-opened",
                                    admin_host=host, telemetry={"database": "cfg_db", "ttl": "7d"}))
    return path


# ------------------------------------------------------------------------------------------ resolution


def test_config_supplies_store_and_database(tmp_path: Path) -> None:
    target = cli_store.resolve(_config(tmp_path, 8081), None, None)
    assert target.dsn == f"chdb://{tmp_path / 'not-opened'}"
    assert target.database == "cfg_db" and target.telemetry.ttl_days == 7
    assert target.telemetry.store == target.dsn
    assert target.config is not None and target.config.admin_listener.token == TOKEN
    assert target.gateway_owned


def test_flags_override_the_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 8081)
    target = cli_store.resolve(cfg, "http://127.0.0.1:8123", None)
    assert (target.dsn, target.database, target.telemetry.ttl_days) == ("http://127.0.0.1:8123", "cfg_db", 7)
    assert not target.gateway_owned  # the gateway has another store open, not this one
    target = cli_store.resolve(cfg, None, "other_db")
    assert target.database == "other_db" and target.telemetry.database == "other_db"
    assert target.dsn == f"chdb://{tmp_path / 'not-opened'}"


def test_dsn_without_config_uses_telemetry_defaults() -> None:
    target = cli_store.resolve(None, "chdb:///tmp/somewhere", None)
    assert (target.dsn, target.database, target.config) == ("chdb:///tmp/somewhere", "otel", None)
    assert target.telemetry.ttl_days == TelemetryConfig().ttl_days
    assert not target.gateway_owned
    assert cli_store.resolve(None, "chdb:///tmp/somewhere", "x").database == "x"


def test_neither_config_nor_dsn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreTargetError, match=r"^give --config FILE or --dsn DSN$"):
        cli_store.resolve(None, None, "db")
    monkeypatch.chdir(tmp_path)
    target = cli_store.resolve(None, None, None, allow_defaults=True)
    assert target.dsn == f"chdb://{tmp_path / 'data' / 'clickhouse'}" and target.database == "otel"


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_config(tmp_path, 8081).read_text().replace("ttl: 7d", "ttl: soon"))
    with pytest.raises(StoreTargetError) as err:
        cli_store.resolve(bad, "chdb:///ignored", None)  # an explicit --dsn does not hide a broken file
    message = str(err.value)
    assert message.startswith("invalid config:\n  ")
    assert f"{bad}:" in message and "telemetry.ttl:" in message
    missing = tmp_path / "missing.yaml"
    with pytest.raises(StoreTargetError, match=r"missing\.yaml:1: cannot read the file"):
        cli_store.resolve(missing, None, None)


# ------------------------------------------------------------------------------------------- admin API


@pytest.fixture
async def admin_server() -> AsyncIterator[int]:
    """A real HTTP server shaped like the admin API: bearer auth, a JSON result and a JSON error."""

    async def result(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"code": "unauthorized", "message": "bad admin token",
                                                 "request_id": "r0"}}, status=401)
        return web.json_response({"path": request.path, "params": dict(request.query)})

    async def failure(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "bad_parameter", "message": "parameter 'periods': bad",
                                            "request_id": "r1"}}, status=400)

    async def plain(request: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream proxy says no")

    app = web.Application()
    app.router.add_get("/api/queries/{name}", result)
    app.router.add_get("/api/fail", failure)
    app.router.add_get("/api/plain", plain)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_admin_get_returns_the_json_result(admin_server: int, tmp_path: Path) -> None:
    target = cli_store.resolve(_config(tmp_path, admin_server), None, None)
    body = await asyncio.to_thread(cli_store.admin_get, target, "/api/queries/engagement",
                                   {"start": "-7d", "artisan": "A&B"})
    assert body == {"path": "/api/queries/engagement", "params": {"start": "-7d", "artisan": "A&B"}}
    assert await asyncio.to_thread(cli_store.gateway_running, target)


async def test_admin_listener_on_every_address_is_reached_on_loopback(admin_server: int,
                                                                      tmp_path: Path) -> None:
    target = cli_store.resolve(_config(tmp_path, admin_server, host="0.0.0.0"), None, None)
    body = await asyncio.to_thread(cli_store.admin_get, target, "/api/queries/x")
    assert body is not None and body["path"] == "/api/queries/x"


async def test_admin_get_raises_with_the_gateways_message(admin_server: int, tmp_path: Path) -> None:
    target = cli_store.resolve(_config(tmp_path, admin_server), None, None)
    with pytest.raises(StoreTargetError) as err:
        await asyncio.to_thread(cli_store.admin_get, target, "/api/fail", {"periods": "x"})
    assert str(err.value) == (f"gateway admin API http://127.0.0.1:{admin_server}/api/fail: 400: "
                              "parameter 'periods': bad")
    with pytest.raises(StoreTargetError, match=r"/api/plain: 502: upstream proxy says no$"):
        await asyncio.to_thread(cli_store.admin_get, target, "/api/plain")
    other = cli_store.resolve(_config(tmp_path, admin_server, token="not-the-token"), None, None)
    with pytest.raises(StoreTargetError, match=r": 401: bad admin token$"):
        await asyncio.to_thread(cli_store.admin_get, other, "/api/queries/x")


async def test_admin_get_refuses_another_database_while_the_gateway_runs(admin_server: int,
                                                                         tmp_path: Path) -> None:
    target = cli_store.resolve(_config(tmp_path, admin_server), None, "not_cfg_db")
    expected = r"^--database not_cfg_db: the running gateway .* answers for database 'cfg_db' only"
    with pytest.raises(StoreTargetError, match=expected):
        await asyncio.to_thread(cli_store.admin_get, target, "/api/queries/x")


def test_connection_refused_means_no_gateway(tmp_path: Path) -> None:
    target = cli_store.resolve(_config(tmp_path, free_port()), None, None)
    assert cli_store.admin_get(target, "/api/queries/x", {"a": "1"}) is None
    assert not cli_store.gateway_running(target)
    other_db = cli_store.resolve(_config(tmp_path, free_port()), None, "not_cfg_db")
    assert cli_store.admin_get(other_db, "/api/queries/x") is None


def test_admin_get_needs_a_config() -> None:
    with pytest.raises(StoreTargetError, match="needs --config FILE"):
        cli_store.admin_get(cli_store.resolve(None, "chdb:///x", None), "/api/sla")
    assert not cli_store.gateway_running(cli_store.resolve(None, "chdb:///x", None))


# ---------------------------------------------------------------------------------------- direct store


def test_open_store_opens_the_resolved_database(chdb_dsn: str) -> None:
    db = "cli_" + uuid.uuid4().hex[:10]
    store = cli_store.open_store(StoreTarget(chdb_dsn, TelemetryConfig(store=chdb_dsn, database=db)))
    try:
        assert store.database == db
        assert store.query("SELECT currentDatabase()").rows[0][0] == db
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{db}`")
        store.close()


async def test_store_owned_by_a_running_gateway_is_not_opened(admin_server: int, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, admin_server)
    target = cli_store.resolve(cfg, None, None)
    with pytest.raises(StoreTargetError, match=r"owns the embedded store chdb://.*; stop it, or use X$"):
        await asyncio.to_thread(cli_store.open_store, target, instead="use X")
    # The commands that write report it (exit 2) instead of fighting the gateway for the directory.
    data = tmp_path / "orders.csv"
    data.write_text("order_id\n")
    code = await asyncio.to_thread(kpi_import.cli_main, ["orders", str(data), "--config", str(cfg)])
    assert code == 2 and "send JSON Lines to its admin API: POST /api/kpi/orders" in capsys.readouterr().err
    code = await asyncio.to_thread(schema.cli_main, ["--config", str(cfg)])
    assert code == 2 and "stop it first" in capsys.readouterr().err
    assert not (tmp_path / "not-opened").exists()
