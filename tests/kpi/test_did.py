"""integration_change_did recovers the planted change effect with a control group, where the plain
before/after is biased by the market-wide drift planted at the same date (config/planted_effects.yaml)."""

from __future__ import annotations

import pytest

from collectors.querylib import run_query_sync
from tests.kpi.conftest import insert, migrate_db, t


@pytest.fixture(scope="module")
def did(generated) -> dict[tuple[str, str, str], dict]:
    res = run_query_sync(generated.store, "integration_change_did", {"window_days": "30"})
    return {(r["level"], r["change_id"] or f"{r['kind']}/{r['placebo']}", r["kpi"]): r for r in res.dicts()}


def test_did_recovers_planted_effect_and_naive_is_biased_by_drift(generated, did) -> None:
    cfg = generated.effects.get("effects.integration_change")
    drift = generated.effects.get("effects.common_drift.repeat_purchase_pp") / 100
    planted = cfg["repeat_purchase_pp"] / 100
    row = did[("change", cfg["change_id"], "repeat_purchase")]
    assert row["did_ci_low"] < planted < row["did_ci_high"], row
    assert row["did_ci_low"] > 0 and row["finding"] == "raised repeat_purchase"
    # The naive before/after carries the drift; the difference-in-differences does not.
    assert row["naive_delta"] == pytest.approx(planted + drift, abs=0.04)
    assert abs(row["did"] - planted) < abs(row["naive_delta"] - planted)
    assert row["naive_delta"] > row["did_ci_high"]
    # Whole-partner change: no unchanged artisan of the same partner, so the control is other partners',
    # minus the partner whose own change falls in the same windows.
    assert row["control"] == "other partners"
    per_partner = generated.plan.artisans // 4
    assert (row["treated_artisans"], row["control_artisans"]) == (per_partner, 2 * per_partner)
    assert row["treated_orders"] > 0 and row["control_orders"] > 0 and row["events"] > 0
    assert row["pre_trend_ok"] == 1  # nothing was planted before the change
    err = did[("change", cfg["change_id"], "error_rate")]
    assert err["did_ci_low"] < cfg["error_rate_after"] - cfg["error_rate_before"] < err["did_ci_high"]


def test_null_and_placebo_changes_show_no_effect(generated, did) -> None:
    drift = generated.effects.get("effects.common_drift.repeat_purchase_pp") / 100
    for key in ("control_change", "placebo_change"):
        cid = generated.effects.get(f"effects.{key}.change_id")
        for kpi in ("repeat_purchase", "cart_abandonment", "error_rate"):
            row = did[("change", cid, kpi)]
            assert row["did_ci_low"] <= 0 <= row["did_ci_high"], row
            assert row["finding"] == "no effect shown"
        assert did[("change", cid, "repeat_purchase")]["naive_delta"] == pytest.approx(drift, abs=0.04)
    placebo = did[("change", generated.effects.get("effects.placebo_change.change_id"), "repeat_purchase")]
    assert placebo["placebo"] is True


def test_pooled_per_kind(generated, did) -> None:
    cfg = generated.effects.get("effects.integration_change")
    pooled = did[("kind", f"{cfg['kind']}/False", "repeat_purchase")]
    assert pooled["did_ci_low"] < cfg["repeat_purchase_pp"] / 100 < pooled["did_ci_high"]
    # The placebo of the same kind is pooled apart and does not dilute the real changes.
    assert did[("kind", f"{cfg['kind']}/True", "repeat_purchase")]["finding"] == "no effect shown"
    # A kind whose changes have no data in their windows says so.
    assert did[("kind", "new_integration/False", "repeat_purchase")]["finding"] == "no data"


def test_same_partner_control_and_pre_trend(kpi_store) -> None:
    """A single-artisan change is compared with unchanged artisans of its own partner; a treated artisan
    whose KPI was already rising before the change fails the pre-period check."""
    store = kpi_store
    migrate_db(store)
    partner_rows = []
    orders = []
    n = 0
    for i in range(12):
        artisan = f"a{i:02d}"
        partner_rows.append((artisan,))
        for window, start in enumerate((0, 10, 20)):  # pre, before, after (window_days = 10, change day 20)
            # a00 is treated: repeat buyers 0 → 5 → 10 of 10 (a trend that began before the change)
            repeaters = (5 * window) if artisan == "a00" else 3
            for b in range(10):
                k = 2 if b < repeaters else 1
                for j in range(k):
                    n += 1
                    orders.append((f"o{n}", f"{artisan}-w{window}-b{b}", artisan, 10, "EUR",
                                   t(start + 1 + b * 0.5 + j * 0.1), "organic", ""))
    insert(store, "orders", ("order_id", "buyer_id", "artisan_id", "amount", "currency", "ts", "channel",
                             "promo_code"), orders)
    insert(store, "artisans", ("artisan_id", "joined", "category", "country"),
           [(a, t(0).date(), "ceramics", "GB") for (a,) in partner_rows])
    store.command("INSERT INTO loomgate_calls_1d (day, partner, artisan, calls) "
                  f"SELECT toDate('2026-01-05'), 'p', arrayJoin({[a for (a,) in partner_rows]}), 1")
    insert(store, "integration_changes", ("change_id", "partner_id", "artisan_id", "description", "kind",
                                          "ts", "placebo"),
           [("c1", "p", "a00", "", "pricing_test", t(20, 0), False)])
    rows = {r["kpi"]: r for r in run_query_sync(store, "integration_change_did",
                                                {"window_days": "10", "replicates": "200"}).dicts()
            if r["level"] == "change"}
    row = rows["repeat_purchase"]
    assert row["control"] == "same partner"
    assert (row["treated_artisans"], row["control_artisans"]) == (1, 11)
    assert (row["treated_before"], row["treated_after"]) == (0.5, 1.0)
    assert (row["control_before"], row["control_after"]) == (0.3, 0.3)
    assert row["did"] == 0.5 and row["naive_delta"] == 0.5
    assert row["pre_trend"] == 0.5 and row["pre_trend_ok"] == 0
    assert rows["cart_abandonment"]["finding"] == "no data"
