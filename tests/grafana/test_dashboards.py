"""The Grafana dashboards in config/grafana/dashboards, tested without Grafana.

Every panel's SQL is taken from the dashboard JSON, its macros are expanded the way the
grafana-clickhouse-datasource plugin expands them (``$__timeFilter(col)``, ``$__fromTime``,
``$__timeInterval(col)``, ``$__interval_s``, …) for a time range, its template variables take their
dashboards' default values, and the statement runs against a real embedded store that the demo filled
(sample upstreams, the gateway, simulated partners, health checks and the generated KPI history).  Each
panel must return rows.  The provisioning files must point at what the compose file mounts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "config" / "grafana" / "dashboards"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
PLUGIN = "grafana-clickhouse-datasource"


# ------------------------------------------------------------------------------------- macro expansion


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: int  # Grafana's $__interval for the panel, in whole seconds (at least 1)


def _args(sql: str, name: str) -> Iterator[tuple[re.Match[str], str]]:
    for m in re.finditer(r"\$__" + name + r"\(([^()]*)\)", sql):
        yield m, m.group(1).strip()


def expand(sql: str, tr: TimeRange, variables: dict[str, str]) -> str:
    """The plugin's macro expansion (pkg/macros in grafana/clickhouse-datasource), plus ${var} / $var."""
    f, t = int(tr.start.timestamp()), int(tr.end.timestamp())
    fm, tm = int(tr.start.timestamp() * 1000), int(tr.end.timestamp() * 1000)
    with_args = {
        "timeFilter_ms": lambda c: (f"{c} >= fromUnixTimestamp64Milli({fm}) AND "
                                    f"{c} <= fromUnixTimestamp64Milli({tm})"),
        "timeFilter": lambda c: f"{c} >= toDateTime({f}) AND {c} <= toDateTime({t})",
        "dateFilter": lambda c: (f"{c} >= toDate('{tr.start:%Y-%m-%d}') AND "
                                 f"{c} <= toDate('{tr.end:%Y-%m-%d}')"),
        "timeInterval_ms": lambda c: (f"toStartOfInterval(toDateTime64({c}, 3), "
                                      f"INTERVAL {tr.interval_s * 1000} millisecond)"),
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {tr.interval_s} second)",
    }
    for name, render in with_args.items():
        sql = re.sub(r"\$__" + name + r"\(([^()]*)\)", lambda m, r=render: r(m.group(1).strip()), sql)
    plain = {
        "fromTime_ms": f"fromUnixTimestamp64Milli({fm})", "toTime_ms": f"fromUnixTimestamp64Milli({tm})",
        "fromTime": f"toDateTime({f})", "toTime": f"toDateTime({t})", "interval_s": str(tr.interval_s),
    }
    for name, value in plain.items():
        sql = re.sub(r"\$__" + name + r"\b", value, sql)
    for name, value in variables.items():
        sql = sql.replace("${" + name + "}", value)
        sql = re.sub(r"\$" + name + r"\b", value, sql)
    leftover = re.search(r"\$\{?\w+", sql)
    assert leftover is None, f"unexpanded macro or variable {leftover.group(0)!r}"
    return sql


def test_expand_matches_the_plugin() -> None:
    tr = TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), 60)
    got = expand("SELECT $__timeInterval(ts) FROM t WHERE $__timeFilter(ts) AND x < ${slo} "
                 "AND $__dateFilter(d) AND y = $__interval_s AND z >= $__fromTime_ms", tr, {"slo": "99.9"})
    assert got == ("SELECT toStartOfInterval(toDateTime(ts), INTERVAL 60 second) FROM t WHERE "
                   "ts >= toDateTime(1767225600) AND ts <= toDateTime(1767312000) AND x < 99.9 AND "
                   "d >= toDate('2026-01-01') AND d <= toDate('2026-01-02') AND y = 60 AND "
                   "z >= fromUnixTimestamp64Milli(1767225600000)")
    with pytest.raises(AssertionError, match="__unknown"):
        expand("SELECT $__unknown(x)", tr, {})


# --------------------------------------------------------------------------------------- dashboards


@dataclass(frozen=True)
class Panel:
    dashboard: str
    title: str
    sql: str
    variables: dict[str, str]


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels() -> list[Panel]:
    out = []
    for name, dash in _dashboards().items():
        variables = {v["name"]: str(v["current"]["value"]) for v in dash["templating"]["list"]}
        for panel in dash["panels"]:
            for target in panel["targets"]:
                out.append(Panel(name, panel["title"], target["rawSql"], variables))
    return out


