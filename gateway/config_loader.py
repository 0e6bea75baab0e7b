"""YAML configuration loader and the ``loomgate check-config`` command.

``load_config(path)`` composes the YAML node graph once (every node keeps its line), walks it against the
shape documented in ``config/gateway.yaml`` and builds the frozen objects of ``gateway.config``.  It never
stops at the first mistake: every problem is collected as ``FILE:LINE: key.path: what is wrong`` and the
whole list is raised as ``ConfigError``.  List indexes in key paths count from 0 (``routes[0]`` is the
first route).

Conventions of the file format:

* ``${VAR}`` and ``${VAR:-default}`` are replaced in scalar values (never in keys) before any type check;
  ``:-`` uses the default when the variable is unset or empty; ``$$`` is a literal ``$``.  A value is
  typed after substitution, so ``port: ${PORT:-8080}`` is a number.  Inside ``{...}`` or ``[...]`` flow
  collections a reference must be quoted (``{port: "${PORT}"}``), because YAML reads its braces.
* Durations: ``250ms``, ``2s``, ``1m``, ``1h``, ``1d`` (combinable: ``1h30m``) or a plain number of seconds.
  Sizes: ``512KiB``, ``1MiB``, ``10MB`` (``kB/MB/GB/TB`` are powers of 1000, ``KiB/MiB/GiB/TiB`` of 1024)
  or a plain number of bytes.
* An empty value (``key:`` or ``null``) means the default for optional keys.
* Relative paths (``telemetry.data_dir``, ``telemetry.spool.dir``, ``chdb://`` store paths) are resolved
  against the current working directory when the file is loaded, not against the file's directory.
* Top-level keys starting with ``x-`` are ignored, so they can hold YAML anchors; ``<<`` merge keys work.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from gateway.config import (
    AdminListener,
    AlertsConfig,
    ArtisanLookup,
    CircuitBreakerConfig,
    Config,
    HealthCheck,
    LatencyObjective,
    Limits,
    Listener,
    MaintenanceWindow,
    OtlpConfig,
    Partner,
    RateLimit,
    Recurrence,
    Route,
    Sla,
    SpoolConfig,
    SyncLagLookup,
    TelemetryConfig,
    Timeouts,
    Upstream,
    Webhook,
)


class ConfigError(Exception):
    """The configuration has problems; ``problems`` lists each as ``FILE:LINE: key.path: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# ------------------------------------------------------------------------------------- value grammars

_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_SIZE_UNITS: Final = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)?")
_DURATION_HINT = "use e.g. 250ms, 2s, 1m, 1h, 1d or a number of seconds"
_SIZE_HINT = "use e.g. 512KiB, 1MiB, 10MB or a number of bytes"


