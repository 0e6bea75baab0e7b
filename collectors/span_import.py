"""``loomgate import spans FILE``: span history into ``otel_traces``, and so into the rollups.

Accepted files: Collector-schema rows (the columns of the OpenTelemetry Collector's clickhouseexporter
``otel_traces`` table) as JSON Lines or Parquet, e.g. ``SELECT * FROM otel_traces FORMAT JSONEachRow``;
and OTLP/JSON trace exports (collectors/otlp_json.py).  Rows go into ``otel_traces`` with one INSERT, so
the same materialized views as live traffic build the rollups: Loomgate's own SERVER spans (with
``loomgate.request_id``) through views 003/004/012, every other SERVER span through the mapped views of
queries/schema/013 (``--span-attr`` changes that mapping).

Steps: read the file's column names and check them against the table in one pass (``--map`` renames);
stage the rows in a temporary Memory table; warn (count and date range) about rows older than the raw-span
TTL or the rollup TTL, which ClickHouse removes at its next merge; publish with a deduplication token
derived from the file's content, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collectors import otlp_json
from collectors.import_columns import ColumnMapError, file_columns, plan_columns
from collectors.rows import insert_settings
from collectors.schema import ttl_days_of
from collectors.store import Store

TRACES = "otel_traces"
MAPPING_TABLE = "loomgate_span_mapping"
MAPPING_KEYS = ("partner", "artisan", "route", "upstream")
# Collector-schema columns and their types (queries/schema/001_otel_traces.sql); Nested ones flattened.
_MAP = "Map(LowCardinality(String), String)"
COLUMN_TYPES: dict[str, str] = {
    "Timestamp": "DateTime64(9)", "TraceId": "String", "SpanId": "String", "ParentSpanId": "String",
    "TraceState": "String", "SpanName": "String", "SpanKind": "String", "ServiceName": "String",
    "ResourceAttributes": _MAP, "ScopeName": "String", "ScopeVersion": "String", "SpanAttributes": _MAP,
    "Duration": "UInt64", "StatusCode": "String", "StatusMessage": "String",
    "Events.Timestamp": "Array(DateTime64(9))", "Events.Name": "Array(String)",
    "Events.Attributes": f"Array({_MAP})", "Links.TraceId": "Array(String)", "Links.SpanId": "Array(String)",
    "Links.TraceState": "Array(String)", "Links.Attributes": f"Array({_MAP})",
}
REQUIRED = ("Timestamp", "TraceId", "SpanId", "SpanName", "SpanKind", "ServiceName", "Duration")
FORMATS = {"jsonl": "JSONEachRow", "parquet": "Parquet", "otlp": "JSONEachRow"}
_STAGE_SETTINGS = {"input_format_skip_unknown_fields": 0, "input_format_json_read_numbers_as_strings": 1,
                   "input_format_json_read_bools_as_strings": 1, "date_time_input_format": "best_effort"}


class SpanImportError(Exception):
    """The file was rejected; nothing was imported.  The message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class TtlWarning:
    table: str
    ttl_days: int
    rows: int
    first: str
    last: str

    def message(self) -> str:
        what = "raw spans" if self.table == TRACES else "rollup rows"
        return (f"warning: {self.rows} span(s) from {self.first} to {self.last} are older than the "
                f"{self.ttl_days}-day TTL of {self.table}: the {what} are removed at the next merge "
                f"(run `loomgate migrate --ttl 0`, or a longer --ttl, before importing to keep them)")


@dataclass(frozen=True, slots=True)
class SpanImportResult:
    rows: int
    server_spans: int
    source: str
    warnings: list[TtlWarning] = field(default_factory=list)


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise SpanImportError(f"unknown span format {fmt!r} (use jsonl, parquet or otlp)")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".json", ".jsonl", ".ndjson"):
        return "otlp" if path.is_file() and otlp_json.looks_like_otlp(path) else "jsonl"
    raise SpanImportError(f"{path}: cannot tell the format from the extension {path.suffix!r}; "
                          "pass --format jsonl|parquet|otlp")


def set_span_mapping(store: Store, mapping: Mapping[str, Sequence[str]]) -> None:
    """Replace the attribute lists of the given rollup keys (see queries/schema/013)."""
    bad = [k for k in mapping if k not in MAPPING_KEYS]
    if bad:
        raise SpanImportError(f"--span-attr: unknown key(s) {', '.join(bad)} "
                              f"(known: {', '.join(MAPPING_KEYS)})")
    rows = [(k, list(v)) for k, v in mapping.items()]
    store.insert(MAPPING_TABLE, rows, ["key", "attributes"])


def span_mapping(store: Store) -> dict[str, list[str]]:
    res = store.query(f"SELECT key, argMax(attributes, updated) FROM {MAPPING_TABLE} "
                      "GROUP BY key ORDER BY key")
    return {str(k): list(v) for k, v in res.rows}


