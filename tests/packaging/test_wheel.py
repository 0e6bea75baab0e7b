"""The wheel, installed non-editable into a fresh venv, works from a directory outside the checkout: the
packaged SQL, schema and configs are found, and the demo, query, migrate, sla and serve commands run.  The
data ships as ``loomgate_data.queries`` / ``loomgate_data.config``, never as top-level ``queries`` or
``config`` packages; an editable install reads the source tree's folders."""

from __future__ import annotations

import email
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from trove_classifiers import classifiers as known_classifiers

from gateway import __version__
from gateway.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
DATA = {"queries": "loomgate_data/", "config": "loomgate_data/"}  # repository folder -> where it ships
pytestmark = pytest.mark.slow


def _loomgate(wheel: Any, cwd: Path, *argv: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(wheel.bin / "loomgate"), *argv], cwd=cwd, env=env or wheel.env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with no checkout in sight."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


def _repo_files(pattern: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern)}


def test_wheel_carries_the_sql_schema_configs_and_licence(installed_wheel: Any) -> None:
    with zipfile.ZipFile(installed_wheel.wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"loomgate-{__version__}.dist-info"
        meta = email.message_from_bytes(zf.read(f"{dist_info}/METADATA"))
        licence = zf.read(f"{dist_info}/licenses/LICENSE").decode()
    for pattern in ("queries/*.sql", "queries/schema/*.sql", "config/*.yaml", "gateway/static/*"):
        expected = {DATA.get(n.split("/")[0], "") + n for n in _repo_files(pattern)}
        assert expected and expected <= names, pattern
    assert {"loomgate_data/queries/__init__.py", "loomgate_data/config/__init__.py"} <= names
    assert {n.split("/")[0] for n in names} == {"gateway", "collectors", "loomgate_data", dist_info}
    assert licence == (ROOT / "LICENSE").read_text() and "Apache License" in licence
    assert meta["Version"] == __version__ and meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.11"
    requires = meta.get_all("Requires-Dist")
    assert 'chdb>=4.4; extra == "embedded"' in requires
    assert not [r for r in requires if r.startswith("chdb") and "extra" not in r]
    assert {"embedded", "test"} <= set(meta.get_all("Provides-Extra"))
    classifiers = meta.get_all("Classifier")
    assert classifiers and set(classifiers) <= known_classifiers
    assert meta["Keywords"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["Name"] == pyproject["project"]["name"] and pyproject["project"]["license"] == "Apache-2.0"


def test_installed_packages_are_the_wheels(installed_wheel: Any, elsewhere: Path) -> None:
    code = "import collectors, gateway, loomgate_data.config as c, loomgate_data.queries as q; " \
           "print(*[m.__file__ for m in (collectors, gateway, c, q)], sep='\\n')"
    out = subprocess.run([str(installed_wheel.bin / "python"), "-c", code], cwd=elsewhere,
                         env=installed_wheel.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    site = str(installed_wheel.venv)
    assert all(line.startswith(site) for line in out.stdout.splitlines()), out.stdout
    assert len(out.stdout.splitlines()) == 4
    # nothing installed under the names other distributions and user modules use
    (record,) = installed_wheel.venv.glob("lib/python*/site-packages/loomgate-*.dist-info/RECORD")
    tops = {line.split("/")[0].split(",")[0] for line in record.read_text().splitlines()}
    assert not tops & {"queries", "config", "queries.py", "config.py"}, tops
    assert not [p for p in record.parent.parent.iterdir() if p.name in ("queries", "config")]


def test_version_list_dry_run_and_example_config(installed_wheel: Any, elsewhere: Path) -> None:
    version = _loomgate(installed_wheel, elsewhere, "--version")
    assert (version.returncode, version.stdout) == (0, f"loomgate {__version__}\n")

    listing = _loomgate(installed_wheel, elsewhere, "query", "--list")
    assert listing.returncode == 0, listing.stderr
    listed = [line.split()[0] for line in listing.stdout.splitlines()]
    assert listed == sorted(p.stem for p in (ROOT / "queries").glob("*.sql"))

    dry = _loomgate(installed_wheel, elsewhere, "migrate", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    headers = [line.split()[1] for line in dry.stdout.splitlines() if line.startswith("-- ")
               and line.endswith(")") and "(sha256 " in line]
    assert headers == sorted(p.name for p in (ROOT / "queries" / "schema").glob("*.sql"))
    assert "CREATE TABLE IF NOT EXISTS `otel`.otel_traces" in dry.stdout

    example = _loomgate(installed_wheel, elsewhere, "example-config", "docker-gateway.yaml")
    assert example.returncode == 0
    assert example.stdout == (ROOT / "config" / "docker-gateway.yaml").read_text()


def test_demo_then_sla_query_and_migrate_on_its_store(installed_wheel: Any, elsewhere: Path) -> None:
    # --no-kpi: the generated KPI history (a minute of CPU) is the generator's, tested in tests/kpi.
    demo = _loomgate(installed_wheel, elsewhere, "demo", "--duration", "4", "--port", "0",
                     "--admin-port", "0", "--no-kpi")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Calls per route and partner" in demo.stdout and "inventory-sync" in demo.stdout
    assert (elsewhere / "demo-data" / "clickhouse").is_dir()  # the default data dir, under the working dir

    (elsewhere / "demo.yaml").write_text(_loomgate(installed_wheel, elsewhere, "example-config",
                                                   "demo.yaml").stdout)
    sla = _loomgate(installed_wheel, elsewhere, "sla", "--config", "demo.yaml", "--format", "json")
    assert sla.returncode == 0, sla.stderr
    rows = json.loads(sla.stdout)["slas"]
    assert {r["sla"] for r in rows} == {"inventory-availability", "orders-availability",
                                        "inventory-sync-freshness"}
    assert sum(int(r["requests"]) for r in rows) > 0  # the demo's traffic, read back by SQL
    summary = _loomgate(installed_wheel, elsewhere, "query", "demo_summary", "--config", "demo.yaml",
                        "--format", "json")
    assert summary.returncode == 0, summary.stderr
    assert sum(int(r["calls"]) for r in json.loads(summary.stdout)) > 0

    migrate = _loomgate(installed_wheel, elsewhere, "migrate", "--config", "demo.yaml")
    assert (migrate.returncode, migrate.stdout) == (0, "schema of otel is up to date\n"), migrate.stderr


def test_editable_install_reads_the_source_tree(tmp_path: Path, elsewhere: Path, make_venv: Any) -> None:
    """``pip install -e`` of a copy of the tree: code and data both come from that tree."""
    src = tmp_path / "tree"
    for name in ("gateway", "collectors", "queries", "config"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    venv = make_venv(tmp_path / "venv")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
           "--no-deps", "--no-build-isolation", "-e", str(src)]
    done = subprocess.run(pip, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    code = ("from collectors import resources; import gateway; print(gateway.__file__); "
            "print(resources.queries_dir()); print(resources.example_config('demo.yaml'))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(src / "gateway" / "__init__.py"), str(src / "queries"),
                                       str(src / "config" / "demo.yaml")]


def _probe(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=30).returncode


def test_serve_runs_the_images_command_and_passes_its_healthcheck(installed_wheel: Any, dockerfile: Any,
                                                                 elsewhere: Path) -> None:
    entrypoint = dockerfile.last("ENTRYPOINT").json_args()
    cmd = dockerfile.last("CMD").json_args()
    healthcheck = dockerfile.last("HEALTHCHECK").json_args()
    assert entrypoint == ["loomgate"] and cmd[:2] == ["serve", "--config"]
    config = elsewhere / "gateway.yaml"
    config.write_text(_loomgate(installed_wheel, elsewhere, "example-config", "gateway.yaml").stdout)
    admin_port = free_port()
    env = dict(installed_wheel.env, LOOMGATE_ADMIN_TOKEN="s3cret-from-env",
               LOOMGATE_PARTNER_PORT=str(free_port()), LOOMGATE_ADMIN_PORT=str(admin_port),
               LOOMGATE_STORE=f"chdb://{elsewhere / 'store'}")
    assert _probe(healthcheck, env, elsewhere) != 0  # nothing serves yet: the check can fail
    proc = subprocess.Popen([str(installed_wheel.bin / entrypoint[0]), *cmd[:-1], str(config)], cwd=elsewhere,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while _probe(healthcheck, env, elsewhere) != 0:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the image's HEALTHCHECK never passed"
            time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/stats", timeout=10)
        assert denied.value.code == 401
        req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/api/stats",
                                     headers={"Authorization": "Bearer s3cret-from-env"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert _probe(healthcheck, env, elsewhere) != 0
