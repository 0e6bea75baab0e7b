"""The analytics recover the effects planted by the generator (config/planted_effects.yaml), and report
none where none was planted.

Tolerances: the generated history has 120 artisans (30 per quartile) and ~10,000 orders per 30-day block,
so a quartile's pooled repeat-purchase or abandonment rate has a standard error of about 1-1.5 pp; sizes
must match within 6 pp (about three standard errors of a difference), error-rate changes within 1 pp.
"""

from __future__ import annotations

import datetime as dt

import pytest

from collectors.querylib import run_query_sync

SIZE_TOL = 0.06
ERROR_TOL = 0.01


def _hvr(gen) -> dict[tuple[str, str], dict]:
    # The 30 days before the planted integration change: a window where only the health effects act.
    end = gen.plan.end - dt.timedelta(days=30)
    res = run_query_sync(gen.store, "health_vs_retention",
                         {"start": (end - dt.timedelta(days=30)).isoformat(), "end": end.isoformat()})
    return {(r["metric"], r["kpi"]): r for r in res.dicts()}


@pytest.fixture(scope="module")
def hvr(generated):
    return _hvr(generated)


@pytest.fixture(scope="module")
def impact(generated):
    res = run_query_sync(generated.store, "integration_change_impact", {"window_days": "30"})
    return {r["change_id"]: r for r in res.dicts()}


def test_sync_lag_raises_cart_abandonment(generated, hvr) -> None:
    planted = generated.effects.get("effects.sync_lag_over_5s.cart_abandonment_pp") / 100
    row = hvr[("sync_lag_p95_s", "cart_abandonment")]
    assert row["small_sample"] == 0 and row["n"] >= 100
    assert row["correlation"] > 0
    assert row["finding"] == "higher sync_lag_p95_s goes with higher cart_abandonment"
    assert row["q_value"] <= row["fdr"] == 0.05 and row["tests"] == 12  # NPS pairs: too few answers
    assert row["ci_low"] < row["correlation"] < row["ci_high"] and row["ci_low"] > 0
    assert row["difference"] == pytest.approx(planted, abs=SIZE_TOL)
    # The worst quartile is the slow-sync artisans: every one of them has a sync-lag p95 over 5 s.
    assert row["worst_quartile_from"] > 5 > row["best_quartile_to"]


def test_sync_lag_lowers_repeat_purchase(generated, hvr) -> None:
    planted = generated.effects.get("effects.sync_lag_over_5s.repeat_purchase_pp") / 100
    row = hvr[("sync_lag_p95_s", "repeat_purchase")]
    assert row["correlation"] < 0
    assert row["finding"] == "higher sync_lag_p95_s goes with lower repeat_purchase"
    assert row["difference"] == pytest.approx(planted, abs=SIZE_TOL)


def test_no_effect_dimension_reports_no_effect(generated, hvr) -> None:
    no_effect = generated.effects.get("effects.no_effect")
    assert "latency_p50" in no_effect
    for kpi in ("cart_abandonment", "repeat_purchase", "survey_response_rate"):
        row = hvr[("latency_p50_ms", kpi)]
        assert row["finding"] == "no effect", row
        assert abs(row["difference"]) < SIZE_TOL, row
    # Sync lag was planted on carts and repeat purchases only, not on order values.
    assert hvr[("sync_lag_p95_s", "aov")]["finding"] == "no effect"


def test_small_samples_are_flagged(generated) -> None:
    end = generated.plan.end
    res = run_query_sync(generated.store, "health_vs_retention",
                         {"start": (end - dt.timedelta(days=30)).isoformat(), "end": end.isoformat(),
                          "min_artisans": "500"})
    rows = res.dicts()
    assert rows and all(r["small_sample"] == 1 and r["finding"] == "too small" for r in rows)


def test_change_cuts_errors_and_lifts_repeat_purchase(generated, impact) -> None:
    cfg = generated.effects.get("effects.integration_change")
    row = impact[cfg["change_id"]]
    assert row["partner"] == cfg["partner"] and row["artisan_scope"] == "*"
    assert row["artisans"] == sum(1 for _ in range(generated.plan.artisans)) // 4
    assert row["error_rate_before"] == pytest.approx(cfg["error_rate_before"], abs=ERROR_TOL)
    assert row["error_rate_after"] == pytest.approx(cfg["error_rate_after"], abs=ERROR_TOL)
    assert row["error_rate_delta"] == pytest.approx(cfg["error_rate_after"] - cfg["error_rate_before"],
                                                    abs=ERROR_TOL)
    # The plain before/after carries the market-wide drift planted at the same date on top of the effect.
    drift = generated.effects.get("effects.common_drift.repeat_purchase_pp") / 100
    assert row["repeat_purchase_delta"] == pytest.approx(cfg["repeat_purchase_pp"] / 100 + drift,
                                                         abs=SIZE_TOL)
    assert abs(row["cart_abandonment_delta"]) < SIZE_TOL  # the change was not planted on abandonment


def test_control_change_shows_no_effect(generated, impact) -> None:
    cfg = generated.effects.get("effects.control_change")
    row = impact[cfg["change_id"]]
    assert row["calls_before"] > 0 and row["buyers_before"] > 0
    assert abs(row["error_rate_delta"]) < ERROR_TOL
    drift = generated.effects.get("effects.common_drift.repeat_purchase_pp") / 100
    assert row["repeat_purchase_delta"] == pytest.approx(drift, abs=SIZE_TOL)  # the drift, nothing else
    assert abs(row["cart_abandonment_delta"]) < SIZE_TOL


def test_generation_is_deterministic(generated) -> None:
    from collectors.generate import build_artisans, kpi_rows

    a1 = build_artisans(generated.plan, generated.effects)
    a2 = build_artisans(generated.plan, generated.effects)
    assert a1 == a2
    small = type(generated.plan)(seed=generated.plan.seed, calls=0, orders=2000, artisans=40,
                                 end=generated.plan.end)
    assert kpi_rows(small, generated.effects, build_artisans(small, generated.effects)).tables == \
        kpi_rows(small, generated.effects, build_artisans(small, generated.effects)).tables
    counts = generated.store.query(
        "SELECT (SELECT count() FROM otel_traces WHERE SpanKind = 'Server'),"
        " (SELECT sum(calls) FROM loomgate_calls_1m), (SELECT count() FROM kpi_artisans FINAL)").rows[0]
    assert counts == (generated.plan.calls, generated.plan.calls, generated.plan.artisans)
