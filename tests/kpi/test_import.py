"""KPI import: all three formats, validation before anything is written, re-imports count once, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors import kpi_import
from collectors.kpi_import import KpiImportError, import_file, import_jsonl
from collectors.store import Store, ThreadStore

HEADER = "order_id,buyer_id,artisan_id,amount,currency,ts,channel,promo_code"
GOOD_CSV = (HEADER + "\n"
            "o1,b1,a1,10.50,EUR,2026-01-05T10:00:00Z,organic,\n"
            "o2,b1,a1,5,EUR,2026-01-06 09:30:00,influencer,MAYA10\n"
            "o3,b2,a2,12.25,EUR,1767225600,email,\n")


def _orders(store: Store) -> list[tuple]:
    return store.query("SELECT order_id, buyer_id, artisan_id, toFloat64(amount), channel, promo_code, "
                       "toUnixTimestamp(ts) FROM kpi_orders FINAL ORDER BY order_id").rows


def _stages(store: Store) -> int:
    return int(store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                           "AND name LIKE '\\_kpi\\_stage\\_%'").rows[0][0])


def test_csv_jsonl_parquet_give_the_same_rows(kpi_store: Store, tmp_path: Path) -> None:
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text(GOOD_CSV)
    assert import_file(kpi_store, "orders", csv_path, progress=False).rows == 3
    from_csv = _orders(kpi_store)
    assert from_csv == [("o1", "b1", "a1", 10.5, "organic", "", 1767607200),
                        ("o2", "b1", "a1", 5.0, "influencer", "MAYA10", 1767691800),
                        ("o3", "b2", "a2", 12.25, "email", "", 1767225600)]
    kpi_store.command("TRUNCATE TABLE kpi_orders")
    jl = tmp_path / "orders.jsonl"
    jl.write_text("\n".join(json.dumps(d) for d in [
        {"order_id": "o1", "buyer_id": "b1", "artisan_id": "a1", "amount": 10.5, "currency": "EUR",
         "ts": "2026-01-05T10:00:00Z", "channel": "organic"},
        {"order_id": "o2", "buyer_id": "b1", "artisan_id": "a1", "amount": "5", "currency": "EUR",
         "ts": "2026-01-06 09:30:00", "channel": "influencer", "promo_code": "MAYA10"},
        {"order_id": "o3", "buyer_id": "b2", "artisan_id": "a2", "amount": 12.25, "currency": "EUR",
         "ts": 1767225600, "channel": "email", "promo_code": None}]) + "\n")
    assert import_file(kpi_store, "orders", jl, progress=False).rows == 3
    assert _orders(kpi_store) == from_csv
    kpi_store.command("TRUNCATE TABLE kpi_orders")
    pq_path = tmp_path / "orders.parquet"
    pq.write_table(pa.table({
        "order_id": ["o1", "o2", "o3"], "buyer_id": ["b1", "b1", "b2"], "artisan_id": ["a1", "a1", "a2"],
        "amount": [10.5, 5.0, 12.25], "currency": ["EUR"] * 3,
        "ts": pa.array([1767607200, 1767691800, 1767225600], pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        "channel": ["organic", "influencer", "email"], "promo_code": [None, "MAYA10", None]}), pq_path)
    assert import_file(kpi_store, "orders", pq_path, progress=False).rows == 3
    assert _orders(kpi_store) == from_csv
    assert _stages(kpi_store) == 0


@pytest.mark.parametrize(("unit", "tz"), [("ms", "Europe/Paris"), ("us", "America/New_York"), ("s", None)])
def test_parquet_timestamps_import_as_instants_whatever_their_zone(kpi_store: Store, tmp_path: Path,
                                                                   unit: str, tz: str | None) -> None:
    # Parquet stores instants; a zone in the metadata (or none: naive, read as UTC) must not shift them
    epoch_s = [1767607200, 1767691800]
    scale = {"s": 1, "ms": 1000, "us": 1_000_000}[unit]
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.table({
        "order_id": ["o1", "o2"], "buyer_id": ["b1", "b2"], "artisan_id": ["a1", "a1"], "amount": [1.0, 2.0],
        "currency": ["EUR"] * 2, "channel": ["organic"] * 2, "promo_code": [None, None],
        "ts": pa.array([e * scale for e in epoch_s], pa.int64()).cast(pa.timestamp(unit, tz=tz))}), path)
    assert import_file(kpi_store, "orders", path, progress=False).rows == 2
    assert [r[6] for r in _orders(kpi_store)] == epoch_s


def test_reimport_does_not_double_count(kpi_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(GOOD_CSV)
    import_file(kpi_store, "orders", path, progress=False)
    # Same file again, plus a corrected amount for o3 in a later file: o3 counts once, latest value.
    import_file(kpi_store, "orders", path, progress=False)
    fix = tmp_path / "fix.csv"
    fix.write_text(HEADER + "\no3,b2,a2,13.00,EUR,1767225600,email,\n")
    import_file(kpi_store, "orders", fix, progress=False)
    rows = _orders(kpi_store)
    assert [r[0] for r in rows] == ["o1", "o2", "o3"]
    assert rows[2][3] == 13.0
    totals = kpi_store.query("SELECT count(), sum(toFloat64(amount)) FROM kpi_orders FINAL").rows[0]
    assert totals == (3, 28.5)


@pytest.mark.parametrize(
    ("body", "line", "row", "column", "reason"),
    [
        ("o1,b1,a1,10,EUR,2026-01-05,organic,\no2,b1,a1,abc,EUR,2026-01-05,organic,\n", 3, 2, "amount",
         "'abc' is not a decimal number"),
        ("o1,b1,a1,10,EUR,2026-01-05,organic,\no2,b1,a1,-3,EUR,2026-01-05,organic,\n", 3, 2, "amount",
         "'-3' is negative"),
        ("o1,b1,a1,10.50,EUR,2026-01-05,organic,\no2,b1,a1,12.345,EUR,2026-01-05,organic,\n", 3, 2,
         "amount", "'12.345' has more than 2 decimal places"),
        ("o1,b1,a1,10,EUR,yesterday,organic,\n", 2, 1, "ts", "'yesterday' is not a time"),
        ("o1,b1,a1,10,EUR,12,organic,\n", 2, 1, "ts", "'12' is not a time"),
        ("o1,,a1,10,EUR,2026-01-05,organic,\n", 2, 1, "buyer_id", "NULL/missing is empty"),
        ('o1,b1,a1,10,EUR,2026-01-05,"organic\nsocial",\no2,b1,a1,1,EUR,bad,x,\n', 4, 2, "ts",
         "'bad' is not a time"),
    ],
)
def test_bad_row_is_reported_and_nothing_is_written(kpi_store: Store, tmp_path: Path, body: str, line: int,
                                                     row: int, column: str, reason: str) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(HEADER + "\n" + body)
    with pytest.raises(KpiImportError) as err:
        import_file(kpi_store, "orders", path, progress=False)
    e = err.value
    assert (e.line, e.row, e.column) == (line, row, column)
    assert reason in e.reason
    assert str(e).startswith(f"{path}: line {line} (row {row}): column {column}: ")
    assert str(e).endswith("nothing was imported")
    assert kpi_store.query("SELECT count() FROM kpi_orders").rows[0][0] == 0
    assert _stages(kpi_store) == 0


def test_structural_errors(kpi_store: Store, tmp_path: Path) -> None:
    unknown = tmp_path / "orders.csv"
    unknown.write_text(HEADER + ",colour\no1,b1,a1,1,EUR,2026-01-05,organic,,red\n")
    with pytest.raises(KpiImportError, match="column colour: unknown column"):
        import_file(kpi_store, "orders", unknown, progress=False)
    broken = tmp_path / "carts.jsonl"
    broken.write_text('{"cart_id": "c1", "buyer_id": "b", "artisan_id": "a", "event": "created", '
                      '"ts": "2026-01-05"}\n\n{"cart_id": "c2", "buyer_id": \n')
    with pytest.raises(KpiImportError) as err:
        import_file(kpi_store, "cart_events", broken, progress=False)
    assert err.value.row == 2 and err.value.line == 3 and "cannot parse jsonl" in str(err.value)
    bad_enum = tmp_path / "carts2.jsonl"
    bad_enum.write_text('{"cart_id": "c1", "buyer_id": "b", "artisan_id": "a", "event": "bought", '
                        '"ts": "2026-01-05"}\n')
    with pytest.raises(KpiImportError, match="column event: 'bought' is not one of created, checkout"):
        import_file(kpi_store, "cart_events", bad_enum, progress=False)
    with pytest.raises(KpiImportError, match="unknown KPI table 'payments'"):
        import_file(kpi_store, "payments", unknown, progress=False)
    assert kpi_store.query("SELECT count() FROM kpi_cart_events").rows[0][0] == 0


def test_cross_column_rules(kpi_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "surveys.csv"
    path.write_text("survey_id,kind,artisan_id,ts,answered,score\n"
                    "s1,nps,a1,2026-01-05,true,9\n"
                    "s2,nps,a1,2026-01-05,false,4\n")
    with pytest.raises(KpiImportError) as err:
        import_file(kpi_store, "survey_responses", path, progress=False)
    assert (err.value.line, err.value.column) == (3, "score")
    assert "has a value but answered is false" in str(err.value)


async def test_jsonl_body_import(kpi_store: Store) -> None:
    astore = ThreadStore(kpi_store)
    good = (b'{"change_id": "c1", "partner_id": "p", "artisan_id": "*", "description": "v2", '
            b'"kind": "version_upgrade", "ts": "2026-01-05T00:00:00Z"}\n')
    assert (await import_jsonl(astore, "integration_changes", good)).rows == 1
    # Kinds are free-form labels: a new kind and a placebo flag need no schema change ...
    placebo = (b'{"change_id": "c0", "partner_id": "p", "artisan_id": "*", "description": "", '
               b'"kind": "pricing_test", "ts": "2026-01-02", "placebo": true}\n')
    assert (await import_jsonl(astore, "integration_changes", placebo)).rows == 1
    # ... but a label is still checked.
    bad = good + b'\n{"change_id": "c2", "partner_id": "p", "artisan_id": "*", "kind": "roll back!", ' \
                 b'"ts": "2026-01-06"}\n'
    with pytest.raises(KpiImportError) as err:
        await import_jsonl(astore, "integration_changes", bad)
    assert (err.value.line, err.value.row, err.value.column) == (3, 2, "kind")
    with pytest.raises(KpiImportError, match="line 1: column colour: unknown column"):
        await import_jsonl(astore, "integration_changes", b'{"colour": "red"}\n')
    assert kpi_store.query("SELECT count() FROM kpi_integration_changes FINAL").rows[0][0] == 2
    assert kpi_store.query("SELECT kind, placebo FROM kpi_integration_changes FINAL ORDER BY change_id"
                           ).rows == [("pricing_test", True), ("version_upgrade", False)]


def test_cli_import(kpi_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(GOOD_CSV)
    args = ["orders", str(path), "--dsn", kpi_store.dsn, "--database", kpi_store.database]
    assert kpi_import.cli_main(args) == 0
    captured = capsys.readouterr()
    assert f"imported 3 rows into kpi_orders from {path}" in captured.out
    assert "import orders.csv [" in captured.err  # the progress bar
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "\no9,b1,a1,oops,EUR,2026-01-05,organic,\n")
    assert kpi_import.cli_main(["orders", str(bad), "--dsn", kpi_store.dsn, "--database", kpi_store.database,
                                "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: line 2 (row 1): column amount: 'oops' is not a decimal number" in err
    assert kpi_import.cli_main(["orders", str(tmp_path / "x.txt"), "--dsn", kpi_store.dsn]) == 2
    assert "pass --format" in capsys.readouterr().err
    assert kpi_store.query("SELECT count() FROM kpi_orders FINAL").rows[0][0] == 3