def _datasource() -> dict[str, Any]:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "clickhouse.yaml").read_text())
    (ds,) = doc["datasources"]
    return ds


def test_dashboards_cover_the_views_ops_need() -> None:
    dashes = _dashboards()
    assert {d["uid"] for d in dashes.values()} == {
        "loomgate-integration-health", "loomgate-sla", "loomgate-sync-lag", "loomgate-health-retention"}
    uid = _datasource()["uid"]
    for name, dash in dashes.items():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dash["panels"]:
            assert panel["datasource"] == {"type": PLUGIN, "uid": uid}, (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid and target["editorType"] == "sql"
                assert "$__timeFilter" in target["rawSql"] or "$__fromTime" in target["rawSql"], \
                    (name, panel["title"], "every panel follows the dashboard's time range")


def test_datasource_is_the_clickhouse_plugin_in_otel_mode_on_our_tables() -> None:
    ds = _datasource()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert ds["type"] == PLUGIN
    json_data = ds["jsonData"]
    assert json_data["host"] == "clickhouse" and "clickhouse" in compose
    ch_ports = {int(str(p).split(":")[-1]) for p in compose["clickhouse"].get("expose", [])}
    assert json_data["port"] in ch_ports and json_data["protocol"] == "native"
    assert json_data["defaultDatabase"] == compose["clickhouse"]["environment"]["CLICKHOUSE_DB"]
    traces = json_data["traces"]
    assert (traces["otelEnabled"], traces["defaultTable"]) == (True, "otel_traces")
    grafana = compose["grafana"]
    assert PLUGIN in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["./config/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "loomgate.yaml").read_text())["providers"][0]
    assert mounts["./config/grafana/dashboards"] == provider["options"]["path"]


# ------------------------------------------------------------------------- every panel's SQL, for real

_RUNNER = textwrap.dedent("""
    import json, sys
    from collectors.store import Store
    dsn, database = sys.argv[1], sys.argv[2]
    store = Store(dsn, database)
    out = []
    for sql in json.load(sys.stdin):
        try:
            out.append({"rows": len(store.query(sql).rows)})
        except Exception as exc:
            out.append({"error": str(exc)[:2000]})
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory the demo filled: real traffic through the gateway plus the generated KPI history."""
    data = tmp_path_factory.mktemp("grafana") / "demo-data"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(data), "--port", "0",
         "--admin-port", "0", "--rate", "80", "--duration", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return data / "clickhouse"


def test_every_panel_returns_rows_from_a_demo_store(demo_store: Path) -> None:
    now = datetime.now(UTC)
    panels = _panels()
    assert len(panels) >= 20
    # the dashboards' own ranges: 24 h and 30 d, the demo's traffic and the generated history both inside
    statements = []
    for p in panels:
        days = 30 if p.dashboard in ("loomgate-sla.json", "loomgate-health-retention.json") else 1
        span = timedelta(days=days)
        tr = TimeRange(now - span, now + timedelta(minutes=5), max(1, int(span.total_seconds()) // 1000))
        statements.append(expand(p.sql, tr, p.variables))
    # A chDB directory opens in one process at a time and this test process has its own: a child opens it.
    proc = subprocess.run([sys.executable, "-c", _RUNNER, f"chdb://{demo_store}", "otel"],
                          input=json.dumps(statements), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failures = {f"{p.dashboard}: {p.title}": r for p, r in zip(panels, results, strict=True)
                if r.get("error") or r["rows"] == 0}
    assert not failures, json.dumps(failures, indent=1)


def test_readme_datasource_block_matches_the_provisioned_one() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (doc,) = [yaml.safe_load(b) for b in blocks if "grafana-clickhouse-datasource" in b]
    (ds,) = doc["datasources"]
    provisioned = _datasource()
    assert (ds["uid"], ds["type"]) == (provisioned["uid"], provisioned["type"])
    for key in ("port", "protocol", "defaultDatabase"):
        assert ds["jsonData"][key] == provisioned["jsonData"][key], key
    for key in ("defaultDatabase", "defaultTable", "otelEnabled"):
        assert ds["jsonData"]["traces"][key] == provisioned["jsonData"]["traces"][key], key
