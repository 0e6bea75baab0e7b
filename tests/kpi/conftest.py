"""KPI fixtures: a migrated store, a shared generated history, and helpers to load tiny datasets."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from collectors.generate import Effects, Plan, generate, load_effects, make_plan
from collectors.kpi import KPI_TABLES
from collectors.schema import migrate
from collectors.store import Store
from gateway.config import TelemetryConfig

END = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def one_month(eff: Effects) -> Effects:
    """The planted health effects over one 30-day month, without the dated changes (out of range)."""
    raw = copy.deepcopy(eff.raw)
    raw.update(history_days=30, call_days=30, block_days=30, outages={})
    for key in ("integration_change", "control_change", "placebo_change", "common_drift"):
        raw["effects"][key]["days_before_end"] = 400
    return Effects(raw, eff.path)


def migrate_db(store: Store) -> None:
    migrate(store, TelemetryConfig(store=store.dsn, database=store.database, ttl_days=0))


@pytest.fixture
def kpi_store(store: Store) -> Store:
    """A fresh database with the whole schema applied."""
    migrate_db(store)
    return store


def insert(store: Store, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    store.insert(KPI_TABLES[table], [tuple(r) for r in rows], list(columns))


def t(day: float, hour: float = 12.0) -> dt.datetime:
    """A time ``day`` days after 2026-01-01 (UTC) — tiny datasets read better with day numbers."""
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day, hours=hour)


class Generated:
    def __init__(self, store: Store, plan: Plan, effects: Effects) -> None:
        self.store, self.plan, self.effects = store, plan, effects


@pytest.fixture(scope="session")
def generated(chdb_dsn: str) -> Iterator[Generated]:
    """One modest generated history shared by the effect-recovery tests (~20 s to build)."""
    database = "gen_" + uuid.uuid4().hex[:10]
    store = Store(chdb_dsn, database)
    migrate_db(store)
    effects = load_effects()
    plan = make_plan(1.0, 11, calls=100_000, orders=60_000, artisans=120, end=END)
    generate(store, plan, effects, progress=False)
    try:
        yield Generated(store, plan, effects)
    finally:
        store.command(f"DROP DATABASE IF EXISTS `{database}`")


def _status_page_helpers() -> Any:
    """The status page tests' headless-Chromium helper (tests/sla/conftest.py), reused as is."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "loomgate_status_browser_helpers"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "sla" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
async def browser(tmp_path: Any) -> Any:
    """Headless Chromium over CDP (skips without Chromium unless LOOMGATE_REQUIRE_BROWSER is set)."""
    agen = _status_page_helpers().browser.__wrapped__(tmp_path)
    cdp = await agen.__anext__()
    try:
        yield cdp
    finally:
        await agen.aclose()
