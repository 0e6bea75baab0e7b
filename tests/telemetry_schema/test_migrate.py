"""Schema migration: idempotence, the ledger, immutability of applied files, rendering and the CLI."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from collectors.schema import (
    SCHEMA_DIR,
    RenderContext,
    SchemaError,
    cli_main,
    migrate,
    plan,
    render,
    schema_files,
    split_statements,
)
from collectors.store import Store
from gateway.config import TelemetryConfig

TELEMETRY_TABLES = {
    "loomgate_schema_migrations", "otel_traces", "otel_traces_trace_id_ts", "otel_traces_trace_id_ts_mv",
    "otel_metrics_sum", "otel_metrics_gauge", "otel_metrics_histogram", "otel_metrics_exponential_histogram",
    "otel_metrics_summary", "loomgate_calls_1m", "loomgate_calls_1m_mv", "loomgate_upstream_1m",
    "loomgate_upstream_1m_mv",
}


def _tables(store: Store) -> set[str]:
    res = store.query("SELECT name FROM system.tables WHERE database = {db:String}", {"db": store.database})
    return {r[0] for r in res.rows}


def _copy_telemetry_files(dst: Path) -> Path:
    for sf in schema_files():
        if sf.version < 10:
            shutil.copy(sf.path, dst / sf.path.name)
    return dst


def test_migrate_twice_is_idempotent(store: Store) -> None:
    tcfg = TelemetryConfig(database=store.database)
    first = migrate(store, tcfg)
    tables = _tables(store)
    second = migrate(store, tcfg)
    assert [sf.name for sf in schema_files()] == first
    assert second == []
    assert _tables(store) == tables
    assert tables >= TELEMETRY_TABLES
    ledger = store.query("SELECT version, name, checksum FROM loomgate_schema_migrations ORDER BY version")
    expected = [(sf.version, sf.name, sf.checksum) for sf in schema_files()]
    assert [(v, n, c) for v, n, c in ledger.rows] == expected


def test_new_file_is_applied_later_and_only_once(store: Store, tmp_path: Path) -> None:
    d = _copy_telemetry_files(tmp_path)
    tcfg = TelemetryConfig(database=store.database)
    migrate(store, tcfg, d)
    (d / "009_extra.sql").write_text(
        "-- 009 extra: test table\nCREATE TABLE IF NOT EXISTS {{DB}}.extra {{ON_CLUSTER}} (x UInt8)\n"
        "ENGINE = {{ENGINE:ReplacingMergeTree(x)}} ORDER BY x;\n"
    )
    assert migrate(store, tcfg, d) == ["009_extra"]
    assert migrate(store, tcfg, d) == []
    assert "extra" in _tables(store)


def test_changed_applied_file_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    d = _copy_telemetry_files(tmp_path)
    tcfg = TelemetryConfig(database=store.database)
    migrate(store, tcfg, d)
    target = d / "003_loomgate_calls_1m.sql"
    target.write_text(target.read_text() + "\n-- edited after release\n")
    with pytest.raises(SchemaError) as err:
        migrate(store, tcfg, d)
    msg = str(err.value)
    assert "003_loomgate_calls_1m.sql" in msg and "checksum" in msg and "new numbered file" in msg


def test_unknown_placeholder_and_bad_names_are_rejected(tmp_path: Path) -> None:
    ctx = RenderContext(database="otel")
    with pytest.raises(SchemaError, match="unknown placeholder"):
        render("SELECT {{NOPE}}", ctx)
    with pytest.raises(SchemaError, match="engine"):
        render("ENGINE = {{ENGINE:Log}}", ctx)
    (tmp_path / "1_bad.sql").write_text("SELECT 1")
    with pytest.raises(SchemaError, match="NNN_lowercase_name"):
        schema_files(tmp_path)
    (tmp_path / "1_bad.sql").unlink()
    (tmp_path / "005_a.sql").write_text("SELECT 1")
    (tmp_path / "005_b.sql").write_text("SELECT 2")
    with pytest.raises(SchemaError, match="005"):
        schema_files(tmp_path)


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = "-- head; not a split\nSELECT 'a;b', `c;d` /* x; y */;\n\n-- only comment;\nSELECT 2;\n-- trailing"
    assert split_statements(sql) == ["SELECT 'a;b', `c;d`", "SELECT 2"]


def test_single_server_rendering() -> None:
    text = "\n".join(s for _, stmts in plan(TelemetryConfig(database="otel", ttl_days=30)) for s in stmts)
    assert "ON CLUSTER" not in text and "Replicated" not in text
    assert "CREATE TABLE IF NOT EXISTS `otel`.otel_traces" in text
    assert "ENGINE = MergeTree\n" in text
    assert "TTL toDateTime(Timestamp) + toIntervalDay(30)" in text
    assert "TTL minute + toIntervalDay(400)" in text
    assert "non_replicated_deduplication_window = 10000" in text
    assert "{{" not in text


def test_on_cluster_rendering_dry_run() -> None:
    tcfg = TelemetryConfig(database="obs", cluster="shop_cluster", ttl_days=0)
    stmts = [s for _, ss in plan(tcfg) for s in ss]
    creates = [s for s in stmts if s.startswith("CREATE")]
    assert creates and all("ON CLUSTER `shop_cluster`" in s for s in creates)
    traces = next(s for s in stmts if "`obs`.otel_traces " in s)
    path = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
    assert f"ENGINE = ReplicatedMergeTree({path})" in traces
    assert "replicated_deduplication_window = 10000" in traces and "non_replicated" not in traces
    assert "TTL" not in traces  # ttl_days = 0 keeps forever
    rollup = next(s for s in stmts if "`obs`.loomgate_calls_1m " in s)
    assert f"ReplicatedAggregatingMergeTree({path})" in rollup
    assert render("{{ENGINE:ReplacingMergeTree(ver)}}", RenderContext("obs", "c")) == (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', ver)"
    )


def test_cli_dry_run_prints_rendered_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--dry-run", "--database", "dry_db"]) == 0
    out = capsys.readouterr().out
    assert "-- 001_otel_traces.sql" in out
    assert "CREATE TABLE IF NOT EXISTS `dry_db`.otel_traces" in out
    assert "{{" not in out


def test_cli_applies_to_a_store(chdb_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = "cli_" + uuid.uuid4().hex[:10]
    try:
        assert cli_main(["--dsn", chdb_dsn, "--database", db]) == 0
        assert "applied" in capsys.readouterr().out
        assert cli_main(["--dsn", chdb_dsn, "--database", db]) == 0
        assert "up to date" in capsys.readouterr().out
    finally:
        Store(chdb_dsn, db).command(f"DROP DATABASE IF EXISTS `{db}`")


def test_cli_reports_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gw.yaml"
    bad.write_text("telemetry: [not, a, mapping]\n")
    assert cli_main(["--config", str(bad), "--dry-run"]) == 2
    assert "invalid config" in capsys.readouterr().err


def test_every_schema_file_has_a_header_comment() -> None:
    for sf in schema_files(SCHEMA_DIR):
        assert sf.text.lstrip().startswith("--"), f"{sf.path}: needs a header comment"


def test_migrate_ttl_flag_sets_and_changes_retention(store: Store,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from collectors.schema import cli_main, ttl_days_of

    base = ["--dsn", store.dsn, "--database", store.database]
    assert cli_main([*base, "--ttl", "90d"]) == 0
    assert (ttl_days_of(store, "otel_traces"), ttl_days_of(store, "loomgate_calls_1m")) == (90, 400)
    assert cli_main([*base, "--ttl", "0"]) == 0  # existing tables follow the flag
    assert "otel_traces: TTL 90 days -> none (kept forever)" in capsys.readouterr().out
    assert (ttl_days_of(store, "otel_traces"), ttl_days_of(store, "loomgate_calls_1m")) == (0, 0)
    assert cli_main([*base, "--ttl", "500"]) == 0
    assert (ttl_days_of(store, "otel_traces"), ttl_days_of(store, "loomgate_calls_1d")) == (500, 500)
    with pytest.raises(SystemExit) as stop:
        cli_main([*base, "--ttl", "3 weeks"])
    assert stop.value.code == 2
    assert "expected whole days" in capsys.readouterr().err
