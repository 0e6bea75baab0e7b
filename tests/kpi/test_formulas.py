"""Each KPI formula on tiny datasets whose answers are worked out by hand in the comments."""

from __future__ import annotations

import datetime as dt

import pytest

from collectors.querylib import run_query_sync
from collectors.record import CallRecord
from collectors.rows import SPAN_COLUMNS, TRACES_TABLE, span_rows
from collectors.store import Store

from .conftest import insert, t

END = t(100, 0)  # the period under test is [t(70), t(100))
ORDER_COLS = ("order_id", "buyer_id", "artisan_id", "amount", "currency", "ts", "channel", "promo_code")
CART_COLS = ("cart_id", "buyer_id", "artisan_id", "event", "ts", "channel", "promo_code")
SURVEY_COLS = ("survey_id", "kind", "artisan_id", "buyer_id", "order_id", "ts", "answered", "score")


def load_shop(store: Store) -> None:
    insert(store, "artisans", ("artisan_id", "joined", "category", "country"),
           [("A", dt.date(2025, 1, 1), "ceramics", "GB"), ("B", dt.date(2025, 1, 1), "glass", "DE")])
    insert(store, "orders", ORDER_COLS, [
        ("o1", "b1", "A", 5, "EUR", t(50), "organic", ""),     # b1: ordered before and in the period
        ("o2", "b1", "A", 10, "EUR", t(75), "organic", ""),
        ("o3", "b2", "A", 7, "EUR", t(20), "organic", ""),     # b2: last order t(20) < t(100) - 60 d: lost
        ("o4", "b3", "A", 7, "EUR", t(60), "email", ""),       # b3: silent, but only 40 days: not lost
        ("o5", "b4", "A", 7, "EUR", t(5), "email", ""),        # b4: outside the inactivity window
        ("o6", "b5", "A", 20, "EUR", t(72), "influencer", "MAYA10"),
        ("o7", "b5", "A", 30, "EUR", t(80), "influencer", "MAYA10"),
        ("o8", "b5", "A", 40, "EUR", t(90), "influencer", "MAYA10"),
        ("o9", "b6", "A", 50, "EUR", t(85), "paid_ads", ""),
        ("o10", "b9", "B", 99, "EUR", t(80), "organic", ""),  # another artisan: kept apart
    ])
    insert(store, "cart_events", CART_COLS, [
        ("c1", "b1", "A", "created", t(71), "organic", ""),
        ("c1", "b1", "A", "purchased", t(71, 13), "organic", ""),
        ("c2", "b2", "A", "created", t(72), "organic", ""),
        ("c2", "b2", "A", "abandoned", t(72, 14), "organic", ""),
        ("c3", "b3", "A", "created", t(73), "organic", ""),
        ("c3", "b3", "A", "checkout_started", t(73, 13), "organic", ""),
        ("c4", "b5", "A", "created", t(74), "influencer", "MAYA10"),
        ("c4", "b5", "A", "purchased", t(74, 13), "influencer", "MAYA10"),
        ("c5", "b6", "A", "created", t(69), "paid_ads", ""),  # created before the period: not counted
        ("c5", "b6", "A", "purchased", t(71), "paid_ads", ""),
    ])
    insert(store, "survey_responses", SURVEY_COLS, [
        ("s1", "post_purchase", "A", "b1", "o2", t(76), True, 8),
        ("s2", "post_purchase", "A", "b5", "o6", t(73), False, None),
        ("s3", "nps", "A", "b1", "", t(80), True, 10),
        ("s4", "nps", "A", "b5", "", t(80), True, 9),
        ("s5", "nps", "A", "b6", "", t(80), True, 3),
        ("s6", "nps", "A", "b3", "", t(80), True, 7),
        ("s7", "exit_intent", "A", "b2", "", t(72), False, None),
        ("s8", "nps", "A", "b2", "", t(60), True, 0),  # before the period
    ])


