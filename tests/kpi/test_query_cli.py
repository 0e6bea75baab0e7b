"""`loomgate query`: --list, parameters, formats and errors, against a real store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from collectors import querylib
from collectors.store import Store

from .conftest import t
from .test_formulas import END, load_shop


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = querylib.cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_every_query_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--list"], capsys)
    assert code == 0
    lines = out.splitlines()
    for name in ("integration_health", "engagement", "retention_kpis", "health_vs_retention",
                 "integration_change_impact", "channel_roi", "benchmark_scorecard"):
        line = next(ln for ln in lines if ln.startswith(name + " "))
        assert querylib.load_query(name).description[:40] in line
    code, out, _ = _run(["--list", "-v"], capsys)
    assert "--param inactivity_days  UInt16 = '90'" in out
    assert "formula: repeat purchase rate = buyers with 2+ orders" in out


def test_run_with_params_in_each_format(kpi_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    load_shop(kpi_store)
    base = ["retention_kpis", "--dsn", kpi_store.dsn, "--database", kpi_store.database,
            "--param", f"end={END.isoformat()}", "-p", "periods=1", "-p", "inactivity_days=60",
            "-p", "artisan=A"]
    code, out, err = _run([*base, "--format", "json"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)
    assert (row["artisan"], row["orders"], row["repeat_purchase_rate"]) == ("A", 5, 0.3333)
    code, out, _ = _run([*base, "--format", "csv"], capsys)
    (crow,) = list(csv.DictReader(io.StringIO(out)))
    assert crow["cart_abandonment_rate"] == "0.5" and crow["nps"] == "25"
    code, out, _ = _run(base, capsys)
    assert out.splitlines()[0].split()[:3] == ["artisan", "period", "period_start"]
    assert out.rstrip().endswith("(1 row)")
    code, out, _ = _run(["channel_roi", "--dsn", kpi_store.dsn, "--database", kpi_store.database,
                         "-p", f"start={t(70, 0).isoformat()}", "-p", f"end={END.isoformat()}",
                         "-p", "spend_channels=influencer", "-p", "spend_amounts=45", "--format", "json"],
                        capsys)
    infl = next(r for r in json.loads(out) if r["channel"] == "influencer" and r["promo_code"] == "*")
    assert infl["roi"] == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["retention_kpis", "-p", "periods=many"],
         "parameter 'periods': bad UInt16 value: 'many' is not an integer"),
        (["retention_kpis", "-p", "colour=red"], "parameter 'colour': unknown parameter"),
        (["retention_kpis", "-p", "end=the-future"], "parameter 'end': bad DateTime64(3, 'UTC') value"),
        (["retention_kpis", "-p", "novalue"], "--param 'novalue': expected KEY=VALUE"),
        (["no_such_query"], "no query named 'no_such_query'"),
        ([], "give a query NAME or --list"),
    ],
)
def test_errors_exit_2_naming_the_problem(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                          chdb_dsn: str) -> None:
    code, out, err = _run([*argv, "--dsn", chdb_dsn], capsys)
    assert code == 2 and out == ""
    assert message in err


async def test_embedded_store_owned_by_a_gateway_is_queried_through_its_admin_api(
        kpi_store: Store, gateway: Any, upstream_server: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The config names an embedded store this process does not open: the answer can only come from the
    # running gateway's admin API (which reads kpi_store).
    import asyncio

    from collectors.store import ThreadStore
    from gateway.testing import ADMIN_TOKEN, cli_config_yaml, standard_config

    load_shop(kpi_store)
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    gw.services.store = ThreadStore(kpi_store)
    port = int(gw.admin_url.rsplit(":", 1)[1])
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(cli_config_yaml(admin_port=port, admin_token=ADMIN_TOKEN,
                                   store_dir=tmp_path / "not-opened"))
    argv = ["retention_kpis", "--config", str(cfg), "-p", f"end={END.isoformat()}", "-p", "periods=1",
            "-p", "inactivity_days=60", "-p", "artisan=A", "--format", "json"]
    code = await asyncio.to_thread(querylib.cli_main, argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    (row,) = json.loads(out.out)
    assert (row["artisan"], row["orders"], row["nps"]) == ("A", 5, 25.0)
    assert not (tmp_path / "not-opened").exists()
    # A bad parameter is still refused before any request.
    code = await asyncio.to_thread(querylib.cli_main, [*argv, "-p", "periods=x"])
    assert code == 2 and "parameter 'periods'" in capsys.readouterr().err
