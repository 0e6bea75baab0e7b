"""chDB is the ``embedded`` extra: without it, every command that would open a ``chdb://`` store stops with
one line naming the extra, and a ClickHouse server DSN still works as far as the config goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.testing import cli_config_yaml, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_chdb(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python processes (and the writer they start) cannot import chdb."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['chdb'] = None  # as if not installed\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), str(ROOT)]))


def _loomgate(env: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def _missing(dsn: str) -> str:
    return (f"{dsn}: the embedded store needs chDB, which is not installed: pip install 'loomgate[embedded]' "
            "(or use an http(s):// ClickHouse server)\n")


def test_the_hiding_works(no_chdb: dict[str, str], tmp_path: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import chdb"], env=no_chdb, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr


def test_store_commands_name_the_extra(no_chdb: dict[str, str], tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    migrate = _loomgate(no_chdb, tmp_path, "migrate", "--dsn", dsn)
    assert (migrate.returncode, migrate.stdout) == (1, "")
    assert migrate.stderr == "loomgate migrate: " + _missing(dsn)
    query = _loomgate(no_chdb, tmp_path, "query", "demo_summary", "--dsn", dsn)
    assert (query.returncode, query.stdout) == (1, "")
    assert query.stderr == "loomgate query: store: " + _missing(dsn)
    assert not (tmp_path / "store").exists()  # nothing was created on the way to the error


def test_serve_and_demo_name_the_extra(no_chdb: dict[str, str], tmp_path: Path) -> None:
    store = tmp_path / "store"
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(cli_config_yaml(admin_port=free_port(), admin_token="t0ken-for-tests", store_dir=store))
    serve = _loomgate(no_chdb, tmp_path, "serve", "--config", str(cfg))
    assert serve.returncode == 1
    assert serve.stderr.splitlines()[-1] + "\n" == (f"loomgate serve: {cfg}: telemetry.store: "
                                                    + _missing(f"chdb://{store}"))
    assert "Traceback" not in serve.stderr
    demo = _loomgate(no_chdb, tmp_path, "demo", "--duration", "1", "--no-kpi", "--data-dir", "d")
    assert demo.returncode == 1
    assert demo.stderr.splitlines()[-1].startswith("loomgate demo: ")
    assert demo.stderr.splitlines()[-1].endswith("demo.yaml: telemetry.store: "
                                                 + _missing(f"chdb://{tmp_path}/d/clickhouse").rstrip("\n"))
    assert "Traceback" not in demo.stderr


def test_query_list_and_dry_run_need_no_chdb(no_chdb: dict[str, str], tmp_path: Path) -> None:
    listing = _loomgate(no_chdb, tmp_path, "query", "--list")
    assert listing.returncode == 0 and "sla_report" in listing.stdout
    dry = _loomgate(no_chdb, tmp_path, "migrate", "--dry-run")
    assert dry.returncode == 0 and "CREATE TABLE IF NOT EXISTS `otel`.otel_traces " in dry.stdout
