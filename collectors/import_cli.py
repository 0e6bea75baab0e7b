"""``loomgate import TABLE FILE``: KPI tables (collectors/kpi_import.py) and span history
(collectors/span_import.py), with column renaming (``--map``, ``--map-file``) shared by both."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from collectors import cli_store
from collectors.import_columns import ColumnMapError, load_map_file, parse_map_items
from collectors.kpi_import import (
    FORMATS,
    SPECS,
    KpiImportError,
    detect_format,
    import_file,
    required_columns,
    spec_for,
)
from collectors.span_import import (
    COLUMN_TYPES,
    REQUIRED,
    SpanImportError,
    format_result,
    import_spans,
    parse_span_attrs,
    set_span_mapping,
)
from collectors.span_import import FORMATS as SPAN_FORMATS
from collectors.span_import import detect_format as detect_span_format
from collectors.store import StoreError

SPANS = "spans"


def _epilog() -> str:
    lines = ["required columns per table (the others may be absent):"]
    for name, spec in SPECS.items():
        req = set(required_columns(spec))
        optional = [c for c in spec.column_names() if c not in req]
        lines.append(f"  {name}: {', '.join(sorted(req, key=spec.column_names().index))}"
                     + (f"  [optional: {', '.join(optional)}]" if optional else ""))
    optional = [c for c in COLUMN_TYPES if c not in REQUIRED]
    lines.append(f"  {SPANS}: {', '.join(REQUIRED)}  [optional: {', '.join(optional)}]")
    lines.append(f"  {SPANS} also accepts OTLP/JSON trace exports (resourceSpans/scopeSpans/spans); "
                 "--format otlp, detected from the content of .json files")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loomgate import", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog(),
        description="Import KPI data or span history; the whole file is checked before any row is written. "
                    "Tables: " + ", ".join([*SPECS, SPANS]))
    p.add_argument("table", help=f"KPI table ({', '.join(SPECS)}) or '{SPANS}' (into otel_traces)")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=sorted(set(FORMATS) | set(SPAN_FORMATS)),
                   help="default: from the file extension (otlp: from a .json file's content)")
    p.add_argument("--map", action="append", default=[], metavar="SOURCE=TARGET",
                   help="read file column SOURCE as table column TARGET (repeatable)")
    p.add_argument("--map-file", type=Path, metavar="FILE",
                   help="SOURCE=TARGET per line, or a JSON object; --map items override it")
    p.add_argument("--span-attr", action="append", default=[], metavar="KEY=ATTR[,ATTR...]",
                   help="spans only: which attributes give the rollups' partner/artisan/route/upstream for "
                        "spans without loomgate.request_id (first non-empty wins; stored in the store)")
    cli_store.add_store_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def cli_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    spans = args.table == SPANS
    try:
        mapping = load_map_file(args.map_file) if args.map_file else {}
        mapping.update(parse_map_items(args.map))
        span_attrs = parse_span_attrs(args.span_attr) if spans else {}
        if args.span_attr and not spans:
            raise KpiImportError("--span-attr applies to `loomgate import spans` only")
        if spans:
            detect_span_format(args.file, args.format)
        else:
            spec_for(args.table)
            detect_format(args.file, args.format)
        target = cli_store.resolve(args.config, args.dsn, args.database)
        store = cli_store.open_store(
            target, instead="" if spans else f"send JSON Lines to its admin API: POST /api/kpi/{args.table}")
    except (KpiImportError, SpanImportError, ColumnMapError, cli_store.StoreTargetError) as exc:
        print(f"loomgate import: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"loomgate import: store error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    try:
        from collectors.schema import migrate

        try:
            migrate(store, target.telemetry)
            if spans:
                if span_attrs:
                    set_span_mapping(store, span_attrs)
                lines = format_result(import_spans(store, args.file, args.format, mapping=mapping))
            else:
                result = import_file(store, args.table, args.file, args.format, progress=not args.no_progress,
                                     mapping=mapping)
                lines = [f"imported {result.rows} rows into {result.table} from {result.source}"]
        finally:
            store.close()
    except (KpiImportError, SpanImportError) as exc:
        print(f"loomgate import: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # store failures surface with their ClickHouse message
        print(f"loomgate import: {args.file}: store error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    for line in lines:
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return 0
