"""Health-check conditions: ``[PLACEHOLDER] OPERATOR VALUE``, parsed once at start, evaluated per result.

Placeholders:
  ``[STATUS]``         HTTP status code of the response
  ``[RESPONSE_TIME]``  milliseconds from sending the request to the end of the body
  ``[BODY]``           the response body as text
  ``[BODY].a.b[0].c``  a value inside a JSON body (dotted keys, ``[n]`` list indexes)
  ``[CONNECTED]``      ``true`` when a response arrived at all

Operators: ``==  !=  <  <=  >  >=  contains``.  Ordering operators need numbers on both sides;
``==``/``!=`` compare numerically when both sides are numbers, as text otherwise; ``contains`` is a
substring test on the text form.  The value may be quoted ('ok' or "ok") to keep spaces.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PLACEHOLDERS = ("[STATUS]", "[RESPONSE_TIME]", "[BODY]", "[CONNECTED]")
OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "contains")  # two-character operators first

_ORDERING: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_CONDITION = re.compile(
    r"^\s*(?P<lhs>\[[A-Z_]+\][^\s]*)\s*(?P<op>==|!=|<=|>=|<|>|contains)\s*(?P<rhs>.*?)\s*$"
)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Observation:
    """What one check saw: everything a condition can look at."""

    connected: bool
    status: int = 0
    response_time_ms: float = 0.0
    body: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    text: str
    placeholder: str  # one of PLACEHOLDERS
    path: tuple[str | int, ...]  # JSON path for [BODY].x, empty otherwise
    op: str
    expected: str

    @property
    def is_latency(self) -> bool:
        """Failing only these conditions means slow (DEGRADED), not down."""
        return self.placeholder == "[RESPONSE_TIME]"

    def evaluate(self, obs: Observation, parsed_body: Any = _MISSING) -> tuple[bool, str]:
        """(passed, reason); the reason names the condition and the actual value when it fails."""
        actual = self._actual(obs, parsed_body)
        if actual is _MISSING:
            return False, f"{self.text} (value missing)"
        passed = _compare(_text(actual), self.op, self.expected)
        if passed:
            return True, ""
        return False, f"{self.text} (actual {_shorten(_text(actual))})"

    def _actual(self, obs: Observation, parsed_body: Any) -> Any:
        if self.placeholder == "[CONNECTED]":
            return obs.connected
        if self.placeholder == "[STATUS]":
            return obs.status
        if self.placeholder == "[RESPONSE_TIME]":
            return round(obs.response_time_ms, 3)
        if not self.path:
            return obs.body
        doc = parse_json_body(obs.body) if parsed_body is _MISSING else parsed_body
        return lookup(doc, self.path)


def parse_condition(text: str) -> Condition:
    """Parse one condition; ``ValueError`` says precisely what is wrong with it."""
    m = _CONDITION.match(text)
    if m is None:
        raise ValueError(_diagnose(text))
    lhs, op, rhs = m.group("lhs"), m.group("op"), m.group("rhs")
    placeholder, _, rest = lhs.partition("]")
    placeholder += "]"
    if placeholder not in PLACEHOLDERS:
        raise ValueError(f"condition {text!r}: unknown placeholder {placeholder} "
                         f"(expected one of {', '.join(PLACEHOLDERS)})")
    path: tuple[str | int, ...] = ()
    if rest:
        if placeholder != "[BODY]":
            raise ValueError(f"condition {text!r}: only [BODY] takes a JSON path, not {placeholder}")
        path = _parse_path(text, rest)
    expected = _unquote(rhs)
    if rhs == "":
        raise ValueError(f"condition {text!r}: missing value after {op!r}")
    if op in _ORDERING and _number(expected) is None:
        raise ValueError(f"condition {text!r}: operator {op} needs a number, got {expected!r}")
    if placeholder in ("[STATUS]", "[RESPONSE_TIME]") and op != "contains" and _number(expected) is None:
        raise ValueError(f"condition {text!r}: {placeholder} is compared with a number, got {expected!r}")
    if placeholder == "[CONNECTED]" and (op not in ("==", "!=") or expected not in ("true", "false")):
        raise ValueError(f"condition {text!r}: [CONNECTED] supports only == true / == false")
    return Condition(text=text.strip(), placeholder=placeholder, path=path, op=op, expected=expected)


def _diagnose(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        return "condition is empty (expected e.g. '[STATUS] == 200')"
    if not stripped.startswith("["):
        return f"condition {text!r}: must start with a placeholder such as [STATUS] or [BODY].field"
    if not any(f" {op} " in f" {stripped} " or op in stripped for op in OPERATORS):
        return f"condition {text!r}: no operator (use one of {' '.join(OPERATORS)})"
    return f"condition {text!r}: expected '[PLACEHOLDER] OPERATOR VALUE', e.g. '[STATUS] == 200'"


def _parse_path(text: str, rest: str) -> tuple[str | int, ...]:
    if not rest.startswith("."):
        raise ValueError(f"condition {text!r}: a JSON path starts with '.', e.g. [BODY].status")
    parts: list[str | int] = []
    pos = 1
    while pos < len(rest):
        m = _PATH_PART.match(rest, pos)
        if m is None:
            raise ValueError(f"condition {text!r}: bad JSON path near {rest[pos:]!r}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
        if pos < len(rest) and rest[pos] == ".":
            pos += 1
            if pos == len(rest):
                raise ValueError(f"condition {text!r}: JSON path ends with '.'")
    if not parts:
        raise ValueError(f"condition {text!r}: empty JSON path after [BODY]")
    return tuple(parts)


def parse_json_body(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _MISSING


def lookup(doc: Any, path: tuple[str | int, ...]) -> Any:
    cur = doc
    for part in path:
        in_list = isinstance(part, int) and isinstance(cur, list) and part < len(cur)
        in_dict = isinstance(part, str) and isinstance(cur, dict) and part in cur
        if not (in_list or in_dict):
            return _MISSING
        cur = cur[part]
    return cur


def _compare(actual: str, op: str, expected: str) -> bool:
    if op == "contains":
        return expected in actual
    a, e = _number(actual), _number(expected)
    if op in _ORDERING:
        return a is not None and e is not None and _ORDERING[op](a, e)
    equal = a == e if a is not None and e is not None else actual == expected
    return equal if op == "==" else not equal


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _number(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _shorten(s: str, limit: int = 80) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def evaluate_all(conditions: tuple[Condition, ...], obs: Observation) -> tuple[list[str], list[str]]:
    """(failed reasons of non-latency conditions, failed reasons of latency conditions)."""
    parsed: Any = _MISSING
    if any(c.path for c in conditions):
        parsed = parse_json_body(obs.body)
    hard: list[str] = []
    slow: list[str] = []
    for c in conditions:
        ok, reason = c.evaluate(obs, parsed)
        if not ok:
            (slow if c.is_latency else hard).append(reason)
    return hard, slow
