"""The query library: named, parameterised SQL files under ``queries/``, run with typed parameters.

Each ``queries/NAME.sql`` starts with a header of ``--`` comment lines (the header ends at the first line
that is not a comment)::

    -- name: integration_health
    -- answers: Per artisan, partner and route over a window: calls, error rate by source, ...
    --   (a line without a key continues the previous entry)
    -- formula: error rate = errors / calls
    -- param: start DateTime64(3) = -30d  -- start of the window (inclusive)
    -- param: end DateTime64(3) = now     -- end of the window (exclusive)
    -- param: artisan String =            -- empty = every artisan
    -- param: min_calls UInt64            -- no default: required

Keys: ``name`` (must equal the file name), ``answers`` (the description), ``formula`` and ``note``
(repeatable, shown by ``--list -v``), ``param`` (repeatable).  A parameter's type is a ClickHouse type and
must equal the type of its ``{name:Type}`` placeholder in the SQL; every placeholder must be declared.
Defaults are written exactly like user input and converted the same way when the query runs, so relative
times such as ``-30d`` are evaluated at run time.

Parameter text → value, by type:
  * ``DateTime``/``DateTime64(p)``: ISO-8601 (``2024-05-01``, ``2024-05-01T12:00:00Z``, with offset;
    no offset = UTC), epoch seconds, ``now``, or relative ``-7d`` / ``now-12h`` / ``+30m``
    (units s, m, h, d, w).  ``Date``: ISO date, ``today`` or relative days.
  * ``(U)IntN`` (range-checked), ``FloatN``, ``Decimal(…)``, ``Bool`` (true/false/1/0/yes/no).
  * ``String``, ``LowCardinality(String)``, ``UUID``; ``Array(T)``: comma-separated, empty = ``[]``.
  * ``Nullable(T)``: empty text or ``null`` = NULL.

Values are always bound by ClickHouse (``parameters=``), never formatted into the SQL text.

Command line: ``loomgate query --list [-v]`` and ``loomgate query NAME --param k=v ... --format
table|csv|json [--config FILE | --dsn DSN --database DB]``.  With ``--config`` and an embedded store
(``chdb://``), a running gateway owns the store (chDB opens a data directory in one process only), so the
command asks that gateway's admin API (``GET /api/queries/NAME``, admin token from the config) and opens
the store directly only when no gateway answers on the admin listener.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import io
import json
import math
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors import cli_store, resources
from collectors.store import AsyncStore, QueryResult, Store, StoreError

QUERIES_DIR = resources.queries_dir()  # package data: the same in a checkout and an installed wheel

_HEADER_KEYS = ("name", "answers", "formula", "note", "param")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
_PARAM_LINE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<rest>.+)$")
_RELATIVE = re.compile(r"^(?:now)?\s*(?P<sign>[+-])\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_INT_RANGE = re.compile(r"^(U?)Int(8|16|32|64|128|256)$")


class QueryParamError(ValueError):
    """A parameter is unknown, missing or has a value its type does not accept."""

    def __init__(self, query: str, param: str, problem: str) -> None:
        super().__init__(f"query {query!r}: parameter {param!r}: {problem}")
        self.query = query
        self.param = param
        self.problem = problem


class QueryDefinitionError(ValueError):
    """A ``queries/*.sql`` file has a broken header (reported as FILE:LINE: problem)."""


class UnknownQueryError(LookupError):
    """No query file of that name."""


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: dict[str, str]  # name -> ClickHouse type, in declaration order
    defaults: dict[str, str]  # name -> default text (converted like user input); absent = required
    sql: str
    path: Path
    formulas: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    param_help: dict[str, str] | None = None


# ---------------------------------------------------------------------------------------------- parsing


def parse_query_file(path: Path) -> NamedQuery:
    """Parse one query file; header mistakes raise ``QueryDefinitionError`` naming file and line."""
    text = path.read_text(encoding="utf-8")
    entries = _header_entries(path, text)
    values: dict[str, list[str]] = {k: [] for k in _HEADER_KEYS}
    for _, key, value in entries:
        values[key].append(value)
    name = values["name"][0] if values["name"] else path.stem
    if name != path.stem:
        raise QueryDefinitionError(f"{path}:1: name {name!r} does not match the file name {path.stem!r}")
    if not values["answers"]:
        raise QueryDefinitionError(f"{path}:1: header has no 'answers:' line (what the query answers)")
    params, defaults, helps = _parse_params(path, [(ln, v) for ln, k, v in entries if k == "param"])
    _check_placeholders(path, text, params)
    return NamedQuery(
        name=name,
        description=" ".join(values["answers"]),
        params=params,
        defaults=defaults,
        sql=text,
        path=path,
        formulas=tuple(values["formula"]),
        notes=tuple(values["note"]),
        param_help=helps,
    )


def _header_entries(path: Path, text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) per header entry; continuation lines are joined to their entry."""
    entries: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        body = line[2:].strip()
        key, sep, value = body.partition(":")
        key = key.strip()
        if sep and re.fullmatch(r"[a-z]+", key):
            if key not in _HEADER_KEYS:
                raise QueryDefinitionError(f"{path}:{lineno}: unknown header key {key!r} "
                                           f"(expected one of {', '.join(_HEADER_KEYS)})")
            entries.append((lineno, key, value.strip()))
        elif entries and body:
            ln, k, v = entries[-1]
            if k == "param":
                raise QueryDefinitionError(f"{path}:{lineno}: a param line cannot be continued")
            entries[-1] = (ln, k, f"{v} {body}".strip())
    return entries


def _parse_params(path: Path, lines: list[tuple[int, str]]
                  ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    params: dict[str, str] = {}
    defaults: dict[str, str] = {}
    helps: dict[str, str] = {}
    for lineno, value in lines:
        spec, _, help_ = value.partition(" -- ")
        m = _PARAM_LINE.match(spec.strip())
        if not m:
            raise QueryDefinitionError(f"{path}:{lineno}: param line must be 'NAME Type [= default]'")
        name = m["name"]
        type_, eq, default = m["rest"].partition("=")
        type_ = type_.strip()
        if name in params:
            raise QueryDefinitionError(f"{path}:{lineno}: param {name!r} declared twice")
        try:
            converter_for(type_)
        except ValueError as exc:
            raise QueryDefinitionError(f"{path}:{lineno}: param {name!r}: {exc}") from None
        params[name] = type_
        helps[name] = help_.strip()
        if eq:
            defaults[name] = default.strip()
    return params, defaults, helps


def _check_placeholders(path: Path, text: str, params: Mapping[str, str]) -> None:
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--"))
    used: dict[str, str] = {}
    for m in _PLACEHOLDER.finditer(body):
        name, type_ = m[1], m[2].strip()
        if name not in params:
            raise QueryDefinitionError(f"{path}: placeholder {{{name}:{type_}}} has no 'param:' header line")
        if _norm_type(type_) != _norm_type(params[name]):
            raise QueryDefinitionError(f"{path}: placeholder {{{name}:{type_}}} does not match the declared "
                                       f"type {params[name]!r}")
        used[name] = type_
    unused = [p for p in params if p not in used]
    if unused:
        raise QueryDefinitionError(f"{path}: declared params not used in the SQL: {', '.join(unused)}")


def _norm_type(type_: str) -> str:
    return re.sub(r"\s+", "", type_)


# ------------------------------------------------------------------------------------------ conversions


Converter = Callable[[str, dt.datetime], Any]


def converter_for(type_: str) -> Converter:
    """The text → value function for a ClickHouse type; ``ValueError`` for types we cannot bind."""
    t = type_.strip()
    inner = _unwrap(t, "Nullable")
    if inner is not None:
        conv = converter_for(inner)
        return lambda s, now: None if s.strip() in ("", "null", "NULL") else conv(s, now)
    inner = _unwrap(t, "LowCardinality")
    if inner is not None:
        return converter_for(inner)
    inner = _unwrap(t, "Array")
    if inner is not None:
        conv = converter_for(inner)
        return lambda s, now: [conv(part.strip(), now) for part in s.split(",")] if s.strip() else []
    m = _INT_RANGE.match(t)
    if m:
        return _int_converter(unsigned=bool(m[1]), bits=int(m[2]))
    if t in ("Float32", "Float64"):
        return _to_float
    if t.startswith("Decimal"):
        return _to_decimal
    if t in ("String", "UUID") or t.startswith("FixedString("):
        return lambda s, now: s
    if t == "Bool":
        return _to_bool
    if t in ("Date", "Date32"):
        return _to_date
    if t == "DateTime" or t.startswith("DateTime(") or t.startswith("DateTime64("):
        return _to_datetime
    raise ValueError(f"unsupported parameter type {type_!r}")


def _unwrap(type_: str, wrapper: str) -> str | None:
    if type_.startswith(wrapper + "(") and type_.endswith(")"):
        return type_[len(wrapper) + 1 : -1].strip()
    return None


def _int_converter(*, unsigned: bool, bits: int) -> Converter:
    low = 0 if unsigned else -(1 << (bits - 1))
    high = (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1

    def convert(s: str, now: dt.datetime) -> int:
        try:
            value = int(s.strip())
        except ValueError:
            raise ValueError(f"{s!r} is not an integer") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range [{low}, {high}]")
        return value

    return convert


def _to_float(s: str, now: dt.datetime) -> float:
    try:
        value = float(s.strip())
    except ValueError:
        raise ValueError(f"{s!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{s!r} is not a finite number")
    return value


def _to_decimal(s: str, now: dt.datetime) -> decimal.Decimal:
    try:
        return decimal.Decimal(s.strip())
    except decimal.InvalidOperation:
        raise ValueError(f"{s!r} is not a decimal number") from None


def _to_bool(s: str, now: dt.datetime) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{s!r} is not a boolean (true/false/1/0/yes/no)")


# The store's DateTime64 range; a value outside it would be clamped or refused by the store.
_EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2299, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def _in_time_range(value: dt.datetime, text: str) -> dt.datetime:
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError(f"{text!r} is out of range (1900-01-01 to 2299-12-31)")
    return value


def _to_datetime(s: str, now: dt.datetime) -> dt.datetime:
    v = s.strip()
    if v.lower() == "now":
        return now
    try:
        m = _RELATIVE.match(v.lower())
        if m:
            seconds = float(m["num"]) * _UNIT_SECONDS[m["unit"]]
            return _in_time_range(now + dt.timedelta(seconds=seconds if m["sign"] == "+" else -seconds), s)
        if re.fullmatch(r"\d+(\.\d+)?", v):
            return _in_time_range(dt.datetime.fromtimestamp(float(v), tz=dt.UTC), s)
    except (OverflowError, OSError, ValueError):  # beyond what datetime itself can hold
        raise ValueError(f"{s!r} is out of range (1900-01-01 to 2299-12-31)") from None
    try:
        parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{s!r} is not a time (ISO-8601, epoch seconds, 'now', or relative like "
                         "'-7d', 'now-12h', '+30m')") from None
    try:
        parsed = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{s!r} is out of range (1900-01-01 to 2299-12-31)") from None
    return _in_time_range(parsed, s)


def _to_date(s: str, now: dt.datetime) -> dt.date:
    v = s.strip().lower()
    if v in ("today", "now"):
        return now.date()
    m = _RELATIVE.match(v.replace("today", "now"))
    if m and m["unit"] in ("d", "w"):
        days = float(m["num"]) * (7 if m["unit"] == "w" else 1)
        try:
            value = (now + dt.timedelta(days=days if m["sign"] == "+" else -days)).date()
        except OverflowError:
            raise ValueError(f"{s!r} is out of range (1900-01-01 to 2299-12-31)") from None
    else:
        try:
            value = dt.date.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{s!r} is not a date (YYYY-MM-DD, 'today', or relative like '-30d')") from None
    if not _EARLIEST.date() <= value <= _LATEST.date():
        raise ValueError(f"{s!r} is out of range (1900-01-01 to 2299-12-31)")
    return value


def bind_params(query: NamedQuery, raw_params: Mapping[str, str], now: dt.datetime | None = None
                ) -> dict[str, Any]:
    """Typed values for every declared parameter: user text, else the default; raises QueryParamError."""
    now = now or dt.datetime.now(dt.UTC)
    unknown = [k for k in raw_params if k not in query.params]
    if unknown:
        known = ", ".join(query.params) or "none"
        raise QueryParamError(query.name, unknown[0], f"unknown parameter (this query takes: {known})")
    values: dict[str, Any] = {}
    for name, type_ in query.params.items():
        if name in raw_params:
            text = raw_params[name]
        elif name in query.defaults:
            text = query.defaults[name]
        else:
            raise QueryParamError(query.name, name, f"missing required parameter of type {type_}")
        if not isinstance(text, str):
            raise QueryParamError(query.name, name, f"expected text, got {type(text).__name__}")
        try:
            values[name] = converter_for(type_)(text, now)
        except ValueError as exc:
            raise QueryParamError(query.name, name, f"bad {type_} value: {exc}") from None
    return values


# --------------------------------------------------------------------------------------------- loading


def list_queries(queries_dir: Path | None = None) -> list[NamedQuery]:
    """Every query in the library, sorted by name."""
    directory = queries_dir or QUERIES_DIR
    queries = [parse_query_file(p) for p in sorted(directory.glob("*.sql"))]
    if not queries:
        # An installation without its SQL would otherwise list nothing and look healthy.
        raise QueryDefinitionError(f"{directory}: no query files (*.sql): the query library is missing")
    return queries


def load_query(name: str, queries_dir: Path | None = None) -> NamedQuery:
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise UnknownQueryError(f"no query named {name!r}")
    path = (queries_dir or QUERIES_DIR) / f"{name}.sql"
    if not path.is_file():
        raise UnknownQueryError(f"no query named {name!r} (see `loomgate query --list`)")
    return parse_query_file(path)


async def run_query(store: AsyncStore, name: str, raw_params: Mapping[str, str], *,
                    queries_dir: Path | None = None, now: dt.datetime | None = None) -> QueryResult:
    """Validate and convert the parameters, then run the named query through the async store."""
    query = load_query(name, queries_dir)
    return await store.query(query.sql, parameters=bind_params(query, raw_params, now))


def run_query_sync(store: Store, name: str, raw_params: Mapping[str, str], *,
                   queries_dir: Path | None = None, now: dt.datetime | None = None) -> QueryResult:
    """Blocking variant of ``run_query`` (CLI, benchmarks, tests)."""
    query = load_query(name, queries_dir)
    return store.query(query.sql, parameters=bind_params(query, raw_params, now))


# ------------------------------------------------------------------------------------------- rendering


def jsonable(value: Any) -> Any:
    """A JSON-safe form of a result value (NaN/inf → null, times → ISO-8601, decimals → float)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return (value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def result_json(name: str, result: QueryResult) -> dict[str, Any]:
    """The admin API's body for a query result (also read back by the CLI)."""
    return {"query": name, "columns": list(result.columns),
            "rows": [[jsonable(v) for v in row] for row in result.rows]}


def render(result: QueryResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{c: jsonable(v) for c, v in zip(result.columns, row, strict=True)}
                           for row in result.rows], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[_cell(v) for v in row] for row in result.rows])
        return buf.getvalue()
    return _table(result)


def _cell(value: Any) -> str:
    value = jsonable(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _table(result: QueryResult) -> str:
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loomgate query", description="Run a named query from queries/.")
    p.add_argument("name", nargs="?", help="query name (see --list)")
    p.add_argument("--list", action="store_true", help="list the queries with their descriptions")
    p.add_argument("-v", "--verbose", action="store_true", help="with --list: formulas and parameters too")
    p.add_argument("-p", "--param", action="append", default=[], metavar="K=V", help="a query parameter")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    cli_store.add_store_arguments(p)
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.list:
            print(_list_text(list_queries(), verbose=args.verbose), end="")
            return 0
        if not args.name:
            print("loomgate query: give a query NAME or --list", file=sys.stderr)
            return 2
        raw = _parse_kv(args.param)
        query = load_query(args.name)
        bind_params(query, raw)  # fail fast on bad parameters before touching any store
        result, note = _run_for_cli(args, query, raw)
    except (QueryParamError, UnknownQueryError, QueryDefinitionError, _CliError,
            cli_store.StoreTargetError) as exc:
        print(f"loomgate query: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"loomgate query: store: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render(result, args.format))
    if note:  # an empty window says where the data is
        print(note, file=sys.stdout if args.format == "table" else sys.stderr)
    return 0


class _CliError(Exception):
    pass


def _parse_kv(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _CliError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _list_text(queries: list[NamedQuery], *, verbose: bool) -> str:
    width = max((len(q.name) for q in queries), default=0)
    lines: list[str] = []
    for q in queries:
        lines.append(f"{q.name.ljust(width)}  {q.description}")
        if verbose:
            lines += [f"{' ' * width}    formula: {f}" for f in q.formulas]
            for pname, ptype in q.params.items():
                default = f" = {q.defaults[pname]!r}" if pname in q.defaults else " (required)"
                help_ = (q.param_help or {}).get(pname, "")
                lines.append(f"{' ' * width}    --param {pname}  {ptype}{default}  {help_}".rstrip())
    return "\n".join(lines) + ("\n" if lines else "")


def _run_for_cli(args: argparse.Namespace, query: NamedQuery, raw: Mapping[str, str]
                 ) -> tuple[QueryResult, str | None]:
    from collectors.query_notes import empty_window_note_sync

    name = query.name
    target = cli_store.resolve(args.config, args.dsn, args.database)
    if target.gateway_owned:
        body = cli_store.admin_get(target, f"/api/queries/{urllib.parse.quote(name)}", raw)
        if body is not None:
            return QueryResult(tuple(body["columns"]), [tuple(r) for r in body["rows"]]), body.get("note")
    store = cli_store.open_store(target)
    try:
        result = run_query_sync(store, name, raw)
        return result, empty_window_note_sync(store, query, raw, result)
    except QueryParamError:
        raise
    except Exception as exc:
        raise StoreError(str(exc)) from exc
    finally:
        store.close()
