"""``loomgate generate``: a deterministic call and KPI history with planted effects.

The same seed, sizes and end time always give the same rows.  Calls are built as ``CallRecord``s and stored
by ``collectors.rows.insert_calls`` (the live exporter's row builder), so generated and live
telemetry cannot drift apart; the per-minute rollups fill through their materialized views.  KPI rows
(artisans, orders, carts, surveys, listings, integration changes, loyalty) follow the effects stated in
``config/planted_effects.yaml``, which the tests read to know what the queries must recover.

Sizes: ``--scale 1`` is 100,000 calls and 10,000 orders; ``--calls`` / ``--orders`` / ``--artisans``
override.  Artisans default to ``100 * sqrt(scale)`` (at least 40).  numpy draws the random numbers in
batches; the per-call work left in Python is the CallRecord.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from collectors import resources
from collectors.kpi import KPI_TABLES, Progress
from collectors.record import CallRecord
from collectors.store import Store

DEFAULT_EFFECTS = resources.example_config("planted_effects.yaml")  # package data
CALLS_PER_SCALE = 100_000
ORDERS_PER_SCALE = 10_000
CALL_BATCH = 50_000
ROW_BATCH = 200_000
DAY_NS = 86_400 * 10**9
MS_NS = 10**6

CATEGORIES = ("ceramics", "textiles", "jewellery", "woodwork", "leather", "glass", "paper")
CATEGORY_AOV = {"ceramics": 45.0, "textiles": 60.0, "jewellery": 80.0, "woodwork": 95.0, "leather": 110.0,
                "glass": 55.0, "paper": 25.0}
COUNTRIES = ("GB", "DE", "FR", "IT", "ES", "NL", "US", "PT")
# name, method, template, upstream, share of calls, carries a sync lag
ROUTES = (
    ("sync_inventory", "PUT", "/v1/artisans/{artisan_id}/listings/{listing_id}/inventory", "inventory", 0.45,
     True),
    ("get_listings", "GET", "/v1/artisans/{artisan_id}/listings", "inventory", 0.30, False),
    ("list_orders", "GET", "/v1/artisans/{artisan_id}/orders", "orders", 0.25, False),
)
# error_type, error_source, status: the mix of failures (upstream failures dominate)
ERRORS = (
    ("timeout", "upstream", 504, 0.30),
    ("connect_error", "upstream", 502, 0.20),
    ("", "upstream", 500, 0.30),  # the upstream answered 5xx itself
    ("rate_limited", "gateway", 429, 0.20),
)


class GenerateError(Exception):
    """The effects file or the options are wrong (message names the file/key or option)."""


# --------------------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class Effects:
    """config/planted_effects.yaml, as read; ``raw`` keeps every key for the tests and the summary."""

    raw: dict[str, Any]
    path: str

    def get(self, dotted: str) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise GenerateError(f"{self.path}: missing key {dotted}")
            node = node[part]
        return node


def load_effects(path: Path | str = DEFAULT_EFFECTS) -> Effects:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GenerateError(f"{p}: {exc}") from None
    if not isinstance(raw, dict):
        raise GenerateError(f"{p}: expected a mapping at the top level")
    eff = Effects(raw, str(p))
    for key in ("history_days", "call_days", "block_days", "partners", "channels", "baseline",
                "effects.sync_lag_over_5s.cart_abandonment_pp", "effects.integration_change.partner",
                "effects.control_change.partner", "effects.common_drift.repeat_purchase_pp",
                "effects.placebo_change.partner", "surveys", "loyalty"):
        eff.get(key)
    return eff


@dataclass(frozen=True)
class Plan:
    seed: int
    calls: int
    orders: int
    artisans: int
    end: dt.datetime  # exclusive end of the history, UTC
    service_name: str = "loomgate"

    @property
    def end_ns(self) -> int:
        return int(self.end.timestamp()) * 10**9


def make_plan(scale: float, seed: int, *, calls: int | None = None, orders: int | None = None,
              artisans: int | None = None, end: dt.datetime | None = None) -> Plan:
    if scale <= 0:
        raise GenerateError("--scale must be positive")
    if end is None:
        now = dt.datetime.now(dt.UTC)
        end = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
    return Plan(seed=seed, calls=calls if calls is not None else int(CALLS_PER_SCALE * scale),
                orders=orders if orders is not None else int(ORDERS_PER_SCALE * scale),
                artisans=artisans or max(40, round(100 * math.sqrt(scale))), end=end)


# ------------------------------------------------------------------------------------------- profiles

@dataclass(frozen=True)
class Artisan:
    id: str
    partner: str
    laggy: bool
    lag_median_ms: float
    latency_p50_ms: float
    error_rate: float
    abandonment: float
    repeat: float
    weight: float
    category: str
    country: str
    joined: dt.date


def _rng(plan: Plan, stream: int) -> np.random.Generator:
    """Independent streams, so that e.g. the call count does not change the KPI rows."""
    return np.random.default_rng([plan.seed, stream])


def build_artisans(plan: Plan, eff: Effects) -> list[Artisan]:
    rng = _rng(plan, 1)
    n = plan.artisans
    base = eff.get("baseline")
    lag = eff.get("effects.sync_lag_over_5s")
    laggy = np.zeros(n, dtype=bool)
    laggy[rng.permutation(n)[: round(n * float(lag["share"]))]] = True
    partners = list(eff.get("partners"))
    partner_idx = rng.permutation(np.arange(n) % len(partners))

    def uni(key: str) -> np.ndarray:
        lo, hi = base[key]
        return rng.uniform(lo, hi, n)

    lag_normal, lag_slow = uni("sync_lag_median_ms"), rng.uniform(*lag["lag_median_ms"], n)
    latency, errors, aband, repeat = uni("latency_p50_ms"), uni("error_rate"), uni("cart_abandonment"), \
        uni("repeat_purchase")
    weights = rng.lognormal(0.0, 0.4, n)
    weights /= weights.sum()
    cats, countries = rng.integers(0, len(CATEGORIES), n), rng.integers(0, len(COUNTRIES), n)
    joined_days = rng.integers(200, 1500, n)
    end_date = plan.end.date()
    out = []
    for i in range(n):
        out.append(Artisan(
            id=f"art-{i + 1:04d}", partner=partners[int(partner_idx[i])], laggy=bool(laggy[i]),
            lag_median_ms=float(lag_slow[i] if laggy[i] else lag_normal[i]),
            latency_p50_ms=float(latency[i]), error_rate=float(errors[i]),
            abandonment=float(aband[i]) + (lag["cart_abandonment_pp"] / 100 if laggy[i] else 0.0),
            repeat=float(repeat[i]) + (lag["repeat_purchase_pp"] / 100 if laggy[i] else 0.0),
            weight=float(weights[i]), category=CATEGORIES[int(cats[i])], country=COUNTRIES[int(countries[i])],
            joined=end_date - dt.timedelta(days=int(joined_days[i]))))
    return out


# ---------------------------------------------------------------------------------------------- calls

@dataclass
class _CallState:
    plan: Plan
    eff: Effects
    artisans: list[Artisan]
    change_ns: int = 0
    change_partner: str = ""
    err_before: float = 0.0
    err_after: float = 0.0
    ids: random.Random = field(default_factory=random.Random)


def call_batches(plan: Plan, eff: Effects, artisans: Sequence[Artisan]) -> Iterator[list[CallRecord]]:
    """CallRecords in batches of CALL_BATCH, in time order within each batch."""
    change = eff.get("effects.integration_change")
    st = _CallState(plan, eff, list(artisans), ids=random.Random(plan.seed))
    st.change_ns = plan.end_ns - int(change["days_before_end"]) * DAY_NS
    st.change_partner = change["partner"]
    st.err_before, st.err_after = float(change["error_rate_before"]), float(change["error_rate_after"])
    rng = _rng(plan, 2)
    remaining = plan.calls
    while remaining > 0:
        n = min(CALL_BATCH, remaining)
        remaining -= n
        yield _call_batch(st, rng, n)


def _call_batch(st: _CallState, rng: np.random.Generator, n: int) -> list[CallRecord]:
    arts = st.artisans
    start = st.plan.end_ns - int(st.eff.get("call_days")) * DAY_NS
    weights = np.array([a.weight for a in arts])
    who = rng.choice(len(arts), size=n, p=weights)
    t = np.sort(rng.integers(start, st.plan.end_ns, n))
    route = rng.choice(len(ROUTES), size=n, p=[r[4] for r in ROUTES])
    p50 = np.array([a.latency_p50_ms for a in arts])[who]
    dur_ms = p50 * rng.lognormal(0.0, 0.5, n)
    lag_ms = np.array([a.lag_median_ms for a in arts])[who] * rng.lognormal(0.0, 0.45, n)
    changed = np.array([a.partner == st.change_partner for a in arts])[who]
    err_p = np.where(changed, np.where(t < st.change_ns, st.err_before, st.err_after),
                     np.array([a.error_rate for a in arts])[who])
    failed = rng.random(n) < err_p
    err_kind = rng.choice(len(ERRORS), size=n, p=[e[3] for e in ERRORS])
    listing = rng.integers(1, 40, n)
    getrandbits = st.ids.getrandbits
    out: list[CallRecord] = []
    for i in range(n):
        a = arts[who[i]]
        name, method, template, upstream, _, has_lag = ROUTES[route[i]]
        d_ns = int(dur_ms[i] * MS_NS)
        if failed[i]:
            etype, esrc, status, _ = ERRORS[err_kind[i]]
        else:
            etype, esrc, status = "", "", 200
        reached = esrc != "gateway"
        up_status = (status if status < 502 or etype == "" else 0) if reached else 0
        up_span = f"{getrandbits(64):016x}" if reached else ""
        path = template.replace("{artisan_id}", a.id).replace("{listing_id}", f"l-{listing[i]}")
        req_id = f"{getrandbits(64):016x}"
        out.append(CallRecord(
            int(t[i]), d_ns, f"{getrandbits(128):032x}", f"{getrandbits(64):016x}", "", method, template,
            name, path, status, etype, esrc, a.partner, a.id, upstream, up_span,
            int(t[i]) + 200_000 if reached else 0,
            max(d_ns - 300_000, 0) if reached else 0,
            float(round(lag_ms[i], 1)) if has_lag and not failed[i] else None, False,
            "api.loomgate.example", "10.0.0.7", f"{a.partner}-client/2.1", 512 if method == "PUT" else 0,
            2048 if status == 200 else 128, req_id, "https", up_status))
    return out


def health_rows(plan: Plan, eff: Effects) -> list[tuple[Any, ...]]:
    """Minute-by-minute health-check results for the upstreams, with the configured outages."""
    rng = _rng(plan, 3)
    days = int(eff.get("call_days"))
    start = plan.end - dt.timedelta(days=days)
    minutes = days * 1440
    rows: list[tuple[Any, ...]] = []
    outages: dict[str, Any] = eff.raw.get("outages") or {}
    for upstream in ("inventory", "orders"):
        down = np.zeros(minutes, dtype=bool)
        for length in outages.get(upstream, []):
            at = int(rng.integers(0, minutes - int(length)))
            down[at: at + int(length)] = True
        url = f"http://{upstream}.internal/healthz"
        prev = "UP"
        for m in range(minutes):
            state = "DOWN" if down[m] else "UP"
            ts = start + dt.timedelta(minutes=m)
            rt = 0.0 if down[m] else float(15 + rng.random() * 10)
            rows.append((ts, upstream, url, "fail" if down[m] else "ok", 0 if down[m] else 200, rt,
                         "connect_error" if down[m] else "", state, prev, 60.0))
            prev = state
    return rows


HEALTH_COLUMNS = ("Timestamp", "Upstream", "Url", "Outcome", "StatusCode", "ResponseTimeMs", "Reason",
                  "State",
                  "PreviousState", "IntervalS")


# ------------------------------------------------------------------------------------------------ KPIs

@dataclass
class KpiRows:
    tables: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = field(default_factory=dict)

    def add(self, name: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        _, existing = self.tables.setdefault(name, (columns, []))
        existing.extend(rows)


ORDER_COLS = ("order_id", "buyer_id", "artisan_id", "amount", "currency", "ts", "channel", "promo_code")
CART_COLS = ("cart_id", "buyer_id", "artisan_id", "event", "ts", "channel", "promo_code")
SURVEY_COLS = ("survey_id", "kind", "artisan_id", "buyer_id", "order_id", "ts", "answered", "score")


def kpi_rows(plan: Plan, eff: Effects, artisans: Sequence[Artisan]) -> KpiRows:
    rng = _rng(plan, 4)
    out = KpiRows()
    out.add("artisans", ("artisan_id", "joined", "category", "country"),
            [(a.id, a.joined, a.category, a.country) for a in artisans])
    blocks = int(eff.get("history_days")) // int(eff.get("block_days"))
    per_block = plan.orders / blocks
    counters = {"order": 0, "cart": 0, "survey": 0, "buyer": 0}
    all_buyers: dict[str, float] = {}  # buyer -> last order (epoch seconds)
    for a in artisans:
        previous: list[str] = []
        for b in range(blocks - 1, -1, -1):  # oldest block first, so returning buyers exist
            previous = _artisan_block(plan, eff, rng, out, a, b, per_block * a.weight, previous, counters,
                                      all_buyers)
    _changes(plan, eff, out)
    _listings(plan, rng, out, artisans)
    _loyalty(plan, eff, rng, out, all_buyers)
    return out


def _artisan_block(plan: Plan, eff: Effects, rng: np.random.Generator, out: KpiRows, a: Artisan, block: int,
                   expected_orders: float, previous: list[str], counters: dict[str, int],
                   all_buyers: dict[str, float]) -> list[str]:
    bdays = int(eff.get("block_days"))
    end_s = plan.end.timestamp() - block * bdays * 86400
    start_s = end_s - bdays * 86400
    change = eff.get("effects.integration_change")
    change_s = plan.end.timestamp() - int(change["days_before_end"]) * 86400
    repeat = a.repeat + (change["repeat_purchase_pp"] / 100
                         if a.partner == change["partner"] and start_s >= change_s else 0.0)
    drift = eff.get("effects.common_drift")
    if start_s >= plan.end.timestamp() - int(drift["days_before_end"]) * 86400:
        repeat += drift["repeat_purchase_pp"] / 100
    repeat = min(max(repeat, 0.0), 0.95)
    mean_orders = 1 + repeat * 1.3
    n_buyers = int(rng.poisson(expected_orders / mean_orders))
    channels = eff.get("channels")
    ch_names = list(channels)
    ch_p = np.array([channels[c]["share"] for c in ch_names], dtype=float)
    ch_p /= ch_p.sum()
    returning = float(eff.raw.get("returning_buyer_share", 0.0))
    # Returning buyers are distinct earlier buyers (without replacement: one buyer, one slot per block).
    n_back = min(int(rng.binomial(n_buyers, returning)), len(set(previous)))
    back = [str(b) for b in rng.permutation(sorted(set(previous)))[:n_back]] if n_back else []
    buyers: list[str] = back
    for _ in range(n_buyers - n_back):
        counters["buyer"] += 1
        buyers.append(f"buy-{counters['buyer']:07d}")
    order_rows: list[tuple[Any, ...]] = []
    cart_rows: list[tuple[Any, ...]] = []
    survey_rows: list[tuple[Any, ...]] = []
    per_channel_orders: dict[str, int] = dict.fromkeys(ch_names, 0)
    aov = CATEGORY_AOV[a.category]
    for buyer in buyers:
        k = 1 if rng.random() >= repeat else (2 if rng.random() < 0.7 else 3)
        ch = ch_names[int(rng.choice(len(ch_names), p=ch_p))]
        codes = channels[ch].get("promo_codes") or []
        promo = codes[int(rng.integers(0, len(codes)))] if codes else ""
        for _ in range(k):
            ts = float(rng.uniform(start_s, end_s))
            counters["order"] += 1
            oid = f"ord-{counters['order']:08d}"
            amount = round(aov * float(channels[ch]["value"]) * float(rng.lognormal(0.0, 0.35)), 2)
            order_rows.append((oid, buyer, a.id, amount, "EUR", _t(ts), ch, promo))
            all_buyers[buyer] = max(all_buyers.get(buyer, 0.0), ts)
            per_channel_orders[ch] += 1
            cart_rows += _cart(counters, buyer, a.id, ts, "purchased", ch, promo, rng)
            _post_purchase_survey(eff, rng, survey_rows, counters, a.id, buyer, oid, ts)
        _nps_survey(eff, rng, survey_rows, counters, a.id, buyer, start_s, end_s)
    for ch, n_orders in per_channel_orders.items():
        if n_orders == 0:
            continue
        rate = min(max(a.abandonment + float(channels[ch]["abandonment_pp"]) / 100, 0.01), 0.95)
        codes = channels[ch].get("promo_codes") or []
        for _ in range(int(rng.negative_binomial(n_orders, 1 - rate))):
            ts = float(rng.uniform(start_s, end_s))
            buyer = buyers[int(rng.integers(0, len(buyers)))] if buyers else "buy-anon"
            promo = codes[int(rng.integers(0, len(codes)))] if codes else ""
            cart_rows += _cart(counters, buyer, a.id, ts, "abandoned", ch, promo, rng)
            _exit_survey(eff, rng, survey_rows, counters, a.id, buyer, ts)
    out.add("orders", ORDER_COLS, order_rows)
    out.add("cart_events", CART_COLS, cart_rows)
    out.add("survey_responses", SURVEY_COLS, survey_rows)
    return buyers


def _t(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(round(epoch_s, 3), tz=dt.UTC)


def _cart(counters: dict[str, int], buyer: str, artisan: str, ts: float, outcome: str, ch: str, promo: str,
          rng: np.random.Generator) -> list[tuple[Any, ...]]:
    counters["cart"] += 1
    cid = f"cart-{counters['cart']:08d}"
    created = ts - float(rng.uniform(60, 3600))
    rows = [(cid, buyer, artisan, "created", _t(created), ch, promo)]
    if outcome == "purchased" or rng.random() < 0.5:
        rows.append((cid, buyer, artisan, "checkout_started", _t(created + 30), ch, promo))
    rows.append((cid, buyer, artisan, outcome, _t(ts), ch, promo))
    return rows


def _survey(rows: list[tuple[Any, ...]], counters: dict[str, int], kind: str, artisan: str, buyer: str,
            order_id: str, ts: float, answered: bool, score: int | None) -> None:
    counters["survey"] += 1
    rows.append((f"srv-{counters['survey']:08d}", kind, artisan, buyer, order_id, _t(ts), answered,
                 score if answered else None))


def _post_purchase_survey(eff: Effects, rng: np.random.Generator, rows: list[tuple[Any, ...]],
                          counters: dict[str, int], artisan: str, buyer: str, oid: str, ts: float) -> None:
    s = eff.get("surveys")
    if rng.random() < s["post_purchase_delivered"]:
        answered = bool(rng.random() < s["post_purchase_answered"])
        _survey(rows, counters, "post_purchase", artisan, buyer, oid, ts + 86400, answered,
                int(rng.integers(5, 11)))


def _exit_survey(eff: Effects, rng: np.random.Generator, rows: list[tuple[Any, ...]],
                 counters: dict[str, int], artisan: str, buyer: str, ts: float) -> None:
    s = eff.get("surveys")
    if rng.random() < s["exit_intent_delivered"]:
        answered = bool(rng.random() < s["exit_intent_answered"])
        _survey(rows, counters, "exit_intent", artisan, buyer, "", ts, answered, int(rng.integers(0, 11)))


def _nps_survey(eff: Effects, rng: np.random.Generator, rows: list[tuple[Any, ...]],
                counters: dict[str, int], artisan: str, buyer: str, start_s: float, end_s: float) -> None:
    s = eff.get("surveys")
    if rng.random() < s["nps_delivered"]:
        answered = bool(rng.random() < s["nps_answered"])
        mix = s["nps_scores"]
        u = rng.random()
        if u < mix["promoter"]:
            score = int(rng.integers(9, 11))
        elif u < mix["promoter"] + mix["passive"]:
            score = int(rng.integers(7, 9))
        else:
            score = int(rng.integers(0, 7))
        ts = float(rng.uniform(start_s, end_s))
        _survey(rows, counters, "nps", artisan, buyer, "", ts, answered, score)


def _changes(plan: Plan, eff: Effects, out: KpiRows) -> None:
    rows = []
    for key in ("integration_change", "control_change", "placebo_change"):
        c = eff.get(f"effects.{key}")
        ts = plan.end - dt.timedelta(days=int(c["days_before_end"]))
        rows.append((c["change_id"], c["partner"], "*", c["description"], c["kind"], ts,
                     key == "placebo_change"))
    start = plan.end - dt.timedelta(days=int(eff.get("history_days")))
    for p in eff.get("partners"):
        rows.append((f"chg-{p}-onboard", p, "*", f"{p} integration goes live", "new_integration", start,
                     False))
    cols = ("change_id", "partner_id", "artisan_id", "description", "kind", "ts", "placebo")
    out.add("integration_changes", cols, rows)


def _listings(plan: Plan, rng: np.random.Generator, out: KpiRows, artisans: Sequence[Artisan]) -> None:
    rows = []
    end_s = plan.end.timestamp()
    for a in artisans:
        for j in range(int(rng.integers(5, 40))):
            created = end_s - float(rng.uniform(30, 400)) * 86400
            updated = float(rng.uniform(created, end_s))
            errs = int(rng.integers(1, 6)) if rng.random() < (0.15 if a.laggy else 0.03) else 0
            rows.append((a.id, f"{a.id}-l{j + 1:03d}", _t(created), _t(updated), errs))
    out.add("listings", ("artisan_id", "listing_id", "created", "updated", "sync_errors"), rows)


def _loyalty(plan: Plan, eff: Effects, rng: np.random.Generator, out: KpiRows,
             buyers: dict[str, float]) -> None:
    cfg = eff.get("loyalty")
    end_s = plan.end.timestamp()
    rows = []
    for buyer in sorted(buyers):
        if rng.random() >= cfg["member_share"]:
            continue
        enrolled = buyers[buyer] - float(rng.uniform(0, 60)) * 86400
        if rng.random() < cfg["engaged_share"]:
            last: dt.datetime | None = _t(end_s - float(rng.uniform(0, 29)) * 86400)
        else:
            last = _t(end_s - float(rng.uniform(31, 200)) * 86400) if rng.random() < 0.6 else None
        rows.append((buyer, _t(enrolled), last))
    out.add("loyalty", ("buyer_id", "enrolled", "last_active"), rows)


# ---------------------------------------------------------------------------------------------- writer

@dataclass(frozen=True)
class Summary:
    calls: int
    span_rows: int
    kpi_rows: dict[str, int]
    artisans: int
    seconds: float


def generate(store: Store, plan: Plan, eff: Effects, *, progress: bool = True) -> Summary:
    """Write the whole history into ``store`` (schema must be applied).  Blocking."""
    from collectors.rows import insert_calls

    t0 = time.monotonic()
    artisans = build_artisans(plan, eff)
    resource = {"service.name": plan.service_name, "service.version": "generated",
                "deployment.environment": "generated"}
    bar = Progress("calls", plan.calls, enabled=progress)
    n_rows = 0
    for batch in call_batches(plan, eff, artisans):
        n_rows += insert_calls(store, batch, service_name=plan.service_name, resource=resource)
        bar.update(len(batch))
    bar.finish(f"{n_rows} span rows")
    store.insert("loomgate_health_checks", health_rows(plan, eff), HEALTH_COLUMNS)
    kpis = kpi_rows(plan, eff, artisans)
    counts: dict[str, int] = {}
    total = sum(len(r) for _, r in kpis.tables.values())
    kbar = Progress("kpi rows", total, enabled=progress)
    for name, (cols, rows) in kpis.tables.items():
        for i in range(0, len(rows), ROW_BATCH):
            chunk = rows[i: i + ROW_BATCH]
            store.insert(KPI_TABLES[name], chunk, cols)
            kbar.update(len(chunk))
        counts[name] = len(rows)
    kbar.finish()
    # A bulk load is done: merge each KPI table to one part, so reading it with FINAL costs nothing extra.
    for name in kpis.tables:
        store.command(f"OPTIMIZE TABLE {KPI_TABLES[name]} FINAL")
    return Summary(plan.calls, n_rows, counts, len(artisans), time.monotonic() - t0)


# ------------------------------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loomgate generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="1 = 100,000 calls and 10,000 orders")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default="./data",
                   help="store at chdb://DATA_DIR/clickhouse (as the gateway)")
    p.add_argument("--dsn", help="store DSN instead of --data-dir (chdb:///path or http(s)://…)")
    p.add_argument("--database", default="otel")
    p.add_argument("--config", default=str(DEFAULT_EFFECTS), help="planted effects (YAML)")
    p.add_argument("--calls", type=int, help="override the scale's call count")
    p.add_argument("--orders", type=int, help="override the scale's order count")
    p.add_argument("--artisans", type=int, help="override the scale's artisan count")
    p.add_argument("--end", help="exclusive end of the history, ISO-8601 UTC (default: today 00:00 UTC)")
    p.add_argument("--service-name", default="loomgate")
    p.add_argument("--no-progress", action="store_true")
    return p


def cli_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        eff = load_effects(args.config)
        end = None
        if args.end:
            try:
                end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00"))
            except ValueError:
                raise GenerateError(f"--end {args.end!r}: not an ISO-8601 time") from None
            end = end.replace(tzinfo=dt.UTC) if end.tzinfo is None else end.astimezone(dt.UTC)
        plan = replace(make_plan(args.scale, args.seed, calls=args.calls, orders=args.orders,
                                 artisans=args.artisans, end=end), service_name=args.service_name)
    except GenerateError as exc:
        print(f"loomgate generate: {exc}", file=sys.stderr)
        return 2
    from collectors.schema import migrate
    from gateway.config import TelemetryConfig

    dsn = args.dsn or "chdb://" + str((Path(args.data_dir) / "clickhouse").resolve())
    tcfg = TelemetryConfig(data_dir=args.data_dir, store=dsn, database=args.database, ttl_days=0,
                           service_name=args.service_name)
    store = Store(dsn, args.database)
    try:
        migrate(store, tcfg)
        summary = generate(store, plan, eff, progress=not args.no_progress)
    finally:
        store.close()
    kpi = ", ".join(f"{k} {v}" for k, v in summary.kpi_rows.items())
    print(f"generated {summary.calls} calls ({summary.span_rows} span rows) for {summary.artisans} artisans; "
          f"{kpi}; {summary.seconds:.1f}s into {dsn} database {args.database}")
    return 0
