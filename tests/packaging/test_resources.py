"""The query library, the schema DDL and the example configs are package data, found from any directory;
an installation without them fails with one clear line instead of succeeding with nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
import queries
from collectors import querylib, resources, schema

ROOT = Path(__file__).resolve().parents[2]


def test_resources_are_the_importable_packages_of_this_checkout() -> None:
    assert resources.queries_dir() == Path(queries.__file__).parent == ROOT / "queries"
    assert resources.schema_dir() == ROOT / "queries" / "schema"
    assert resources.example_config("demo.yaml") == Path(config.__file__).parent / "demo.yaml"
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


def _cli(tmp_path: Path, shadow: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``loomgate ARGV`` in a fresh interpreter whose ``queries``/``config`` packages come from ``shadow``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def shadow(tmp_path: Path) -> Path:
    """Installed ``queries`` and ``config`` packages that carry no data files."""
    root = tmp_path / "site"
    for pkg in ("queries", "config"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "queries" / "schema").mkdir()
    return root


def test_cli_reports_an_installation_without_its_data(tmp_path: Path, shadow: Path) -> None:
    listing = _cli(tmp_path, shadow, "query", "--list")
    assert (listing.returncode, listing.stdout) == (2, "")
    assert listing.stderr == (f"loomgate query: {shadow / 'queries'}: no query files (*.sql): "
                              "the query library is missing\n")
    dry = _cli(tmp_path, shadow, "migrate", "--dry-run")
    assert (dry.returncode, dry.stdout) == (1, "")
    assert dry.stderr == (f"loomgate migrate: {shadow / 'queries' / 'schema'}: no schema files "
                          "(NNN_name.sql): the schema DDL is missing\n")
    demo = _cli(tmp_path, shadow, "demo", "--duration", "1")
    assert (demo.returncode, demo.stdout) == (1, "")
    assert demo.stderr == (f"loomgate demo: {shadow / 'config' / 'demo.yaml'}: the example config "
                           "'demo.yaml' is missing from this installation\n")
    examples = _cli(tmp_path, shadow, "example-config")
    assert (examples.returncode, examples.stdout) == (1, "")
    assert examples.stderr.startswith("loomgate example-config: ") and "no config files" in examples.stderr


def test_cli_reports_a_missing_data_package() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import sys; sys.modules['queries'] = None; from gateway.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "query", "--list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("loomgate query: package 'queries' is not installed: reinstall loomgate "
                             "(its wheel ships the query library and example configs)\n")


def test_example_config_prints_a_shipped_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "example-config", "gateway.yaml"],
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout == (ROOT / "config" / "gateway.yaml").read_text(encoding="utf-8")