def parse_duration(value: str | float) -> float:
    """Seconds for ``250ms``/``2s``/``1m``/``1h``/``1d`` (or combinations) or a number; ValueError if bad."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if _PLAIN_NUMBER.fullmatch(text):
            seconds = float(text)
        elif _DURATION_FULL.fullmatch(text.lstrip("-")):
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
            seconds = -seconds if text.startswith("-") else seconds
        else:
            raise ValueError(f"bad duration '{value}' ({_DURATION_HINT})")
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration '{value}' ({_DURATION_HINT})")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes for ``512KiB``/``1MiB``/``10MB`` or a plain integer; ValueError if bad."""
    if isinstance(value, bool | float):
        raise ValueError(f"bad size {value!r} ({_SIZE_HINT})")
    if isinstance(value, int):
        return value
    text = value.strip()
    if _PLAIN_NUMBER.fullmatch(text) and "." not in text:
        return int(text)
    m = _SIZE.fullmatch(text)
    if m is None or (m.group(2) or "B") not in _SIZE_UNITS or (m.group(2) is None and "." in text):
        raise ValueError(f"bad size '{value}' ({_SIZE_HINT})")
    return round(float(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"])


def _span(seconds: float) -> str:
    """A duration in the largest unit that divides it, for messages: 172800 -> 2d, 0.25 -> 250ms."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s" if seconds >= 1 else f"{seconds * 1000:g}ms"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _suggest(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known word, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------------- node access layer

_NULL: Final = "tag:yaml.org,2002:null"
_BOOL: Final = "tag:yaml.org,2002:bool"
_INT: Final = "tag:yaml.org,2002:int"
_FLOAT: Final = "tag:yaml.org,2002:float"
_MERGE: Final = "tag:yaml.org,2002:merge"
_RESOLVER: Final = Resolver()
_CONSTRUCTOR: Final = SafeConstructor()
_ENV_REF = re.compile(r"\$\$|\$\{([^}$]*)\}|\$\{")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Invalid:
    """Marker for a value that failed validation (the problem is already recorded)."""

    __slots__ = ()


INVALID: Final = _Invalid()


@dataclass(frozen=True, slots=True)
class _Scalar:
    tag: str  # resolved YAML tag after substitution
    text: str  # source text after substitution


class _Ctx:
    """Problems collected while walking one file, plus per-node caches."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self._problems: list[tuple[int, int, str]] = []
        self._scalars: dict[int, _Scalar | _Invalid] = {}
        self.owner: dict[int, Node] = {}  # id(value node) -> its key node, to point at "key:" lines

    def error(self, node: Node | None, path: str, message: str) -> _Invalid:
        line = node.start_mark.line + 1 if node is not None else 1
        self.add(line, f"{path}: {message}" if path else message)
        return INVALID

    def add(self, line: int, text: str) -> None:
        self._problems.append((line, len(self._problems), f"{self.source}:{line}: {text}"))

    def problems(self) -> list[str]:
        return [text for _, _, text in sorted(self._problems)]

    def scalar(self, node: ScalarNode, path: str) -> _Scalar | _Invalid:
        """The node's value after ``${VAR}`` substitution (substituted and reported once per node)."""
        key = id(node)
        if key not in self._scalars:
            self._scalars[key] = self._substitute(node, path)
        return self._scalars[key]

    def _substitute(self, node: ScalarNode, path: str) -> _Scalar | _Invalid:
        text = node.value
        if "$" not in text:
            return _Scalar(node.tag, text)
        errors: list[str] = []

        def replace(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            ref = m.group(1)
            if ref is None:
                errors.append("unterminated '${' (write $$ for a literal $)")
                return ""
            name, has_default, default = ref.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                errors.append(f"malformed reference '${{{ref}}}' (use ${{NAME}} or ${{NAME:-default}})")
                return ""
            value = self.env.get(name)
            if value is None or (has_default and value == ""):
                if has_default:
                    return default
                errors.append(f"environment variable {name} is not set and has no default")
                return ""
            return value

        result = _ENV_REF.sub(replace, text)
        if errors:
            for message in errors:
                self.error(node, path, message)
            return INVALID
        # A substituted value is typed by its text, quoted or not, as if written literally: string keys
        # take any scalar's text, so only number and boolean keys see the difference.
        return _Scalar(_RESOLVER.resolve(ScalarNode, result, (True, False)), result)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(ctx: _Ctx, node: Node, path: str) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    s = ctx.scalar(node, path)  # type: ignore[arg-type]
    if isinstance(s, _Invalid):
        return "an invalid value"
    return "nothing" if s.tag == _NULL else f"'{s.text}'"


def _is_null(ctx: _Ctx, node: Node, path: str) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    s = ctx.scalar(node, path)
    return isinstance(s, _Scalar) and s.tag == _NULL


def _pairs(ctx: _Ctx, node: MappingNode, path: str, depth: int = 0) -> list[tuple[Node, Node]]:
    """Key/value pairs with ``<<`` merges applied (explicit keys win, earlier merge sources win)."""
    explicit = [(k, v) for k, v in node.value if k.tag != _MERGE]
    merged: list[tuple[Node, Node]] = []
    for k, v in node.value:
        if k.tag != _MERGE:
            continue
        sources = v.value if isinstance(v, SequenceNode) else [v]
        for src in sources:
            if not isinstance(src, MappingNode) or depth > 20:
                ctx.error(k, path, "'<<' merges a mapping or a list of mappings")
                continue
            merged.extend(_pairs(ctx, src, path, depth + 1))
    seen = {k.value for k, _ in explicit if isinstance(k, ScalarNode)}
    for k, v in merged:
        if isinstance(k, ScalarNode) and k.value not in seen:
            seen.add(k.value)
            explicit.append((k, v))
    return explicit


def _mapping(
    ctx: _Ctx,
    node: Node,
    path: str,
    allowed: Iterable[str],
    required: Iterable[str] = (),
    *,
    extensions: bool = False,
) -> dict[str, Node] | None:
    """Keys of a mapping node; reports unknown, duplicate and missing keys."""
    if not isinstance(node, MappingNode):
        ctx.error(node, path, f"expected a mapping, got {_describe(ctx, node, path)}")
        return None
    known = list(allowed)
    out: dict[str, Node] = {}
    first: dict[str, int] = {}
    for key_node, value_node in _pairs(ctx, node, path):
        if not isinstance(key_node, ScalarNode) or key_node.tag not in ("tag:yaml.org,2002:str", _INT):
            ctx.error(key_node, path, "keys must be plain names")
            continue
        key = key_node.value
        kpath = _join(path, key)
        line = key_node.start_mark.line + 1
        if key not in known:
            if not (extensions and key.startswith("x-")):
                hint = _suggest(key, known) or f" (known: {', '.join(known)})"
                ctx.error(key_node, kpath, f"unknown key '{key}'{hint}")
            continue
        if key in first:
            ctx.error(key_node, kpath, f"duplicate key (first set at line {first[key]})")
            continue
        first[key] = line
        out[key] = value_node
        ctx.owner[id(value_node)] = key_node
    for key in required:
        if key not in out:
            ctx.error(ctx.owner.get(id(node), node), _join(path, key), "missing required key")
    return out


Conv = Callable[[_Ctx, Node, str], Any]


def _get(ctx: _Ctx, m: dict[str, Node], path: str, key: str, conv: Conv, default: Any = None) -> Any:
    """Converted value of ``key`` or ``default`` (absent, empty, or invalid: the problem is recorded)."""
    node = m.get(key)
    if node is None:
        return default
    kpath = _join(path, key)
    if _is_null(ctx, node, kpath):
        return default
    value = conv(ctx, node, kpath)
    return default if isinstance(value, _Invalid) else value


def _need(ctx: _Ctx, m: dict[str, Node], path: str, key: str, conv: Conv) -> Any:
    """Like ``_get`` for required keys: an empty value is a problem; returns INVALID when unusable."""
    node = m.get(key)
    if node is None:
        return INVALID
    kpath = _join(path, key)
    if _is_null(ctx, node, kpath):
        return ctx.error(node, kpath, "must not be empty")
    return conv(ctx, node, kpath)


def _indexed(ctx: _Ctx, node: Node, path: str, conv: Conv) -> list[tuple[int, Node, Any]] | None:
    """(index, node, converted value) for the valid items of a list node; None if it is not a list."""
    if not isinstance(node, SequenceNode):
        ctx.error(node, path, f"expected a list, got {_describe(ctx, node, path)}")
        return None
    out = []
    for i, item in enumerate(node.value):
        value = conv(ctx, item, f"{path}[{i}]")
        if not isinstance(value, _Invalid):
            out.append((i, item, value))
    return out


def _items(ctx: _Ctx, node: Node, path: str, conv: Conv) -> list[Any] | None:
    """Converted items of a list node (invalid items are left out)."""
    indexed = _indexed(ctx, node, path, conv)
    return None if indexed is None else [value for _, _, value in indexed]


def _scalar_of(ctx: _Ctx, node: Node, path: str, what: str) -> _Scalar | _Invalid:
    if not isinstance(node, ScalarNode):
        return ctx.error(node, path, f"expected {what}, got {_describe(ctx, node, path)}")
    return ctx.scalar(node, path)


# ------------------------------------------------------------------------------------------ converters


def _string(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    # Any scalar's source text is accepted, so ids like 1001 or times like 12:30 stay as written.
    s = _scalar_of(ctx, node, path, "a string")
    if isinstance(s, _Invalid):
        return s
    if s.tag == _NULL:
        return ctx.error(node, path, "must not be empty")
    return s.text


def _nonempty(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _string(ctx, node, path)
    if text == "":
        return ctx.error(node, path, "must not be empty")
    return text


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _name(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, str) and not _NAME.fullmatch(text):
        return ctx.error(
            node,
            path,
            f"invalid name '{text}' (letters, digits, '_', '.', '-'; starting with a letter or digit)",
        )
    return text


def _bool(ctx: _Ctx, node: Node, path: str) -> bool | _Invalid:
    s = _scalar_of(ctx, node, path, "true or false")
    if isinstance(s, _Invalid):
        return s
    if s.tag != _BOOL:
        return ctx.error(node, path, f"expected true or false, got {_describe(ctx, node, path)}")
    return bool(_CONSTRUCTOR.construct_yaml_bool(ScalarNode(s.tag, s.text)))


def _number(ctx: _Ctx, node: Node, path: str) -> float | int | _Invalid:
    s = _scalar_of(ctx, node, path, "a number")
    if isinstance(s, _Invalid):
        return s
    if s.tag == _INT:
        return int(_CONSTRUCTOR.construct_yaml_int(ScalarNode(s.tag, s.text)))
    if s.tag == _FLOAT:
        value = float(_CONSTRUCTOR.construct_yaml_float(ScalarNode(s.tag, s.text)))
        if math.isfinite(value):
            return value
    return ctx.error(node, path, f"expected a number, got {_describe(ctx, node, path)}")


def _integer(minimum: int, maximum: int | None = None) -> Conv:
    def conv(ctx: _Ctx, node: Node, path: str) -> int | _Invalid:
        value = _number(ctx, node, path)
        if isinstance(value, _Invalid):
            return value
        if isinstance(value, float):
            return ctx.error(node, path, f"expected a whole number, got {_describe(ctx, node, path)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            return ctx.error(node, path, f"must be {bound}, got {value}")
        return value

    return conv


def _positive_number(ctx: _Ctx, node: Node, path: str) -> float | _Invalid:
    value = _number(ctx, node, path)
    if isinstance(value, _Invalid):
        return value
    if value <= 0:
        return ctx.error(node, path, f"must be greater than 0, got {value}")
    return float(value)


def _percent(ctx: _Ctx, node: Node, path: str) -> float | _Invalid:
    value = _number(ctx, node, path)
    if isinstance(value, _Invalid):
        return value
    if not 0 < value <= 100:
        return ctx.error(node, path, f"must be a percentage in (0, 100], e.g. 99.9, got {value}")
    return float(value)


def _duration(*, allow_zero: bool = False) -> Conv:
    def conv(ctx: _Ctx, node: Node, path: str) -> float | _Invalid:
        s = _scalar_of(ctx, node, path, "a duration")
        if isinstance(s, _Invalid):
            return s
        raw: str | float = s.text
        if s.tag in (_INT, _FLOAT):
            raw = _number(ctx, node, path)  # type: ignore[assignment]
            if isinstance(raw, _Invalid):
                return raw
        elif s.tag != "tag:yaml.org,2002:str":
            return ctx.error(node, path, f"bad duration '{s.text}' ({_DURATION_HINT})")
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            return ctx.error(node, path, str(exc))
        if seconds < 0 or (seconds == 0 and not allow_zero):
            return ctx.error(
                node, path, f"must be {'0 or more' if allow_zero else 'greater than 0'}, got {s.text}"
            )
        return seconds

    return conv


def _size(ctx: _Ctx, node: Node, path: str) -> int | _Invalid:
    s = _scalar_of(ctx, node, path, "a size")
    if isinstance(s, _Invalid):
        return s
    raw: str | int = s.text
    if s.tag == _INT:
        raw = int(_CONSTRUCTOR.construct_yaml_int(ScalarNode(s.tag, s.text)))
    elif s.tag != "tag:yaml.org,2002:str":
        return ctx.error(node, path, f"bad size '{s.text}' ({_SIZE_HINT})")
    try:
        size = parse_size(raw)
    except ValueError as exc:
        return ctx.error(node, path, str(exc))
    if size <= 0:
        return ctx.error(node, path, f"must be greater than 0, got {s.text}")
    return size


def _port(ctx: _Ctx, node: Node, path: str) -> int | _Invalid:
    s = _scalar_of(ctx, node, path, "a port")
    if isinstance(s, _Invalid):
        return s
    if s.tag != _INT:
        return ctx.error(node, path, f"expected a port number, got {_describe(ctx, node, path)}")
    value = int(_CONSTRUCTOR.construct_yaml_int(ScalarNode(s.tag, s.text)))
    if not 0 <= value <= 65535:
        return ctx.error(node, path, f"port must be between 0 and 65535 (0 = any free port), got {value}")
    return value


def _choice(options: Iterable[str]) -> Conv:
    known = list(options)

    def conv(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
        text = _string(ctx, node, path)
        if isinstance(text, str) and text not in known:
            return ctx.error(node, path, f"must be one of {', '.join(known)}, got '{text}'")
        return text

    return conv


def _http_url(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, _Invalid):
        return text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        return ctx.error(node, path, f"bad URL '{text}': {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ctx.error(node, path, f"must be an http:// or https:// URL with a host, got '{text}'")
    return text


def _timestamp(ctx: _Ctx, node: Node, path: str) -> float | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, _Invalid):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return ctx.error(node, path, f"bad timestamp '{text}' (use ISO-8601, e.g. 2025-03-01T02:00:00Z)")
    if moment.tzinfo is None:  # documented: timestamps without an offset are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class _Unique:
    """Reports a second use of the same value, pointing at the first."""

    def __init__(self, ctx: _Ctx, what: str) -> None:
        self.ctx = ctx
        self.what = what
        self.first: dict[Any, int] = {}

    def check(self, node: Node, path: str, value: Any) -> bool:
        if value in self.first:
            self.ctx.error(node, path, f"duplicate {self.what} '{value}' (first at line {self.first[value]})")
            return False
        self.first[value] = node.start_mark.line + 1
        return True


def _reference(ctx: _Ctx, node: Node, path: str, kind: str, known: Iterable[str]) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    names = list(known)
    if isinstance(text, str) and text not in names:
        return ctx.error(node, path, f"unknown {kind} '{text}' (known: {', '.join(names) or 'none'})")
    return text


# ---------------------------------------------------------------------------------------------- sections

_TOP_KEYS: Final = (
    "listeners",
    "limits",
    "upstreams",
    "routes",
    "partners",
    "telemetry",
    "slas",
    "maintenance",
    "alerts",
)


def _listeners(ctx: _Ctx, node: Node | None, path: str) -> tuple[Listener, AdminListener]:
    m = _mapping(ctx, node, path, ("partner", "admin"), ("partner", "admin")) if node is not None else None
    partner, admin = Listener(), AdminListener(token="")
    if m is None:
        return partner, admin
    pnode, anode = m.get("partner"), m.get("admin")
    if pnode is not None:
        p = _mapping(ctx, pnode, _join(path, "partner"), ("host", "port"))
        if p is not None:
            ppath = _join(path, "partner")
            partner = Listener(
                host=_get(ctx, p, ppath, "host", _nonempty, partner.host),
                port=_get(ctx, p, ppath, "port", _port, partner.port),
            )
    if anode is not None:
        apath = _join(path, "admin")
        a = _mapping(ctx, anode, apath, ("host", "port", "token"), ("token",))
        if a is not None:
            token = _need(ctx, a, apath, "token", _nonempty)
            admin = AdminListener(
                host=_get(ctx, a, apath, "host", _nonempty, admin.host),
                port=_get(ctx, a, apath, "port", _port, admin.port),
                token=token if isinstance(token, str) else "",
            )
            port_node = a.get("port")
            if admin.port and admin.port == partner.port and port_node is not None:
                ctx.error(
                    port_node, _join(apath, "port"), f"same port as listeners.partner.port ({admin.port})"
                )
            problem = weak_token_problem(admin.token, partner.host, admin.host)
            if problem is not None and isinstance(token, str):
                ctx.error(a["token"], _join(apath, "token"), problem)
    return partner, admin


MIN_ADMIN_TOKEN_LEN: Final = 16
# Values the shipped examples (config/*.yaml, docker-compose.yml) use as literal defaults: public, so
# never a real secret.
EXAMPLE_ADMIN_TOKENS: Final = frozenset({"change-me", "demo-admin-token"})


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def weak_token_problem(token: str, partner_host: str, admin_host: str) -> str | None:
    """Why ``token`` is too weak for listeners reachable from other machines (None when acceptable).

    A weak token is tolerated only when both listeners are bound to loopback (a local demo or test).
    """
    if not token or (_loopback(partner_host) and _loopback(admin_host)):
        return None
    if token in EXAMPLE_ADMIN_TOKENS:
        reason = "is a published example value"
    elif len(token) < MIN_ADMIN_TOKEN_LEN:
        reason = f"is shorter than {MIN_ADMIN_TOKEN_LEN} characters"
    else:
        return None
    return (
        f"the admin token {reason}; set a random one of {MIN_ADMIN_TOKEN_LEN}+ characters "
        "(e.g. via ${LOOMGATE_ADMIN_TOKEN}), or bind both listeners to loopback"
    )


_LIMIT_KEYS: Final = (
    "max_line_size",
    "max_field_size",
    "max_headers",
    "drain_timeout",
    "client_idle_timeout",
    "header_timeout",
    "body_idle_timeout",
    "keepalive_timeout",
    "max_connections",
    "admin_max_connections",
    "auth_failure_rate",
    "auth_failure_burst",
    "auth_tracked_addresses",
)


def _limits(ctx: _Ctx, node: Node | None, path: str) -> Limits:
    d = Limits()
    m = _mapping(ctx, node, path, _LIMIT_KEYS)
    if m is None:
        return d
    return Limits(
        max_line_size=_get(ctx, m, path, "max_line_size", _size, d.max_line_size),
        max_field_size=_get(ctx, m, path, "max_field_size", _size, d.max_field_size),
        max_headers=_get(ctx, m, path, "max_headers", _integer(1), d.max_headers),
        drain_timeout=_get(ctx, m, path, "drain_timeout", _duration(allow_zero=True), d.drain_timeout),
        client_idle_timeout=_get(ctx, m, path, "client_idle_timeout", _duration(), d.client_idle_timeout),
        header_timeout=_get(ctx, m, path, "header_timeout", _duration(), d.header_timeout),
        body_idle_timeout=_get(ctx, m, path, "body_idle_timeout", _duration(), d.body_idle_timeout),
        keepalive_timeout=_get(ctx, m, path, "keepalive_timeout", _duration(), d.keepalive_timeout),
        max_connections=_get(ctx, m, path, "max_connections", _integer(1, 1_000_000), d.max_connections),
        admin_max_connections=_get(
            ctx, m, path, "admin_max_connections", _integer(1, 100_000), d.admin_max_connections
        ),
        auth_failure_rate=_get(ctx, m, path, "auth_failure_rate", _positive_number, d.auth_failure_rate),
        auth_failure_burst=_get(
            ctx, m, path, "auth_failure_burst", _integer(1, 1_000_000), d.auth_failure_burst
        ),
        auth_tracked_addresses=_get(
            ctx, m, path, "auth_tracked_addresses", _integer(1, 10_000_000), d.auth_tracked_addresses
        ),
    )


def _timeouts(ctx: _Ctx, node: Node, path: str) -> Timeouts | _Invalid:
    d = Timeouts()
    m = _mapping(ctx, node, path, ("connect", "read", "total"))
    if m is None:
        return INVALID
    t = Timeouts(
        connect=_get(ctx, m, path, "connect", _duration(), d.connect),
        read=_get(ctx, m, path, "read", _duration(), d.read),
        total=_get(ctx, m, path, "total", _duration(), d.total),
    )
    for key in ("connect", "read"):
        if key in m and getattr(t, key) > t.total:
            ctx.error(
                m[key],
                _join(path, key),
                f"{_span(getattr(t, key))} is longer than the total timeout ({_span(t.total)})",
            )
    return t


def _breaker(ctx: _Ctx, node: Node, path: str) -> CircuitBreakerConfig | _Invalid:
    d = CircuitBreakerConfig()
    m = _mapping(ctx, node, path, ("failures", "cooldown"))
    if m is None:
        return INVALID
    return CircuitBreakerConfig(
        failures=_get(ctx, m, path, "failures", _integer(1), d.failures),
        cooldown=_get(ctx, m, path, "cooldown", _duration(), d.cooldown),
    )


_HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _method(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, str) and text not in _HTTP_METHODS:
        hint = (
            f" (methods are case-sensitive: write '{text.upper()}')" if text.upper() in _HTTP_METHODS else ""
        )
        return ctx.error(
            node, path, f"unknown HTTP method '{text}'{hint} (valid: {', '.join(_HTTP_METHODS)})"
        )
    return text


def _condition(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    # The health checker's own parser decides, so a config that loads is a config that runs.
    from collectors.conditions import parse_condition

    text = _nonempty(ctx, node, path)
    if isinstance(text, _Invalid):
        return text
    try:
        parse_condition(text)
    except ValueError as exc:
        return ctx.error(node, path, str(exc))
    return text


def _url_path(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, str) and not text.startswith("/"):
        return ctx.error(node, path, f"must start with '/', got '{text}'")
    return text


def _health_check(ctx: _Ctx, node: Node, path: str) -> HealthCheck | _Invalid:
    d = HealthCheck()
    keys = (
        "interval",
        "timeout",
        "method",
        "path",
        "conditions",
        "failure_threshold",
        "success_threshold",
        "degraded_response_time",
    )
    m = _mapping(ctx, node, path, keys)
    if m is None:
        return INVALID
    conditions = d.conditions
    if "conditions" in m and not _is_null(ctx, m["conditions"], _join(path, "conditions")):
        items = _items(ctx, m["conditions"], _join(path, "conditions"), _condition)
        if items is not None and not items and not m["conditions"].value:
            ctx.error(m["conditions"], _join(path, "conditions"), "needs at least one condition")
        conditions = tuple(items or ())
    degraded = _get(ctx, m, path, "degraded_response_time", _duration(), None)
    hc = HealthCheck(
        interval=_get(ctx, m, path, "interval", _duration(), d.interval),
        timeout=_get(ctx, m, path, "timeout", _duration(), d.timeout),
        method=_get(ctx, m, path, "method", _method, d.method),
        path=_get(ctx, m, path, "path", _url_path, d.path),
        conditions=conditions,
        failure_threshold=_get(ctx, m, path, "failure_threshold", _integer(1), d.failure_threshold),
        success_threshold=_get(ctx, m, path, "success_threshold", _integer(1), d.success_threshold),
        degraded_response_time_ms=None if degraded is None else degraded * 1000.0,
    )
    if "timeout" in m and hc.timeout > hc.interval:
        ctx.error(
            m["timeout"],
            _join(path, "timeout"),
            f"{_span(hc.timeout)} is longer than the interval ({_span(hc.interval)})",
        )
    return hc


def _upstream(ctx: _Ctx, node: Node, path: str) -> Upstream | _Invalid:
    keys = ("name", "url", "timeouts", "pool_size", "circuit_breaker", "health_check")
    m = _mapping(ctx, node, path, keys, ("name", "url"))
    if m is None:
        return INVALID
    name = _need(ctx, m, path, "name", _name)
    url = _need(ctx, m, path, "url", _http_url)
    if isinstance(url, str) and (urlsplit(url).query or urlsplit(url).fragment):
        url = ctx.error(m["url"], _join(path, "url"), f"must not have a query or fragment, got '{url}'")
    return Upstream(
        name=name if isinstance(name, str) else "",
        url=url if isinstance(url, str) else "",
        timeouts=_get(ctx, m, path, "timeouts", _timeouts, Timeouts()),
        pool_size=_get(ctx, m, path, "pool_size", _integer(1), 100),
        circuit_breaker=_get(ctx, m, path, "circuit_breaker", _breaker, CircuitBreakerConfig()),
        health_check=_get(ctx, m, path, "health_check", _health_check, None),
    )


# Route templates: specific messages for common mistakes first; gateway.routing has the final word so the
# loader never accepts a template the route table would refuse.
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _template_problem(template: str) -> tuple[tuple[str, ...], str | None]:
    """(parameter names, first problem or None) for a route path template."""
    if not template.startswith("/"):
        return (), "must start with '/'"
    for bad, why in (("?", "a query string is not part of a route"), ("#", "a fragment is never sent")):
        if bad in template:
            return (), f"must not contain '{bad}' ({why})"
    if "//" in template:
        return (), "has an empty segment '//', which never survives path normalisation"
    params: list[str] = []
    for segment in template.split("/")[1:]:
        if segment in (".", ".."):
            return (), f"has a '{segment}' segment, which never survives path normalisation"
        opened = segment.count("{")
        if (
            opened != segment.count("}")
            or re.search(r"\{[^}]*\{|\}[^{]*\}", segment)
            or (opened and segment.index("}") < segment.index("{"))
        ):
            return (), f"has unbalanced braces in segment '{segment}'"
        for name in re.findall(r"\{([^}]*)\}", segment):
            if not _PARAM_NAME.fullmatch(name):
                return (
                    (),
                    f"has an invalid parameter name '{{{name}}}' (use letters, digits and '_')",
                )
            if name in params:
                return (), f"repeats parameter '{{{name}}}'"
            params.append(name)
    from gateway import routing  # deferred: the route table pulls in the HTTP stack

    try:
        routing.route_template_params(template)
    except ValueError as exc:
        return tuple(params), str(exc)
    return tuple(params), None


def _template(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, _Invalid):
        return text
    _, problem = _template_problem(text)
    if problem is not None:
        message = (
            "path " + problem if problem.startswith("template ") else f"path template '{text}' {problem}"
        )
        return ctx.error(node, path, message)
    return text


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_JSON_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


def _lookup_name(
    ctx: _Ctx, node: Node, path: str, source: str | None, params: tuple[str, ...] | None, template: str | None
) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, _Invalid) or source is None:
        return text
    if source == "path" and params is not None and text not in params:
        known = ", ".join(params) or "none"
        return ctx.error(
            node, path, f"'{text}' is not a parameter of path '{template}' (parameters: {known})"
        )
    if source == "header" and not _HEADER_NAME.fullmatch(text):
        return ctx.error(node, path, f"invalid header name '{text}'")
    if source == "json" and not _JSON_PATH.fullmatch(text):
        return ctx.error(node, path, f"invalid dotted JSON path '{text}' (e.g. artisan.id)")
    return text


def _artisan(
    ctx: _Ctx, node: Node, path: str, params: tuple[str, ...] | None, template: str | None
) -> ArtisanLookup | _Invalid:
    m = _mapping(ctx, node, path, ("from", "name", "required"), ("from", "name"))
    if m is None:
        return INVALID
    source = _need(ctx, m, path, "from", _choice(("path", "header", "query", "json")))
    source = source if isinstance(source, str) else None
    name = _need(ctx, m, path, "name", lambda c, n, p: _lookup_name(c, n, p, source, params, template))
    required = _get(ctx, m, path, "required", _bool, True)
    if source is None or isinstance(name, _Invalid):
        return INVALID
    return ArtisanLookup(source=source, name=name, required=required)  # type: ignore[arg-type]


def _sync_lag(ctx: _Ctx, node: Node, path: str) -> SyncLagLookup | _Invalid:
    m = _mapping(ctx, node, path, ("from", "name"), ("from", "name"))
    if m is None:
        return INVALID
    source = _need(ctx, m, path, "from", _choice(("header", "json")))
    source = source if isinstance(source, str) else None
    name = _need(ctx, m, path, "name", lambda c, n, p: _lookup_name(c, n, p, source, None, None))
    if source is None or isinstance(name, _Invalid):
        return INVALID
    return SyncLagLookup(source=source, name=name)  # type: ignore[arg-type]


def _route(ctx: _Ctx, node: Node, path: str, upstreams: list[str]) -> Route | _Invalid:
    keys = ("name", "path", "methods", "upstream", "upstream_path", "max_body_size", "artisan", "sync_lag")
    m = _mapping(ctx, node, path, keys, ("name", "path", "methods", "upstream"))
    if m is None:
        return INVALID
    name = _need(ctx, m, path, "name", _name)
    template = _need(ctx, m, path, "path", _template)
    params = _template_problem(template)[0] if isinstance(template, str) else None
    methods = _need(ctx, m, path, "methods", lambda c, n, p: _methods(c, n, p))
    upstream = _need(ctx, m, path, "upstream", lambda c, n, p: _reference(c, n, p, "upstream", upstreams))
    upstream_path = _get(ctx, m, path, "upstream_path", lambda c, n, p: _rewrite(c, n, p, params, template))
    artisan = _get(ctx, m, path, "artisan", lambda c, n, p: _artisan(c, n, p, params, template))
    return Route(
        name=name if isinstance(name, str) else "",
        path=template if isinstance(template, str) else "",
        methods=methods if isinstance(methods, tuple) else (),
        upstream=upstream if isinstance(upstream, str) else "",
        max_body_size=_get(ctx, m, path, "max_body_size", _size, 1 << 20),
        artisan=artisan,
        sync_lag=_get(ctx, m, path, "sync_lag", _sync_lag, None),
        upstream_path=upstream_path,
    )


def _methods(ctx: _Ctx, node: Node, path: str) -> tuple[str, ...] | _Invalid:
    indexed = _indexed(ctx, node, path, _method)
    if indexed is None:
        return INVALID
    if not node.value:
        return ctx.error(node, path, "needs at least one HTTP method")
    seen: set[str] = set()
    for i, item, method in indexed:
        if method in seen:
            ctx.error(item, f"{path}[{i}]", f"'{method}' is listed twice")
        seen.add(method)
    return tuple(dict.fromkeys(method for _, _, method in indexed))


def _rewrite(
    ctx: _Ctx, node: Node, path: str, params: tuple[str, ...] | None, template: Any
) -> str | _Invalid:
    text = _template(ctx, node, path)
    if isinstance(text, _Invalid) or params is None:
        return text
    used, _ = _template_problem(text)
    unknown = [p for p in used if p not in params]
    if unknown:
        names = ", ".join(f"{{{p}}}" for p in unknown)
        return ctx.error(node, path, f"uses {names}, which path '{template}' does not have")
    return text


_DIGEST = re.compile(r"[0-9a-f]{64}")


def _digest(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _string(ctx, node, path)
    if isinstance(text, _Invalid):
        return text
    if not _DIGEST.fullmatch(text):
        why = "use lower case" if _DIGEST.fullmatch(text.lower()) else f"{len(text)} characters"
        return ctx.error(
            node,
            path,
            f"must be a SHA-256 digest: 64 lowercase hex characters ({why}); `loomgate hash-key` prints one",
        )
    return text


def _api_keys(ctx: _Ctx, node: Node, path: str, digests: _Unique) -> tuple[str, ...] | _Invalid:
    indexed = _indexed(ctx, node, path, _digest)
    if indexed is None:
        return INVALID
    if not node.value:
        return ctx.error(node, path, "needs at least one key digest")
    for i, item, digest in indexed:
        digests.check(item, f"{path}[{i}]", digest)
    return tuple(digest for _, _, digest in indexed)


def _artisans(ctx: _Ctx, node: Node, path: str) -> tuple[str, ...] | str | _Invalid:
    if isinstance(node, ScalarNode):
        text = _string(ctx, node, path)
        if text == "*" or isinstance(text, _Invalid):
            return text
        return ctx.error(node, path, f"expected a list of artisan ids or \"*\", got '{text}'")
    items = _items(ctx, node, path, _nonempty)
    return INVALID if items is None else tuple(items)


def _rate_limit(ctx: _Ctx, node: Node, path: str) -> RateLimit | _Invalid:
    d = RateLimit()
    m = _mapping(ctx, node, path, ("rps", "burst"))
    if m is None:
        return INVALID
    return RateLimit(
        rps=_get(ctx, m, path, "rps", _positive_number, d.rps),
        burst=_get(ctx, m, path, "burst", _integer(1), d.burst),
    )


def _partner(ctx: _Ctx, node: Node, path: str, digests: _Unique) -> Partner | _Invalid:
    m = _mapping(ctx, node, path, ("id", "api_keys", "artisans", "rate_limit"), ("id", "api_keys"))
    if m is None:
        return INVALID
    pid = _need(ctx, m, path, "id", _name)
    keys = _need(ctx, m, path, "api_keys", lambda c, n, p: _api_keys(c, n, p, digests))
    return Partner(
        id=pid if isinstance(pid, str) else "",
        api_key_sha256=keys if isinstance(keys, tuple) else (),
        artisans=_get(ctx, m, path, "artisans", _artisans, "*"),
        rate_limit=_get(ctx, m, path, "rate_limit", _rate_limit, RateLimit()),
    )


def _dsn(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _string(ctx, node, path)
    if isinstance(text, _Invalid) or text == "":
        return text
    if text.startswith("chdb://"):
        rest = text[len("chdb://") :]
        if not rest:
            return ctx.error(node, path, "chdb:// needs a directory, e.g. chdb://./data/clickhouse")
        return "chdb://" + str(Path(rest).resolve())
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme in ("http", "https"):
        return _http_url(ctx, node, path)
    return ctx.error(
        node, path, f"store DSN scheme must be chdb://, http:// or https://, got '{scheme or text}'"
    )


def _directory(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    return text if isinstance(text, _Invalid) else str(Path(text).resolve())


def _ttl_days(ctx: _Ctx, node: Node, path: str) -> int | _Invalid:
    seconds = _duration(allow_zero=True)(ctx, node, path)
    if isinstance(seconds, _Invalid):
        return seconds
    if seconds % 86400:
        return ctx.error(node, path, "must be a whole number of days, e.g. 30d (0 keeps data forever)")
    return int(seconds // 86400)


def _database(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    text = _nonempty(ctx, node, path)
    if isinstance(text, str) and not _PARAM_NAME.fullmatch(text):
        return ctx.error(node, path, f"invalid database name '{text}' (letters, digits and '_')")
    return text


def _spool(ctx: _Ctx, node: Node, path: str) -> SpoolConfig | _Invalid:
    d = SpoolConfig()
    m = _mapping(ctx, node, path, ("dir", "max_bytes"))
    if m is None:
        return INVALID
    return SpoolConfig(
        dir=_get(ctx, m, path, "dir", _directory, d.dir),
        max_bytes=_get(ctx, m, path, "max_bytes", _size, d.max_bytes),
    )


def _headers(ctx: _Ctx, node: Node, path: str) -> tuple[tuple[str, str], ...] | _Invalid:
    if not isinstance(node, MappingNode):
        return ctx.error(
            node, path, f"expected a mapping of header names to values, got {_describe(ctx, node, path)}"
        )
    out: list[tuple[str, str]] = []
    for key_node, value_node in _pairs(ctx, node, path):
        key = key_node.value if isinstance(key_node, ScalarNode) else ""
        kpath = _join(path, key)
        if not _HEADER_NAME.fullmatch(key):
            ctx.error(key_node, kpath, f"invalid header name '{key}'")
            continue
        value = _string(ctx, value_node, kpath)
        if isinstance(value, str):
            out.append((key, value))
    return tuple(out)


def _otlp(ctx: _Ctx, node: Node, path: str) -> OtlpConfig | _Invalid:
    m = _mapping(ctx, node, path, ("endpoint", "protocol", "headers"), ("endpoint",))
    if m is None:
        return INVALID
    protocol = _get(ctx, m, path, "protocol", _choice(("http/protobuf", "grpc")), "http/protobuf")
    endpoint_conv = _http_url if protocol == "http/protobuf" else _nonempty
    endpoint = _need(ctx, m, path, "endpoint", endpoint_conv)
    return OtlpConfig(
        endpoint=endpoint if isinstance(endpoint, str) else "",
        protocol=protocol,
        headers=_get(ctx, m, path, "headers", _headers, ()),
    )


def _telemetry(ctx: _Ctx, node: Node | None, path: str) -> TelemetryConfig:
    d = TelemetryConfig()
    keys = (
        "enabled",
        "data_dir",
        "store",
        "database",
        "ttl",
        "cluster",
        "service_name",
        "batch_window",
        "batch_size",
        "queue_max_records",
        "insert_min_records",
        "insert_max_wait",
        "writer_priority",
        "spool",
        "otlp",
        "write_store",
        "sync_lag_max_skew",
        "dead_letter_max_bytes",
        "unwritten_alert_after",
    )
    m = _mapping(ctx, node, path, keys) if node is not None else {}
    if m is None:
        return d
    t = TelemetryConfig(
        enabled=_get(ctx, m, path, "enabled", _bool, d.enabled),
        data_dir=_get(ctx, m, path, "data_dir", _directory, str(Path(d.data_dir).resolve())),
        store=_get(ctx, m, path, "store", _dsn, d.store),
        database=_get(ctx, m, path, "database", _database, d.database),
        ttl_days=_get(ctx, m, path, "ttl", _ttl_days, d.ttl_days),
        cluster=_get(ctx, m, path, "cluster", _nonempty, d.cluster),
        service_name=_get(ctx, m, path, "service_name", _nonempty, d.service_name),
        batch_window=_get(ctx, m, path, "batch_window", _duration(), d.batch_window),
        batch_size=_get(ctx, m, path, "batch_size", _integer(1), d.batch_size),
        queue_max_records=_get(ctx, m, path, "queue_max_records", _integer(1), d.queue_max_records),
        insert_min_records=_get(ctx, m, path, "insert_min_records", _integer(1), d.insert_min_records),
        insert_max_wait=_get(ctx, m, path, "insert_max_wait", _duration(allow_zero=True), d.insert_max_wait),
        writer_priority=_get(ctx, m, path, "writer_priority", _choice(("idle", "low", "normal")),
                             d.writer_priority),
        spool=_get(ctx, m, path, "spool", _spool, d.spool),
        otlp=_get(ctx, m, path, "otlp", _otlp, None),
        write_store=_get(ctx, m, path, "write_store", _bool, d.write_store),
        sync_lag_max_skew=_get(
            ctx, m, path, "sync_lag_max_skew", _duration(allow_zero=True), d.sync_lag_max_skew
        ),
        dead_letter_max_bytes=_get(ctx, m, path, "dead_letter_max_bytes", _size, d.dead_letter_max_bytes),
        unwritten_alert_after=_get(ctx, m, path, "unwritten_alert_after", _duration(),
                                   d.unwritten_alert_after),
    )
    if t.enabled and not t.write_store and t.otlp is None and "write_store" in m:
        ctx.error(
            m["write_store"], _join(path, "write_store"), "false needs telemetry.otlp, or records go nowhere"
        )
    return t


def _latency(ctx: _Ctx, node: Node, path: str) -> LatencyObjective | _Invalid:
    m = _mapping(ctx, node, path, ("threshold", "target"), ("threshold", "target"))
    if m is None:
        return INVALID
    threshold = _need(ctx, m, path, "threshold", _duration())
    target = _need(ctx, m, path, "target", _percent)
    if isinstance(threshold, _Invalid) or isinstance(target, _Invalid):
        return INVALID
    return LatencyObjective(threshold=threshold, target=target)


def _sla(ctx: _Ctx, node: Node, path: str, upstreams: list[str], routes: list[str]) -> Sla | _Invalid:
    keys = ("name", "upstream", "route", "availability", "latency", "sync_lag_p95", "window")
    m = _mapping(ctx, node, path, keys, ("name",))
    if m is None:
        return INVALID
    name = _need(ctx, m, path, "name", _name)
    upstream = _get(ctx, m, path, "upstream", lambda c, n, p: _reference(c, n, p, "upstream", upstreams))
    route = _get(ctx, m, path, "route", lambda c, n, p: _reference(c, n, p, "route", routes))
    has_upstream, has_route = "upstream" in m, "route" in m
    if has_upstream == has_route:
        which = "both upstream and route" if has_upstream else "neither upstream nor route"
        ctx.error(node, path, f"names {which}; give exactly one")
    d = Sla(name="")
    return Sla(
        name=name if isinstance(name, str) else "",
        upstream=upstream,
        route=route,
        availability=_get(ctx, m, path, "availability", _percent, d.availability),
        latency=_get(ctx, m, path, "latency", _latency, None),
        sync_lag_p95=_get(ctx, m, path, "sync_lag_p95", _duration(), None),
        window=_get(ctx, m, path, "window", _duration(), d.window),
    )


_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekday(ctx: _Ctx, node: Node, path: str) -> int | _Invalid:
    text = _string(ctx, node, path)
    if isinstance(text, _Invalid):
        return text
    short = text.lower()[:3]
    if short in _WEEKDAYS and text.lower() in (short, _full_weekday(short)):
        return _WEEKDAYS.index(short)
    return ctx.error(node, path, f"must be a weekday ({', '.join(_WEEKDAYS)}), got '{text}'")


def _full_weekday(short: str) -> str:
    return {
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
        "sun": "sunday",
    }[short]


def _clock(ctx: _Ctx, node: Node, path: str) -> str | _Invalid:
    from collectors.maintenance import parse_hhmm  # the scheduler's parser decides

    text = _string(ctx, node, path)
    if isinstance(text, str):
        try:
            parse_hhmm(text)
        except ValueError as exc:
            return ctx.error(node, path, str(exc))
    return text


def _recurrence(ctx: _Ctx, node: Node, path: str) -> Recurrence | _Invalid:
    m = _mapping(ctx, node, path, ("every", "weekday", "at", "duration"), ("every", "duration"))
    if m is None:
        return INVALID
    every = _need(ctx, m, path, "every", _choice(("daily", "weekly")))
    weekday = _get(ctx, m, path, "weekday", _weekday, None)
    at = _get(ctx, m, path, "at", _clock, "00:00")
    duration = _need(ctx, m, path, "duration", _duration())
    if every == "weekly" and "weekday" not in m:
        ctx.error(node, _join(path, "weekday"), "missing required key (every: weekly needs a weekday)")
    if every == "daily" and "weekday" in m:
        ctx.error(m["weekday"], _join(path, "weekday"), "only allowed with every: weekly")
    period = 86400.0 if every == "daily" else 7 * 86400.0
    if isinstance(duration, float) and isinstance(every, str) and duration > period:
        period_text = _span(period)
        ctx.error(
            m["duration"],
            _join(path, "duration"),
            f"{_span(duration)} is longer than the period ({period_text})",
        )
    if isinstance(every, _Invalid) or isinstance(duration, _Invalid):
        return INVALID
    return Recurrence(every=every, weekday=weekday, at=at, duration=duration)


def _upstream_set(upstreams: list[str]) -> Conv:
    def conv(ctx: _Ctx, node: Node, path: str) -> tuple[str, ...] | str | _Invalid:
        if isinstance(node, ScalarNode):
            text = _string(ctx, node, path)
            if text == "*" or isinstance(text, _Invalid):
                return text
            return ctx.error(node, path, f"expected a list of upstream names or \"*\", got '{text}'")
        items = _items(ctx, node, path, lambda c, n, p: _reference(c, n, p, "upstream", upstreams))
        return INVALID if items is None else tuple(items)

    return conv


def _maintenance(ctx: _Ctx, node: Node, path: str, upstreams: list[str]) -> MaintenanceWindow | _Invalid:
    m = _mapping(ctx, node, path, ("name", "upstreams", "start", "end", "recurrence"), ("name",))
    if m is None:
        return INVALID
    name = _need(ctx, m, path, "name", _name)
    start = _get(ctx, m, path, "start", _timestamp, None)
    end = _get(ctx, m, path, "end", _timestamp, None)
    recurrence = _get(ctx, m, path, "recurrence", _recurrence, None)
    one_off = "start" in m or "end" in m
    if one_off and "recurrence" in m:
        ctx.error(node, path, "give either start/end (one-off) or recurrence, not both")
    elif not one_off and "recurrence" not in m:
        ctx.error(node, path, "needs start and end (one-off) or a recurrence")
    elif one_off:
        for key in ("start", "end"):
            if key not in m:
                ctx.error(
                    node, _join(path, key), "missing required key (a one-off window needs start and end)"
                )
        if start is not None and end is not None and end <= start:
            ctx.error(m["end"], _join(path, "end"), f"{_iso(end)} is not after start ({_iso(start)})")
    return MaintenanceWindow(
        name=name if isinstance(name, str) else "",
        upstreams=_get(ctx, m, path, "upstreams", _upstream_set(upstreams), "*"),
        start=start,
        end=end,
        recurrence=recurrence,
    )


def _webhook(ctx: _Ctx, node: Node, path: str) -> Webhook | _Invalid:
    d = Webhook(name="", url="")
    m = _mapping(ctx, node, path, ("name", "url", "format", "timeout", "max_retries"), ("name", "url"))
    if m is None:
        return INVALID
    name = _need(ctx, m, path, "name", _name)
    url = _need(ctx, m, path, "url", _http_url)
    return Webhook(
        name=name if isinstance(name, str) else "",
        url=url if isinstance(url, str) else "",
        format=_get(ctx, m, path, "format", _choice(("json", "slack")), d.format),
        timeout=_get(ctx, m, path, "timeout", _duration(), d.timeout),
        max_retries=_get(ctx, m, path, "max_retries", _integer(0), d.max_retries),
    )


def _alerts(ctx: _Ctx, node: Node | None, path: str) -> AlertsConfig:
    d = AlertsConfig()
    m = _mapping(ctx, node, path, ("evaluate_every", "webhooks")) if node is not None else {}
    if m is None:
        return d
    webhooks = _values(
        _named_list(ctx, m.get("webhooks"), _join(path, "webhooks"), _webhook, "webhook name", "name")
    )
    return AlertsConfig(
        evaluate_every=_get(ctx, m, path, "evaluate_every", _duration(), d.evaluate_every),
        webhooks=webhooks,
    )


def _named_list(
    ctx: _Ctx, node: Node | None, path: str, conv: Conv, what: str, attr: str, *, required: bool = False
) -> list[tuple[int, Node, Any]]:
    """(index, node, object) for the valid items of a list section whose ``attr`` must be unique."""
    if node is None or _is_null(ctx, node, path):
        if required:
            ctx.error(node, path, "needs at least one entry")
        return []
    indexed = _indexed(ctx, node, path, conv)
    if indexed is None:
        return []
    if required and not node.value:
        ctx.error(node, path, "needs at least one entry")
    unique = _Unique(ctx, what)
    for i, item in enumerate(node.value):
        key = _item_key(ctx, item, f"{path}[{i}]", attr)
        if key:
            unique.check(item, f"{path}[{i}].{attr}", key)
    return indexed


def _value_node(node: Node, key: str) -> Node:
    """The value node of ``key`` in a mapping node (the node itself if absent), for precise lines."""
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return v
    return node


def _item_key(ctx: _Ctx, node: Node, path: str, attr: str) -> str | None:
    if not isinstance(node, MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == attr and isinstance(v, ScalarNode):
            s = ctx.scalar(v, _join(path, attr))
            return s.text if isinstance(s, _Scalar) else None
    return None


def _route_conflicts(ctx: _Ctx, routes: list[tuple[int, Node, Route]]) -> None:
    """Two routes with the same template shape and method: the later one could never match."""
    taken: dict[tuple[str, str], tuple[str, int]] = {}
    for i, node, route in routes:
        if not route.path or not route.name:
            continue
        shape = re.sub(r"\{[^}]*\}", "{}", route.path)
        for method in route.methods:
            first = taken.setdefault((shape, method), (route.name, node.start_mark.line + 1))
            if first[0] != route.name:
                where = f"route '{first[0]}' (line {first[1]})"
                ctx.error(
                    _value_node(node, "path"),
                    f"routes[{i}].path",
                    f"{method} {route.path} is already served by {where}",
                )


# ------------------------------------------------------------------------------------------------ entry


def _values(indexed: list[tuple[int, Node, Any]]) -> tuple[Any, ...]:
    return tuple(value for _, _, value in indexed)


def _build(ctx: _Ctx, root: Node) -> Config | None:
    required = ("listeners", "upstreams", "routes", "partners")
    top = _mapping(ctx, root, "", _TOP_KEYS, required, extensions=True)
    if top is None:
        return None
    partner, admin = _listeners(ctx, top.get("listeners"), "listeners")
    limits = _limits(ctx, top["limits"], "limits") if "limits" in top else Limits()
    upstreams = _values(
        _named_list(
            ctx,
            top.get("upstreams"),
            "upstreams",
            _upstream,
            "upstream name",
            "name",
            required="upstreams" in top,
        )
    )
    upstream_names = list(dict.fromkeys(u.name for u in upstreams if u.name))
    routes = _named_list(
        ctx,
        top.get("routes"),
        "routes",
        lambda c, n, p: _route(c, n, p, upstream_names),
        "route name",
        "name",
        required="routes" in top,
    )
    _route_conflicts(ctx, routes)
    route_names = list(dict.fromkeys(r.name for _, _, r in routes if r.name))
    digests = _Unique(ctx, "API key digest")
    partners = _named_list(
        ctx,
        top.get("partners"),
        "partners",
        lambda c, n, p: _partner(c, n, p, digests),
        "partner id",
        "id",
        required="partners" in top,
    )
    slas = _named_list(
        ctx,
        top.get("slas"),
        "slas",
        lambda c, n, p: _sla(c, n, p, upstream_names, route_names),
        "SLA name",
        "name",
    )
    windows = _named_list(
        ctx,
        top.get("maintenance"),
        "maintenance",
        lambda c, n, p: _maintenance(c, n, p, upstream_names),
        "maintenance window name",
        "name",
    )
    return Config(
        source=ctx.source,
        partner_listener=partner,
        admin_listener=admin,
        upstreams=upstreams,
        routes=_values(routes),
        partners=_values(partners),
        limits=limits,
        telemetry=_telemetry(ctx, top.get("telemetry"), "telemetry"),
        slas=_values(slas),
        maintenance=_values(windows),
        alerts=_alerts(ctx, top.get("alerts"), "alerts"),
    )


def _compose(ctx: _Ctx, text: str) -> Node | None:
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        ctx.add(where, f"YAML syntax error: {what}")
        return None
    except yaml.YAMLError as exc:
        ctx.add(1, f"YAML error: {exc}")
        return None
    if root is None:
        ctx.add(1, "the file is empty")
    return root


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate a YAML config file; raises ``ConfigError`` listing every problem found.

    ``env`` replaces ``os.environ`` for ``${VAR}`` substitution (tests).
    """
    source = str(path)
    ctx = _Ctx(source, os.environ if env is None else env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{source}:1: cannot read the file: {reason}"]) from None
    root = _compose(ctx, text)
    config = _build(ctx, root) if root is not None else None
    problems = ctx.problems()
    if problems or config is None:
        raise ConfigError(problems)
    return config


# -------------------------------------------------------------------------------------------------- CLI


def load_config_or_report(path: str | Path) -> Config | None:
    """For command-line entry points: the config, or None after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def summary(config: Config) -> str:
    """One line describing a valid config, as printed by ``loomgate check-config``."""
    parts = [
        _plural(len(config.upstreams), "upstream"),
        _plural(len(config.routes), "route"),
        _plural(len(config.partners), "partner"),
        _plural(len(config.slas), "SLA"),
        _plural(len(config.maintenance), "maintenance window"),
        _plural(len(config.alerts.webhooks), "webhook"),
    ]
    return f"{config.source}: OK — {', '.join(parts)}"


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="loomgate check-config",
        description="Validate a Loomgate config file. Exit 0 with a summary, or 2 listing every problem "
        "as FILE:LINE: key.path: what is wrong.",
    )
    parser.add_argument("file", help="YAML config file, e.g. config/gateway.yaml")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0)
    config = load_config_or_report(args.file)
    if config is None:
        return 2
    print(summary(config))
    return 0
