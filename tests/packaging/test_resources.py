"""The query library, the schema DDL and the example configs are package data, found from any directory;
an installation without them fails with one clear line instead of succeeding with nothing.  A source tree
reads its own folders; an installation reads the private ``loomgate_data`` packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collectors import querylib, resources, schema

ROOT = Path(__file__).resolve().parents[2]


def test_resources_are_the_folders_of_this_checkout() -> None:
    assert resources.queries_dir() == ROOT / "queries"
    assert resources.schema_dir() == ROOT / "queries" / "schema"
    assert resources.example_config("demo.yaml") == ROOT / "config" / "demo.yaml"
    sql = sorted(p.stem for p in (ROOT / "queries").glob("*.sql"))
    assert [q.name for q in querylib.list_queries()] == sql and "sla_report" in sql
    assert [f.path.name for f in schema.schema_files()] == sorted(
        p.name for p in (ROOT / "queries" / "schema").glob("*.sql"))
    assert resources.example_configs() == sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


def test_missing_example_config_names_the_file() -> None:
    with pytest.raises(resources.ResourceError, match=r"config/nope\.yaml: the example config 'nope.yaml'"):
        resources.example_config("nope.yaml")


def test_empty_query_library_and_schema_directory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(querylib.QueryDefinitionError, match="no query files"):
        querylib.list_queries(tmp_path)
    with pytest.raises(schema.SchemaError, match="no schema files"):
        schema.schema_files(tmp_path)


def _cli(tmp_path: Path, site: Path, *argv: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``loomgate ARGV`` in a fresh interpreter that imports loomgate from ``site`` only."""
    code = f"import sys; {prelude}from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True, text=True,
                          timeout=120)


def _installed_code(tmp_path: Path) -> Path:
    """The code packages laid out as an installation lays them out (no source tree around them)."""
    site = tmp_path / "site"
    for pkg in ("gateway", "collectors"):
        shutil.copytree(ROOT / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return site


@pytest.fixture
def shadow(tmp_path: Path) -> Path:
    """An installation whose ``loomgate_data`` packages carry no data files."""
    site = _installed_code(tmp_path)
    for pkg in ("queries", "config"):
        (site / "loomgate_data" / pkg).mkdir(parents=True)
        (site / "loomgate_data" / pkg / "__init__.py").write_text("")
    (site / "loomgate_data" / "queries" / "schema").mkdir()
    return site


def test_cli_reports_an_installation_without_its_data(tmp_path: Path, shadow: Path) -> None:
    listing = _cli(tmp_path, shadow, "query", "--list")
    assert (listing.returncode, listing.stdout) == (2, "")
    data = shadow / "loomgate_data"
    assert listing.stderr == (f"loomgate query: {data / 'queries'}: no query files (*.sql): "
                              "the query library is missing\n")
    dry = _cli(tmp_path, shadow, "migrate", "--dry-run")
    assert (dry.returncode, dry.stdout) == (1, "")
    assert dry.stderr == (f"loomgate migrate: {data / 'queries' / 'schema'}: no schema files "
                          "(NNN_name.sql): the schema DDL is missing\n")
    demo = _cli(tmp_path, shadow, "demo", "--duration", "1")
    assert (demo.returncode, demo.stdout) == (1, "")
    assert demo.stderr == (f"loomgate demo: {data / 'config' / 'demo.yaml'}: the example config "
                           "'demo.yaml' is missing from this installation\n")
    examples = _cli(tmp_path, shadow, "example-config")
    assert (examples.returncode, examples.stdout) == (1, "")
    assert examples.stderr.startswith("loomgate example-config: ") and "no config files" in examples.stderr


def test_cli_reports_a_missing_data_package(tmp_path: Path) -> None:
    site = _installed_code(tmp_path)
    # no loomgate_data anywhere: not next to the code, nor from another install on sys.path
    result = _cli(tmp_path, site, "query", "--list", prelude="sys.modules['loomgate_data'] = None; ")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("loomgate query: package 'loomgate_data.queries' is not installed: reinstall "
                             "loomgate (its wheel ships the query library and example configs)\n")


def test_example_config_prints_a_shipped_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "example-config", "gateway.yaml"],
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout == (ROOT / "config" / "gateway.yaml").read_text(encoding="utf-8")