def parse_span_attrs(items: Sequence[str]) -> dict[str, list[str]]:
    """``["route=http.route,url.template", ...]`` -> ``{"route": ["http.route", "url.template"]}``."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, attrs = item.partition("=")
        names = [a.strip() for a in attrs.split(",") if a.strip()]
        if not sep or key.strip() not in MAPPING_KEYS or not names:
            raise SpanImportError(f"--span-attr {item!r}: expected KEY=ATTR[,ATTR...] with KEY one of "
                                  f"{', '.join(MAPPING_KEYS)}")
        out[key.strip()] = names
    return out


def import_spans(store: Store, path: Path, fmt: str | None = None, *,
                 mapping: Mapping[str, str] | None = None) -> SpanImportResult:
    """Check, stage, warn and publish one span file (blocking).  SpanImportError: nothing written."""
    if not path.is_file():
        raise SpanImportError(f"{path}: no such file")
    fmt = detect_format(path, fmt)
    mapping = dict(mapping or {})
    if fmt == "otlp":
        if mapping:
            raise SpanImportError(f"{path}: --map applies to row files (jsonl, parquet), not to OTLP/JSON")
        try:
            body = b"".join(_otlp_chunks(path))
        except (otlp_json.OtlpJsonError, UnicodeDecodeError) as exc:
            raise SpanImportError(f"{exc}; nothing was imported") from None
        present, sources = list(COLUMN_TYPES), {c: c for c in COLUMN_TYPES}
        types = dict(COLUMN_TYPES, **{"Timestamp": otlp_json.TIMESTAMP_TYPE,
                                      "Events.Timestamp": f"Array({otlp_json.TIMESTAMP_TYPE})"})
        data: bytes | Iterator[bytes] = body
    else:
        try:
            present = file_columns(path, fmt)
            sources = plan_columns(str(path), present, mapping, list(COLUMN_TYPES), REQUIRED).sources
        except ColumnMapError as exc:
            raise SpanImportError(str(exc)) from None
        types = COLUMN_TYPES
        data = _file_chunks(path)
    stage = "_span_stage_" + uuid.uuid4().hex[:16]
    cols = ", ".join(f"`{src}` {types[dst]}" for dst, src in sources.items())
    store.command(f"CREATE TABLE `{stage}` ({cols}) ENGINE = Memory")
    try:
        try:
            store.insert_raw(stage, data, FORMATS[fmt], settings=_STAGE_SETTINGS)
        except Exception as exc:
            detail = re.sub(r"^Code: \d+\. DB::Exception: ", "", str(exc).split("\n")[0])
            raise SpanImportError(f"{path}: cannot parse {fmt}: {detail}; nothing was imported") from None
        ts, kind = f"`{sources['Timestamp']}`", f"`{sources['SpanKind']}`"
        total, server = store.query(f"SELECT count(), countIf({kind} = 'Server') FROM `{stage}`").rows[0]
        checked = (_ttl_warning(store, stage, ts, t) for t in (TRACES, "loomgate_calls_1m"))
        warnings = [w for w in checked if w is not None]
        select = ", ".join(f"`{src}` AS `{dst}`" for dst, src in sources.items())
        names = ", ".join(f"`{dst}`" for dst in sources)
        store.command(f"INSERT INTO {TRACES} ({names}) SELECT {select} FROM `{stage}`",
                      settings=insert_settings("span-import-" + _digest(path, mapping)))
        return SpanImportResult(int(total), int(server), str(path), warnings)
    finally:
        store.command(f"DROP TABLE IF EXISTS `{stage}`")


def _ttl_warning(store: Store, stage: str, ts: str, table: str) -> TtlWarning | None:
    days = ttl_days_of(store, table)
    if days <= 0:
        return None
    n, first, last = store.query(
        f"SELECT count(), toString(min({ts})), toString(max({ts})) FROM `{stage}` "
        f"WHERE {ts} < now() - toIntervalDay({days})").rows[0]
    return TtlWarning(table, days, int(n), str(first), str(last)) if n else None


def _digest(path: Path, mapping: Mapping[str, str]) -> str:
    h = hashlib.sha256(json.dumps(sorted(mapping.items())).encode())
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            yield chunk


def _otlp_chunks(path: Path) -> Iterator[bytes]:
    batch: list[str] = []
    for row in otlp_json.rows(path):
        batch.append(json.dumps(row, separators=(",", ":")))
        if len(batch) >= 10_000:
            yield ("\n".join(batch) + "\n").encode()
            batch = []
    if batch:
        yield ("\n".join(batch) + "\n").encode()


def format_result(result: SpanImportResult) -> list[str]:
    lines = [w.message() for w in result.warnings]
    lines.append(f"imported {result.rows} spans ({result.server_spans} SERVER) into {TRACES} "
                 f"from {result.source}")
    return lines

