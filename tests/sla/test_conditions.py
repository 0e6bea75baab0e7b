"""Condition parsing and evaluation (collectors.conditions)."""

from __future__ import annotations

import pytest

from collectors.conditions import Observation, evaluate_all, parse_condition

OBS = Observation(connected=True, status=200, response_time_ms=120.0,
                  body='{"status": "ok", "items": [{"id": 7}], "n": 3, "live": true}')


@pytest.mark.parametrize(("text", "passed"), [
    ("[STATUS] == 200", True),
    ("[STATUS] != 200", False),
    ("[STATUS] < 300", True),
    ("[STATUS] >= 500", False),
    ("[RESPONSE_TIME] < 300", True),
    ("[RESPONSE_TIME] <= 120", True),
    ("[RESPONSE_TIME] > 120", False),
    ("[BODY] contains \"status\"", True),
    ("[BODY] contains down", False),
    ("[BODY].status == ok", True),
    ("[BODY].status == 'ok'", True),
    ("[BODY].status != ok", False),
    ("[BODY].items[0].id == 7", True),
    ("[BODY].n > 2", True),
    ("[BODY].live == true", True),
    ("[BODY].missing == x", False),
    ("[CONNECTED] == true", True),
])
def test_evaluate(text: str, passed: bool) -> None:
    ok, reason = parse_condition(text).evaluate(OBS)
    assert ok is passed
    assert (reason == "") is passed


def test_failure_reason_names_actual_value() -> None:
    ok, reason = parse_condition("[STATUS] == 200").evaluate(Observation(True, 503, 5.0, ""))
    assert not ok and reason == "[STATUS] == 200 (actual 503)"
    ok, reason = parse_condition("[BODY].status == ok").evaluate(Observation(True, 200, 5.0, "not json"))
    assert not ok and reason == "[BODY].status == ok (value missing)"


@pytest.mark.parametrize(("text", "message"), [
    ("", "condition is empty"),
    ("STATUS == 200", "must start with a placeholder"),
    ("[STATUS] 200", "no operator"),
    ("[CODE] == 200", "unknown placeholder [CODE]"),
    ("[STATUS] ==", "missing value after '=='"),
    ("[RESPONSE_TIME] < fast", "operator < needs a number"),
    ("[STATUS] == ok", "[STATUS] is compared with a number"),
    ("[STATUS].x == 1", "only [BODY] takes a JSON path"),
    ("[BODY]status == ok", "a JSON path starts with '.'"),
    ("[CONNECTED] == maybe", "[CONNECTED] supports only"),
])
def test_parse_errors_are_precise(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as info:
        parse_condition(text)
    assert message in str(info.value)


def test_latency_conditions_are_separated() -> None:
    conds = tuple(parse_condition(t) for t in ("[STATUS] == 200", "[RESPONSE_TIME] < 100"))
    hard, slow = evaluate_all(conds, OBS)
    assert hard == [] and slow == ["[RESPONSE_TIME] < 100 (actual 120)"]
    hard, slow = evaluate_all(conds, Observation(True, 500, 50.0, ""))
    assert hard == ["[STATUS] == 200 (actual 500)"] and slow == []