def test_retention_kpis_by_hand(kpi_store: Store) -> None:
    load_shop(kpi_store)
    res = run_query_sync(kpi_store, "retention_kpis", {
        "end": END.isoformat(), "periods": "1", "period_days": "30", "inactivity_days": "60",
        "margin": "0.5"})
    rows = {r["artisan"]: r for r in res.dicts()}
    a = rows["A"]
    # customers at the start: b1, b2, b3 (ordered in [t(10), t(70))); lost: b2 only
    assert (a["customers_at_start"], a["customers_lost"]) == (3, 1)
    assert a["churn_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # buyers in the period: b1 (1 order), b5 (3), b6 (1): one repeat buyer of three
    assert (a["buyers"], a["repeat_buyers"]) == (3, 1)
    assert a["repeat_purchase_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # carts created in the period: c1 (bought), c2, c3, c4 (bought): 1 - 2/4
    assert (a["carts_created"], a["carts_purchased"]) == (4, 2)
    assert a["cart_abandonment_rate"] == pytest.approx(0.5)
    # 5 orders, revenue 10 + 20 + 30 + 40 + 50 = 150: AOV 30, frequency 5/3
    assert (a["orders"], a["revenue"], a["aov"]) == (5, 150.0, 30.0)
    assert a["purchase_frequency"] == pytest.approx(5 / 3, abs=1e-4)
    # LTV = AOV x frequency x lifespan (1 / churn = 3 periods) x margin 0.5 = 30 x 5/3 x 3 x 0.5
    assert a["expected_lifespan_periods"] == pytest.approx(3, rel=1e-3)
    assert a["ltv"] == pytest.approx(75.0, abs=0.05)
    # surveys delivered in the period: s1..s7 (7), answered s1, s3, s4, s5, s6 (5)
    assert (a["surveys_delivered"], a["surveys_answered"]) == (7, 5)
    assert a["survey_response_rate"] == pytest.approx(5 / 7, abs=1e-4)
    # NPS answers 10, 9, 3, 7: promoters 2, detractors 1 of 4 -> 25
    assert (a["nps_responses"], a["nps"]) == (4, 25.0)
    assert rows["B"]["orders"] == 1 and rows["B"]["churn_rate"] is None


def test_ltv_with_a_stated_lifespan(kpi_store: Store) -> None:
    load_shop(kpi_store)
    res = run_query_sync(kpi_store, "retention_kpis", {
        "end": END.isoformat(), "periods": "1", "inactivity_days": "60", "lifespan_periods": "12",
        "artisan": "A"})
    (a,) = res.dicts()
    assert a["ltv"] == pytest.approx(30 * 5 / 3 * 12, abs=0.05)


def test_reimported_rows_count_once(kpi_store: Store) -> None:
    load_shop(kpi_store)
    load_shop(kpi_store)  # the same rows again, e.g. a re-run of an import job
    res = run_query_sync(kpi_store, "retention_kpis", {
        "end": END.isoformat(), "periods": "1", "inactivity_days": "60", "artisan": "A"})
    (a,) = res.dicts()
    assert (a["orders"], a["carts_created"], a["surveys_delivered"]) == (5, 4, 7)


def test_channel_roi_by_hand(kpi_store: Store) -> None:
    load_shop(kpi_store)
    res = run_query_sync(kpi_store, "channel_roi", {
        "start": t(70, 0).isoformat(), "end": END.isoformat(), "spend_channels": "influencer,paid_ads",
        "spend_amounts": "45,100"})
    rows = {(r["channel"], r["promo_code"]): r for r in res.dicts()}
    infl = rows[("influencer", "*")]
    # influencer: b5's three orders 20 + 30 + 40 = 90 with MAYA10; cart c4 created and bought
    assert (infl["orders"], infl["revenue"], infl["aov"], infl["buyers"]) == (3, 90.0, 30.0, 1)
    assert (infl["carts_created"], infl["conversion"], infl["cart_abandonment"]) == (1, 1.0, 0.0)
    assert infl["repeat_purchase"] == 1.0
    assert infl["roi"] == pytest.approx((90 - 45) / 45)
    assert rows[("influencer", "MAYA10")]["revenue"] == 90.0 and rows[("influencer", "MAYA10")]["roi"] is None
    # post-purchase survey of o6 (influencer) delivered, not answered
    assert infl["post_purchase_response_rate"] == 0.0
    organic = rows[("organic", "*")]
    # organic carts created in the window: c1 (bought), c2, c3 -> conversion 1/3; orders: o2 and B's o10
    assert (organic["carts_created"], organic["carts_purchased"]) == (3, 1)
    assert organic["conversion"] == pytest.approx(1 / 3, abs=1e-4)
    assert (organic["orders"], organic["revenue"]) == (2, 109.0)
    assert organic["post_purchase_response_rate"] == 1.0 and organic["feedback_score"] == 8.0
    assert rows[("paid_ads", "*")]["roi"] == pytest.approx((50 - 100) / 100)
    assert rows[("*", "*")]["orders"] == 6


def _call(start: dt.datetime, *, artisan: str = "A", partner: str = "p1", ms: float = 100.0,
          status: int = 200, error_type: str = "", source: str = "", lag_ms: float | None = None,
          n: int = 0) -> CallRecord:
    ns = int(start.timestamp() * 1e9) + n
    reached = source != "gateway"
    return CallRecord(ns, int(ms * 1e6), f"{n + 1:032x}", f"{n + 1:016x}", "", "PUT",
                      "/v1/artisans/{artisan_id}/inventory", "sync", "/v1/artisans/x/inventory", status,
                      error_type, source, partner, artisan, "inventory", f"{n + 99:016x}" if reached else "",
                      ns if reached else 0, int(ms * 1e6) if reached else 0, lag_ms, False, "gw", "10.0.0.1",
                      "test", 0, 0, f"r{n}", "https", status if reached else 0)


def test_integration_health_and_scorecard_by_hand(kpi_store: Store) -> None:
    load_shop(kpi_store)
    calls = [
        _call(t(80), ms=100, lag_ms=2000, n=1),
        _call(t(80), ms=200, lag_ms=4000, n=2),
        _call(t(80), ms=300, status=504, error_type="timeout", source="upstream", n=3),
        _call(t(80), ms=400, status=429, error_type="rate_limited", source="gateway", n=4),
    ]
    kpi_store.insert(TRACES_TABLE, span_rows(calls, "loomgate", {}), SPAN_COLUMNS)
    hc_cols = ("Timestamp", "Upstream", "Url", "Outcome", "StatusCode", "ResponseTimeMs", "Reason", "State",
               "PreviousState", "IntervalS")
    kpi_store.insert("loomgate_health_checks", [
        (t(80, h), "inventory", "http://x/healthz", "ok" if h != 3 else "fail", 200, 5.0, "",
         "UP" if h != 3 else "DOWN", "UP", 3600.0) for h in range(4)], hc_cols)
    insert(kpi_store, "loyalty", ("buyer_id", "enrolled", "last_active"),
           [("b1", t(1), t(75)), ("b5", t(2), t(95)), ("b6", t(3), None), ("b7", t(100, 1), None)])
    window = {"start": t(70, 0).isoformat(), "end": END.isoformat()}
    (h,) = run_query_sync(kpi_store, "integration_health", window).dicts()
    assert (h["partner"], h["artisan"], h["route"], h["upstream"]) == ("p1", "A", "sync", "inventory")
    assert (h["calls"], h["errors"]) == (4, 2)
    assert (h["error_rate"], h["gateway_error_rate"], h["upstream_error_rate"]) == (0.5, 0.25, 0.25)
    assert h["p50_ms"] == pytest.approx(250, rel=0.25) and h["p99_ms"] == pytest.approx(400, rel=0.1)
    assert h["sync_lag_samples"] == 2 and 2.0 <= h["sync_lag_p95_s"] <= 4.0
    assert h["upstream_down_share"] == pytest.approx(0.25)  # one DOWN hour out of four checked

    card = {r["benchmark"]: r for r in run_query_sync(kpi_store, "benchmark_scorecard", window).dicts()}
    assert card["cart abandonment"]["actual"] == 50.0 and card["cart abandonment"]["status"] == "misses"
    # post-purchase surveys in the window: s1 answered, s2 not -> 50 % > 25 %
    assert card["post-purchase survey response"]["actual"] == 50.0
    assert card["post-purchase survey response"]["status"] == "meets"
    assert 2.0 <= card["data sync latency (p95)"]["actual"] <= 4.0
    assert card["data sync latency (p95)"]["status"] == "meets"
    # buyers in the window across the marketplace: b1, b5 (3 orders), b6, b9 -> 1 of 4 repeat: 25 % misses
    assert card["repeat purchase"]["actual"] == 25.0 and card["repeat purchase"]["status"] == "misses"
    # members enrolled by the end: b1, b5, b6 (b7 joins later); active in the window: b1, b5
    assert card["loyalty programme engagement"]["actual"] == pytest.approx(200 / 3, abs=1e-3)
    assert card["integration uptime"]["actual"] == 75.0 and card["integration uptime"]["status"] == "misses"


def test_scorecard_says_na_without_data(kpi_store: Store) -> None:
    card = run_query_sync(kpi_store, "benchmark_scorecard", {"start": "-30d"}).dicts()
    assert [r["status"] for r in card] == ["n/a"] * 6
    assert card[4]["basis"] == "n/a: no loyalty data"


def test_engagement_by_hand(kpi_store: Store) -> None:
    load_shop(kpi_store)
    calls = [_call(t(80), n=1), _call(t(81), n=2), _call(t(82), partner="p2", n=3), _call(t(50), n=4)]
    kpi_store.insert(TRACES_TABLE, span_rows(calls, "loomgate", {}), SPAN_COLUMNS)
    insert(kpi_store, "listings", ("artisan_id", "listing_id", "created", "updated", "sync_errors"), [
        ("A", "l1", t(1), t(80), 2), ("A", "l2", t(1), t(85), 0), ("A", "l3", t(1), t(50), 1),
        ("A", "l4", t(1), t(55), 0)])
    rows = {r["artisan"]: r for r in run_query_sync(
        kpi_store, "engagement", {"start": t(70, 0).isoformat(), "end": END.isoformat()}).dicts()}
    a, total = rows["A"], rows["*"]
    # 3 calls in the window (two partners), 1 in the previous 30 days: growth (3 - 1) / 1
    assert (a["calls"], a["calls_prev"], a["call_growth"], a["active_integrations"]) == (3, 1, 2.0, 2)
    # listings updated in the window: l1 (errors), l2 -> 0.5; previous window: l3 (errors), l4 -> 0.5
    assert (a["listing_sync_error_rate"], a["listing_sync_error_trend"]) == (0.5, 0.0)
    # artisans: A active (calls, orders), B active (order o10): rate 1
    assert (total["artisan_active_rate"], total["active_integrations"], total["active"]) == (1.0, 2, 2)


def test_nps_kinds_and_delivery_status(kpi_store: Store) -> None:
    """NPS reads every kind declared NPS-scale; surveys only sent (not delivered) count in no rate."""
    load_shop(kpi_store)
    cols = ("survey_id", "kind", "artisan_id", "buyer_id", "order_id", "ts", "status", "answered",
            "answered_at", "score")
    insert(kpi_store, "survey_responses", cols, [
        ("s9", "app_nps", "A", "b7", "", t(81), "delivered", True, t(95), 0),  # answered after the period
        ("s10", "app_nps", "A", "b8", "", t(82), "sent", False, None, None),  # never confirmed delivered
    ])
    params = {"end": END.isoformat(), "periods": "1", "period_days": "30"}
    a = {r["artisan"]: r for r in run_query_sync(kpi_store, "retention_kpis", params).dicts()}["A"]
    # app_nps is not declared: NPS as before; s9 counts as delivered and answered, s10 nowhere
    assert (a["nps_responses"], a["nps"]) == (4, 25.0)
    assert (a["surveys_delivered"], a["surveys_answered"]) == (8, 6)
    a = {r["artisan"]: r for r in run_query_sync(kpi_store, "retention_kpis",
                                                 {**params, "nps_kinds": "nps,app_nps"}).dicts()}["A"]
    # 10, 9, 3, 7, 0: promoters 2, detractors 2 of 5 -> 0
    assert (a["nps_responses"], a["nps"]) == (5, 0.0)
