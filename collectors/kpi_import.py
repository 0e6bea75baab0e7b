"""KPI data import: CSV, JSON Lines and Parquet files (``loomgate import``) and JSON Lines request bodies
(admin ``POST /api/kpi/{table}``), validated completely before anything is written.

How a file goes in:

1. **Stage.**  ClickHouse parses the file (``CSVWithNames``, ``JSONEachRow`` or ``Parquet``) into a
   temporary ``Memory`` table whose columns are the KPI table's columns as ``Nullable(String)``; a column
   the file does not have stays NULL, a column the table does not have is an error (naming it).
   Webhook bodies are parsed line by line with ``json`` instead (exact line numbers, no raw-insert needed
   through the gateway's store proxy) and staged the same way.
2. **Validate.**  One SQL pass over the staged rows computes, per row and column, why the text does not
   convert to the KPI column's type (empty id, not a time, negative amount, unknown enum value, …).  The
   first bad row is reported as ``FILE: line L (row R): column C: reason`` with the number of bad rows,
   and nothing is inserted.
3. **Publish.**  ``INSERT INTO kpi_… SELECT <conversions> FROM stage``: the same expressions as the checks.

Re-imports never double-count: the KPI tables are ``ReplacingMergeTree(ingested_at)`` ordered by each
table's natural key (see queries/schema/020-026), and every KPI query reads them with ``FINAL``, so a row
imported twice (or corrected later) counts once, with its latest values.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.import_columns import ColumnMapError, file_columns, plan_columns
from collectors.kpi import KPI_TABLES, Progress
from collectors.store import AsyncStore, Store

CHUNK = 4 << 20  # bytes read per progress step
FORMATS = {"csv": "CSVWithNames", "jsonl": "JSONEachRow", "parquet": "Parquet"}
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
              ".pq": "parquet"}
# Stage reading must keep file order so that rowNumberInAllBlocks() is the row number in the file.
_ORDERED = {"max_threads": 1}
_STAGE_SETTINGS = {
    "input_format_skip_unknown_fields": 0,
    "input_format_json_read_numbers_as_strings": 1,
    "input_format_json_read_bools_as_strings": 1,
    "input_format_json_read_objects_as_strings": 0,
    "input_format_csv_empty_as_default": 1,
    "max_insert_threads": 1,
}
_TIME_SHAPE = r"^(\d{4}-\d{2}-\d{2}([T ].*)?|\d{9,10}(\.\d+)?)$"


# --------------------------------------------------------------------------------------------- columns

@dataclass(frozen=True)
class Column:
    """A KPI column: how its text is checked (SQL returning '' or a reason) and converted (SQL)."""

    name: str
    kind: str  # id | text | label | date | time | opt_time | money | count | score | bool | opt_bool | enum
    values: tuple[str, ...] = ()  # enum members
    default: str = ""  # enum: the value of an empty or absent cell ('' = the cell is required)

    def reason_sql(self) -> str:
        c = f"`{self.name}`"
        blank = f"(isNull({c}) OR trimBoth({c}) = '')"
        checks: list[tuple[str, str]]
        if self.kind == "id":
            checks = [(blank, "is empty"), (f"length({c}) > 256", "is longer than 256 characters")]
        elif self.kind == "text":
            checks = []
        elif self.kind == "label":
            checks = [(blank, "is empty"),
                      (f"NOT match(trimBoth({c}), '^[A-Za-z0-9_.-]{{1,64}}$')",
                       "is not a label (1-64 letters, digits, underscores, dots, hyphens)")]
        elif self.kind == "date":
            checks = [(blank, "is empty"),
                      (f"isNull(toDateOrNull(trimBoth({c})))", "is not a date (YYYY-MM-DD)")]
        elif self.kind in ("time", "opt_time"):
            bad = (f"(NOT match(trimBoth({c}), '{_TIME_SHAPE}') "
                   f"OR isNull(parseDateTime64BestEffortOrNull(trimBoth({c}), 3, 'UTC')))")
            checks = [(blank, "is empty")] if self.kind == "time" else []
            checks.append((f"NOT {blank} AND {bad}", "is not a time (ISO-8601 or epoch seconds)"))
        elif self.kind == "money":
            dec = f"toDecimal64OrNull(trimBoth({c}), 2)"
            # Amounts are stored in hundredths; parsing at scale 2 would silently cut '12.345' to 12.34.
            exact = f"toDecimal128OrNull(trimBoth({c}), 12)"
            checks = [(blank, "is empty"), (f"isNull({dec})", "is not a decimal number"),
                      (f"{dec} != {exact}", "has more than 2 decimal places"),
                      (f"{dec} < 0", "is negative")]
        elif self.kind == "count":
            checks = [(blank, "is empty"), (f"isNull(toUInt32OrNull(trimBoth({c})))",
                                            "is not a non-negative integer")]
        elif self.kind == "score":
            checks = [(f"NOT {blank} AND NOT (toUInt8OrNull(trimBoth({c})) BETWEEN 0 AND 10)",
                       "is not an integer score from 0 to 10")]
        elif self.kind == "bool":
            checks = [(f"lower(trimBoth(ifNull({c}, ''))) NOT IN ('0', '1', 'true', 'false')",
                       "is not a boolean (true/false/1/0)")]
        elif self.kind == "opt_bool":
            checks = [(f"lower(trimBoth(ifNull({c}, ''))) NOT IN ('', '0', '1', 'true', 'false')",
                       "is not a boolean (true/false/1/0, empty = false)")]
        elif self.kind == "enum":
            members = ", ".join(f"'{v}'" for v in self.values)
            checks = [] if self.default else [(blank, "is empty")]
            checks.append((f"NOT {blank} AND trimBoth({c}) NOT IN ({members})",
                           "is not one of " + ", ".join(self.values)))
        else:
            raise ValueError(self.kind)
        if not checks:
            return "''"
        parts = ", ".join(f"{cond}, '{reason}'" for cond, reason in checks)
        return f"multiIf({parts}, '')"

    def value_sql(self) -> str:
        c = f"trimBoth(`{self.name}`)"
        return {
            "id": f"assumeNotNull(`{self.name}`)",
            "text": f"ifNull(`{self.name}`, '')",
            "date": f"toDate({c})",
            "time": f"parseDateTime64BestEffort({c}, 3, 'UTC')",
            "opt_time": f"if({c} = '' OR isNull({c}), NULL, parseDateTime64BestEffortOrNull({c}, 3, 'UTC'))",
            "money": f"toDecimal64({c}, 2)",
            "count": f"toUInt32({c})",
            "score": f"if({c} = '' OR isNull({c}), NULL, toUInt8OrNull({c}))",
            "label": f"assumeNotNull({c})",
            "bool": f"lower({c}) IN ('1', 'true')",
            "opt_bool": f"lower(ifNull({c}, '')) IN ('1', 'true')",
            "enum": (f"if(isNull({c}) OR {c} = '', '{self.default}', assumeNotNull({c}))" if self.default
                     else f"assumeNotNull({c})"),
        }[self.kind]


@dataclass(frozen=True)
class TableSpec:
    name: str  # CLI / API name
    table: str
    columns: tuple[Column, ...]
    # Cross-column rules: (SQL condition that is true for a bad row, column to blame, reason).
    rules: tuple[tuple[str, str, str], ...] = ()

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _cols(*spec: str | tuple[str, str] | Column) -> tuple[Column, ...]:
    out = []
    for item in spec:
        if isinstance(item, Column):
            out.append(item)
        elif isinstance(item, str):
            out.append(Column(item, "id"))
        else:
            out.append(Column(item[0], item[1]))
    return tuple(out)


SPECS: dict[str, TableSpec] = {
    "artisans": TableSpec("artisans", KPI_TABLES["artisans"], _cols(
        "artisan_id", ("joined", "date"), ("category", "text"), ("country", "text"))),
    "orders": TableSpec("orders", KPI_TABLES["orders"], _cols(
        "order_id", "buyer_id", "artisan_id", ("amount", "money"), "currency", ("ts", "time"), "channel",
        ("promo_code", "text"))),
    "cart_events": TableSpec("cart_events", KPI_TABLES["cart_events"], _cols(
        "cart_id", "buyer_id", "artisan_id",
        Column("event", "enum", ("created", "checkout_started", "purchased", "abandoned")),
        ("ts", "time"), ("channel", "text"), ("promo_code", "text"))),
    "survey_responses": TableSpec("survey_responses", KPI_TABLES["survey_responses"], _cols(
        # kind: free-form (exit_intent, post_purchase, nps, ...); status: empty or absent = delivered
        "survey_id", ("kind", "label"), "artisan_id",
        ("buyer_id", "text"), ("order_id", "text"), ("ts", "time"),
        Column("status", "enum", ("sent", "delivered"), default="delivered"), ("answered", "bool"),
        ("answered_at", "opt_time"), ("score", "score")),
        rules=(("lower(trimBoth(ifNull(`answered`, ''))) IN ('0', 'false') "
                "AND trimBoth(ifNull(`score`, '')) != ''", "score", "has a value but answered is false"),)),
    "listings": TableSpec("listings", KPI_TABLES["listings"], _cols(
        "artisan_id", "listing_id", ("created", "time"), ("updated", "time"), ("sync_errors", "count")),
        rules=(("parseDateTime64BestEffortOrNull(trimBoth(`updated`), 3, 'UTC') < "
                "parseDateTime64BestEffortOrNull(trimBoth(`created`), 3, 'UTC')",
                "updated", "is before created"),)),
    "integration_changes": TableSpec("integration_changes", KPI_TABLES["integration_changes"], _cols(
        "change_id", "partner_id", "artisan_id", ("description", "text"),
        ("kind", "label"), ("ts", "time"), ("placebo", "opt_bool"))),
    "loyalty": TableSpec("loyalty", KPI_TABLES["loyalty"], _cols(
        "buyer_id", ("enrolled", "time"), ("last_active", "opt_time"))),
}


def spec_for(table: str) -> TableSpec:
    """The spec for ``orders`` or ``kpi_orders``; KpiImportError for anything else."""
    name = table.removeprefix("kpi_")
    if name not in SPECS:
        raise KpiImportError(f"unknown KPI table {table!r} (known: {', '.join(SPECS)})")
    return SPECS[name]


# ---------------------------------------------------------------------------------------------- errors

class KpiImportError(Exception):
    """The data was rejected (nothing inserted); the message names file, line/row, column and reason."""

    def __init__(self, message: str, *, source: str = "", row: int | None = None, line: int | None = None,
                 column: str | None = None, reason: str = "", bad_rows: int = 0) -> None:
        super().__init__(message)
        self.source, self.row, self.line, self.column = source, row, line, column
        self.reason, self.bad_rows = reason or message, bad_rows

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "row": self.row, "line": self.line, "column": self.column,
                "reason": self.reason, "bad_rows": self.bad_rows}


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based data row (header not counted)
    column: str
    reason: str
    value: str | None
    bad_rows: int


def bad_row_error(source: str, bad: BadRow, line: int | None) -> KpiImportError:
    where = f"line {line} (row {bad.row})" if line is not None else f"row {bad.row}"
    shown = "NULL/missing" if bad.value is None else repr(bad.value if len(bad.value) <= 80 else
                                                          bad.value[:77] + "...")
    more = f"; {bad.bad_rows} bad rows in all" if bad.bad_rows > 1 else ""
    msg = (f"{source}: {where}: column {bad.column}: {shown} {bad.reason}{more}; nothing was imported")
    return KpiImportError(msg, source=source, row=bad.row, line=line, column=bad.column,
                          reason=f"{shown} {bad.reason}", bad_rows=bad.bad_rows)


# ------------------------------------------------------------------------------------------------- SQL

def stage_name() -> str:
    return "_kpi_stage_" + uuid.uuid4().hex[:16]


def stage_ddl(spec: TableSpec, stage: str, names: Sequence[str] | None = None) -> str:
    cols = ", ".join(f"`{n}` Nullable(String)" for n in (names or spec.column_names()))
    return f"CREATE TABLE `{stage}` ({cols}) ENGINE = Memory"


def validation_sql(spec: TableSpec, stage: str) -> str:
    """First bad row (row number, per-column reasons, raw values) and the number of bad rows."""
    reasons = [c.reason_sql() for c in spec.columns]
    names = spec.column_names()
    rule_exprs = [f"if({cond}, '{reason}', '')" for cond, _, reason in spec.rules]
    all_reasons = ", ".join(reasons + rule_exprs)
    raw = ", ".join(f"`{n}`" for n in names)
    return (
        f"SELECT row, reasons, values, count() OVER () AS bad FROM ("
        f" SELECT rowNumberInAllBlocks() + 1 AS row, [{all_reasons}] AS reasons, [{raw}] AS values"
        f" FROM `{stage}`) WHERE arrayExists(r -> r != '', reasons) ORDER BY row LIMIT 1"
    )


def publish_sql(spec: TableSpec, stage: str) -> str:
    names = ", ".join(f"`{c.name}`" for c in spec.columns)
    values = ", ".join(f"{c.value_sql()} AS `{c.name}`" for c in spec.columns)
    return f"INSERT INTO {spec.table} ({names}) SELECT {values} FROM `{stage}`"


def _bad_row(spec: TableSpec, rows: list[tuple[Any, ...]]) -> BadRow | None:
    if not rows:
        return None
    row, reasons, values, bad = rows[0]
    names = spec.column_names()
    blame = names + [col for _, col, _ in spec.rules]
    i = next(i for i, r in enumerate(reasons) if r)
    column = blame[i]
    return BadRow(int(row), column, reasons[i], values[names.index(column)], int(bad))


# ---------------------------------------------------------------------------------------- file imports

@dataclass(frozen=True)
class ImportResult:
    table: str
    rows: int
    source: str


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise KpiImportError(f"unknown format {fmt!r} (use csv, jsonl or parquet)")
        return fmt
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise KpiImportError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                             "pass --format csv|jsonl|parquet")
    return found


REQUIRED_KINDS = frozenset({"id", "label", "date", "time", "money", "count", "bool"})


def required_columns(spec: TableSpec) -> list[str]:
    """Columns a file must have (the others may be absent: empty text, NULL, the enum's default)."""
    return [c.name for c in spec.columns if c.kind in REQUIRED_KINDS or (c.kind == "enum" and not c.default)]


def import_file(store: Store, table: str, path: Path, fmt: str | None = None, *,
                progress: bool = True, mapping: Mapping[str, str] | None = None) -> ImportResult:
    """Stage, validate and publish one file (blocking).  Raises KpiImportError; nothing written then.

    ``mapping`` renames file columns (``{file column: table column}``); every unknown and missing column
    is reported at once before the file is parsed.
    """
    spec = spec_for(table)
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise KpiImportError(f"{path}: no such file")
    try:
        sources = plan_columns(str(path), file_columns(path, fmt), dict(mapping or {}),
                               spec.column_names(), required_columns(spec)).sources
    except ColumnMapError as exc:
        raise KpiImportError(str(exc), source=str(path), reason="column problems") from None
    stage = stage_name()
    # Stage columns carry the file's names; a view gives them the table's names when they differ.
    taken = set(sources.values())
    staged = [sources.get(n) or (n if n not in taken else "__absent_" + n) for n in spec.column_names()]
    store.command(stage_ddl(spec, stage, staged))
    source = stage
    try:
        if staged != spec.column_names():
            source = stage + "_named"
            renamed = ", ".join(f"`{s}` AS `{n}`" for s, n in zip(staged, spec.column_names(), strict=True))
            store.command(f"CREATE VIEW `{source}` AS SELECT {renamed} FROM `{stage}`")
        _stage_file(store, spec, stage, path, fmt, progress)
        bad = _bad_row(spec, store.query(validation_sql(spec, source), settings=_ORDERED).rows)
        if bad is not None:
            raise bad_row_error(str(path), bad, _line_of(path, fmt, bad.row))
        count = int(store.query(f"SELECT count() FROM `{stage}`").rows[0][0])
        store.command(publish_sql(spec, source))
        return ImportResult(spec.table, count, str(path))
    finally:
        store.command(f"DROP VIEW IF EXISTS `{stage}_named`")
        store.command(f"DROP TABLE IF EXISTS `{stage}`")


def _stage_file(store: Store, spec: TableSpec, stage: str, path: Path, fmt: str, progress: bool) -> None:
    bar = Progress(f"import {path.name}", path.stat().st_size, "B", enabled=progress)
    try:
        store.insert_raw(stage, _chunks(path, bar), FORMATS[fmt], settings=_STAGE_SETTINGS)
    except Exception as exc:
        raise _parse_error(str(path), fmt, path, str(exc), spec) from None
    bar.finish("parsed")


def _chunks(path: Path, bar: Progress) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            bar.update(len(chunk))
            yield chunk


def _parse_error(source: str, fmt: str, path: Path | None, message: str, spec: TableSpec) -> KpiImportError:
    """A ClickHouse parse failure as a message naming the row and column where ClickHouse says."""
    first = message.split("\n")[0]
    m = re.search(r"Unknown field found[^:]*: '?([^':\s]+)'?", message)
    if m:
        col = m.group(1)
        return KpiImportError(f"{source}: column {col}: unknown column (expected: "
                              f"{', '.join(spec.column_names())}); nothing was imported",
                              source=source, column=col, reason="unknown column")
    m = re.search(r"\(at row (\d+)\)|Row (\d+):", message)
    row = int(m.group(1) or m.group(2)) if m else None
    line = _line_of(path, fmt, row) if (row is not None and path is not None) else None
    where = (f"line {line} (row {row})" if line is not None else f"row {row}") if row is not None else ""
    detail = re.sub(r"^Code: \d+\. DB::Exception: (Code: \d+\. DB::Exception: )?", "", first).strip(" :")
    return KpiImportError(f"{source}: {where + ': ' if where else ''}cannot parse {fmt}: {detail}; "
                          "nothing was imported", source=source, row=row, line=line, reason=detail)


def _line_of(path: Path | None, fmt: str, row: int) -> int | None:
    """The 1-based line where data row ``row`` starts (CSV header = line 1), None for Parquet."""
    if path is None or fmt == "parquet":
        return None
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        if fmt == "csv":
            reader = csv.reader(f)
            start = 1
            for n, _ in enumerate(reader):  # record 0 is the header
                if n == row:
                    return start
                start = reader.line_num + 1
            return None
        seen = 0
        for lineno, text in enumerate(f, start=1):
            if text.strip():
                seen += 1
                if seen == row:
                    return lineno
    return None


# ---------------------------------------------------------------------------------- JSON Lines bodies

def parse_jsonl(spec: TableSpec, body: bytes, source: str) -> list[tuple[str | None, ...]]:
    """Rows of text (None = absent/null) from a JSON Lines body; KpiImportError naming line and column."""
    names = spec.column_names()
    rows: list[tuple[str | None, ...]] = []
    for lineno, raw in enumerate(body.decode("utf-8", errors="strict").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KpiImportError(f"{source}: line {lineno}: invalid JSON: {exc.msg} at column {exc.colno}; "
                                 "nothing was imported", source=source, line=lineno, row=len(rows) + 1,
                                 reason=f"invalid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise KpiImportError(f"{source}: line {lineno}: expected a JSON object; nothing was imported",
                                 source=source, line=lineno, row=len(rows) + 1, reason="not a JSON object")
        for key, value in obj.items():
            if key not in names:
                raise KpiImportError(f"{source}: line {lineno}: column {key}: unknown column (expected: "
                                     f"{', '.join(names)}); nothing was imported", source=source, line=lineno,
                                     row=len(rows) + 1, column=key, reason="unknown column")
            if isinstance(value, dict | list):
                raise KpiImportError(f"{source}: line {lineno}: column {key}: expected a scalar value; "
                                     "nothing was imported", source=source, line=lineno, row=len(rows) + 1,
                                     column=key, reason="not a scalar value")
        rows.append(tuple(_text(obj.get(n)) for n in names))
    return rows


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _jsonl_lines(body: bytes) -> list[int]:
    return [i for i, raw in enumerate(body.decode("utf-8", "replace").splitlines(), start=1) if raw.strip()]


async def import_jsonl(store: AsyncStore, table: str, body: bytes,
                       source: str = "request body") -> ImportResult:
    """The admin API's import: same staging, validation and publish as files, through an AsyncStore."""
    spec = spec_for(table)
    try:
        rows = parse_jsonl(spec, body, source)
    except UnicodeDecodeError as exc:
        raise KpiImportError(f"{source}: not UTF-8 ({exc.reason}); nothing was imported", source=source,
                             reason="not UTF-8") from None
    if not rows:
        return ImportResult(spec.table, 0, source)
    stage = stage_name()
    await store.command(stage_ddl(spec, stage))
    try:
        await store.insert(stage, rows, spec.column_names())
        bad = _bad_row(spec, (await store.query(validation_sql(spec, stage), settings=_ORDERED)).rows)
        if bad is not None:
            lines = _jsonl_lines(body)
            raise bad_row_error(source, bad, lines[bad.row - 1] if bad.row <= len(lines) else None)
        await store.command(publish_sql(spec, stage))
        return ImportResult(spec.table, len(rows), source)
    finally:
        await store.command(f"DROP TABLE IF EXISTS `{stage}`")


# ------------------------------------------------------------------------------------------------- CLI

def cli_main(argv: Sequence[str]) -> int:
    """``loomgate import``: see collectors/import_cli.py (KPI tables and spans)."""
    from collectors.import_cli import cli_main as main

    return main(argv)
