"""`loomgate import` column handling: --map / --map-file rename file columns, every unknown and missing
column is reported in one pass, and --help names the required columns of every table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectors import import_cli
from collectors.kpi_import import KpiImportError, import_file
from collectors.store import Store

RENAMED = ("order,customer,maker,total,currency,placed_at,channel\n"
           "o1,b1,a1,12.50,EUR,2026-01-05T10:00:00Z,organic\n"
           "o2,b2,a1,3.00,EUR,2026-01-06T10:00:00Z,email\n")
MAP = {"order": "order_id", "customer": "buyer_id", "maker": "artisan_id", "total": "amount",
       "placed_at": "ts"}


def _args(store: Store, *extra: str) -> list[str]:
    return ["--dsn", store.dsn, "--database", store.database, "--no-progress", *extra]


def test_map_items_and_map_file_rename_columns(kpi_store: Store, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shop_export.csv"
    path.write_text(RENAMED)
    maps = [f"--map={k}={v}" for k, v in MAP.items()]
    assert import_cli.cli_main(["orders", str(path), *_args(kpi_store, *maps)]) == 0
    assert "imported 2 rows into kpi_orders" in capsys.readouterr().out
    got = kpi_store.query("SELECT order_id, buyer_id, artisan_id, toString(amount), promo_code "
                          "FROM kpi_orders FINAL ORDER BY order_id").rows
    assert got == [("o1", "b1", "a1", "12.5", ""), ("o2", "b2", "a1", "3", "")]
    # The same through a JSON mapping file, into a clean table.
    kpi_store.command("TRUNCATE TABLE kpi_orders")
    map_file = tmp_path / "orders_map.json"
    map_file.write_text(json.dumps(MAP))
    assert import_cli.cli_main(["orders", str(path), *_args(kpi_store, "--map-file", str(map_file))]) == 0
    assert kpi_store.query("SELECT count() FROM kpi_orders FINAL").rows[0][0] == 2


def test_unknown_and_missing_columns_in_one_pass(kpi_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer,amount,colour,currency,ts,size\no1,b1,1,red,EUR,2026-01-05,L\n")
    with pytest.raises(KpiImportError) as err:
        import_file(kpi_store, "orders", path, progress=False, mapping={"amt": "amount"})
    text = str(err.value)
    for part in ("column customer: unknown column", "column colour: unknown column",
                 "column size: unknown column", "--map amt=amount: the file has no column 'amt'",
                 "missing required column(s): buyer_id, artisan_id, channel", "nothing was imported"):
        assert part in text, (part, text)
    assert kpi_store.query("SELECT count() FROM kpi_orders").rows[0][0] == 0


def test_help_names_required_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        import_cli.cli_main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert ("orders: order_id, buyer_id, artisan_id, amount, currency, ts, channel  [optional: promo_code]"
            in out)
    assert "spans: Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, Duration" in out
    assert "--map SOURCE=TARGET" in out
