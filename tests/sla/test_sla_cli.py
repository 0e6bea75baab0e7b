"""`loomgate sla`: through a running gateway's admin API, and straight from the store when none answers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collectors import sla as slamod
from gateway.testing import free_port


def _yaml(admin_port: int, data_dir: Path, token: str = "admin-secret") -> str:
    return f"""
listeners:
  partner: {{host: 127.0.0.1, port: 0}}
  admin: {{host: 127.0.0.1, port: {admin_port}, token: {token}}}
upstreams:
  - {{name: inv, url: "http://127.0.0.1:1"}}
  - {{name: orders, url: "http://127.0.0.1:2"}}
routes:
  - {{name: stock, path: /v1/stock, methods: [GET], upstream: inv}}
  - {{name: orders, path: /v1/orders, methods: [GET], upstream: orders}}
partners:
  - {{id: p1, api_keys: [49482788a9c5f002e1c76e607262ea1354b34fa582dcbcc5284ebf833a4abbac]}}
telemetry:
  data_dir: {data_dir}
slas:
  - name: inventory-sync
    route: stock
    availability: 99.9
    latency: {{threshold: 0.3, target: 95}}
    sync_lag_p95: 5s
  - name: orders-api
    upstream: orders
    availability: 99.5
"""


async def test_cli_asks_the_running_gateway(status_env: Any, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    port = int(status_env.gw.admin_url.rsplit(":", 1)[1])
    cfg = tmp_path / "loomgate.yaml"
    cfg.write_text(_yaml(port, tmp_path / "data"))
    argv = ["--config", str(cfg), "--window", "30d", "--format", "json"]
    rc = await asyncio.to_thread(slamod.cli_main, argv)
    assert rc == 0
    rows = {r["sla"]: r for r in json.loads(capsys.readouterr().out)["slas"]}
    assert rows["inventory-sync"]["request_availability_pct"] == 98.5
    assert rows["inventory-sync"]["status"] == "BREACHED" and rows["orders-api"]["status"] == "OK"
    assert not (tmp_path / "data").exists()  # the embedded store was never opened

    rc = await asyncio.to_thread(slamod.cli_main, ["--config", str(cfg), "--window", "30d"])
    table = capsys.readouterr().out
    assert rc == 0 and table.splitlines()[0].startswith("SLA")
    assert any(line.split()[:3] == ["inventory-sync", "inv", "stock"] for line in table.splitlines())
    assert "BREACHED" in table and "availability budget overspent" in table

    rc = await asyncio.to_thread(slamod.cli_main, ["--config", str(cfg), "--format", "csv"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and lines[0].startswith("sla,upstream,route,") and len(lines) == 3


def test_cli_opens_the_store_when_no_gateway_answers(tmp_path: Path) -> None:
    """Own process (chDB binds one directory per process): seed a store, then run the command on it."""
    data = tmp_path / "data"
    cfg = tmp_path / "loomgate.yaml"
    cfg.write_text(_yaml(free_port(), data))
    seed = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from collectors.schema import migrate
from collectors.store import Store
from gateway.config_loader import load_config
import conftest as h
config = load_config({str(cfg)!r})
store = Store(config.store_dsn, config.telemetry.database)
migrate(store, config.telemetry)
now = time.time() - 120
h.insert_calls(store, [h.call(now - i, status=500 if i < 4 else 200, seq=i) for i in range(400)])
h.insert_calls(store, [h.call(now - i, upstream="orders", route="orders", seq=1000 + i) for i in range(10)])
store.close()
from collectors.sla import cli_main
sys.exit(cli_main(["--config", {str(cfg)!r}, "--window", "1d", "--format", "json"]))
"""
    proc = subprocess.run([sys.executable, "-c", seed], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    rows = {r["sla"]: r for r in json.loads(proc.stdout)["slas"]}
    assert rows["inventory-sync"]["requests"] == 400 and rows["inventory-sync"]["bad_requests"] == 4
    assert rows["inventory-sync"]["request_availability_pct"] == 99.0
    assert rows["orders-api"]["requests"] == 10 and rows["orders-api"]["status"] == "OK"


def test_cli_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert slamod.cli_main(["--window", "soon"]) == 2
    assert "--window" in capsys.readouterr().err
    missing = tmp_path / "nope.yaml"
    assert slamod.cli_main(["--config", str(missing)]) == 2
    assert "nope.yaml" in capsys.readouterr().err
