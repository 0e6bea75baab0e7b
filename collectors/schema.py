"""Versioned ClickHouse schema: the files under ``queries/schema/`` applied in numeric order, once each.

Every file is ``NNN_name.sql`` (three-digit version, unique) holding one or more ``;``-separated statements,
each idempotent (``CREATE … IF NOT EXISTS``, ``ALTER … IF NOT EXISTS``).  Ranges: 000-009 telemetry,
010-019 health/SLA/alerts, 020-029 KPIs.  ``loomgate_schema_migrations`` records version, name, sha256 of
the file as committed and the time it was applied; an applied file whose content changed is an error
(schema files are immutable once released: changes go into a new, higher-numbered file).

Files are templated only by config-owned values, with these placeholders (anything else is an error):

``{{DB}}``
    the configured database, backquoted.
``{{ON_CLUSTER}}``
    ``ON CLUSTER `name``` when ``telemetry.cluster`` is set, else nothing.
``{{ENGINE:Family}}`` / ``{{ENGINE:Family(arg, …)}}``
    a ``*MergeTree`` family, e.g. ``MergeTree`` or ``ReplacingMergeTree(version)``; with a cluster it becomes
    ``ReplicatedFamily('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', arg, …)``.
``{{TTL:expr}}``
    ``TTL expr + toIntervalDay(ttl_days)``, nothing when ``ttl_days`` is 0 (keep forever).
``{{ROLLUP_TTL:expr}}``
    the same for per-minute rollups, which are orders of magnitude smaller than raw rows and back 30-day
    (and longer) reports: ``max(ttl_days, 400)`` days, nothing when ``ttl_days`` is 0.
``{{DEDUP_WINDOW}}``
    the table setting that keeps recent insert block ids, so a batch replayed with the same
    ``insert_deduplication_token`` is dropped: ``non_replicated_deduplication_window`` on a single server,
    ``replicated_deduplication_window`` on a cluster.

Changing ``ttl_days`` later does not alter existing tables by itself (their DDL was applied once):
``loomgate migrate`` (the command, with ``--ttl`` or the config's ``telemetry.ttl``) then runs
``ALTER TABLE … MODIFY TTL`` (or ``REMOVE TTL`` for 0) on every table whose TTL differs (``reconcile_ttl``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from collectors import resources
from collectors.store import Store, StoreError, quote_ident
from gateway.config import TelemetryConfig

SCHEMA_DIR = resources.schema_dir()  # package data: the same in a checkout and an installed wheel
MIGRATIONS_TABLE = "loomgate_schema_migrations"
BOOTSTRAP_VERSION = 0  # the file that creates the ledger itself; run before the ledger is read
DEDUP_WINDOW_BLOCKS = 10_000  # recent insert blocks remembered per table (about 10k batches of replay)
ROLLUP_MIN_TTL_DAYS = 400
REPLICATED_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER_RE = re.compile(r"\{\{([A-Z_]+)(?::([^{}]*))?\}\}")
_ENGINE_RE = re.compile(r"^([A-Za-z]*MergeTree)(?:\(([A-Za-z0-9_, ]*)\))?$")
_TTL_EXPR_RE = re.compile(r"^[A-Za-z0-9_(), ]+$")
_TTL_TABLE_RE = re.compile(
    r"CREATE TABLE IF NOT EXISTS \{\{DB\}\}\.(\w+).*?\{\{(TTL|ROLLUP_TTL):([^{}]*)\}\}", re.S)
_TTL_DAYS_RE = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")
_TTL_ARG_RE = re.compile(r"^(\d+)d?$")


class SchemaError(Exception):
    """A schema file is malformed, uses an unknown placeholder, or changed after it was applied."""


@dataclass(frozen=True, slots=True)
class SchemaFile:
    version: int
    name: str  # e.g. "001_otel_traces"
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RenderContext:
    database: str
    cluster: str | None = None
    ttl_days: int = 30

    @classmethod
    def from_config(cls, tcfg: TelemetryConfig) -> RenderContext:
        return cls(database=tcfg.database, cluster=tcfg.cluster or None, ttl_days=tcfg.ttl_days)


def schema_files(directory: Path = SCHEMA_DIR) -> list[SchemaFile]:
    """Every ``NNN_name.sql`` in ``directory``, in version order; other ``.sql`` names are an error."""
    files: list[SchemaFile] = []
    seen: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if m is None:
            raise SchemaError(f"{path}: schema files must be named NNN_lowercase_name.sql")
        version = int(m.group(1))
        if version in seen:
            raise SchemaError(f"{path}: version {version:03d} is also used by {seen[version]}")
        seen[version] = path.name
        files.append(SchemaFile(version, path.stem, path, path.read_text(encoding="utf-8")))
    if not files:
        # Applying nothing would report an up-to-date schema over an empty database.
        raise SchemaError(f"{directory}: no schema files (NNN_name.sql): the schema DDL is missing")
    files.sort(key=lambda f: f.version)
    return files


def render(text: str, ctx: RenderContext, source: str = "<sql>") -> str:
    """Substitute the placeholders (see the module docstring); unknown or malformed ones raise SchemaError."""

    def one(m: re.Match[str]) -> str:
        key, arg = m.group(1), m.group(2)
        try:
            return _placeholder(key, arg, ctx)
        except SchemaError as exc:
            raise SchemaError(f"{source}: {m.group(0)}: {exc}") from None

    return _PLACEHOLDER_RE.sub(one, text)


def _placeholder(key: str, arg: str | None, ctx: RenderContext) -> str:
    if key == "DB" and arg is None:
        return quote_ident(ctx.database)
    if key == "ON_CLUSTER" and arg is None:
        return f"ON CLUSTER {quote_ident(ctx.cluster)}" if ctx.cluster else ""
    if key == "DEDUP_WINDOW" and arg is None:
        name = "replicated_deduplication_window" if ctx.cluster else "non_replicated_deduplication_window"
        return f"{name} = {DEDUP_WINDOW_BLOCKS}"
    if key == "ENGINE" and arg is not None:
        return _engine(arg.strip(), ctx)
    if key in ("TTL", "ROLLUP_TTL") and arg is not None:
        days = ctx.ttl_days if key == "TTL" else max(ctx.ttl_days, ROLLUP_MIN_TTL_DAYS)
        return _ttl(arg.strip(), days if ctx.ttl_days > 0 else 0)
    raise SchemaError(
        "unknown placeholder (known: DB, ON_CLUSTER, DEDUP_WINDOW, ENGINE:…, TTL:…, ROLLUP_TTL:…)"
    )


def _engine(spec: str, ctx: RenderContext) -> str:
    m = _ENGINE_RE.match(spec)
    if m is None:
        raise SchemaError("engine must be a *MergeTree family with optional plain arguments")
    family, args = m.group(1), (m.group(2) or "").strip()
    if not ctx.cluster:
        return f"{family}({args})" if args else family
    inner = REPLICATED_PATH + (f", {args}" if args else "")
    return f"Replicated{family}({inner})"


def _ttl(expr: str, days: int) -> str:
    if not _TTL_EXPR_RE.match(expr):
        raise SchemaError("TTL expression may only use names, digits, parentheses and commas")
    return f"TTL {expr} + toIntervalDay({days})" if days > 0 else ""


def split_statements(sql: str) -> list[str]:
    """Split on top-level ``;`` (outside quotes and comments); comments are removed, empty pieces dropped."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            buf.append(" ")
        elif c in "'`\"":
            j = _quote_end(sql, i)
            buf.append(sql[i:j])
            i = j
        elif c == ";":
            out.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    out.append("".join(buf))
    return [s.strip() for s in out if s.strip()]


def _quote_end(sql: str, start: int) -> int:
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):  # doubled quote escapes itself
                i += 2
                continue
            return i + 1
        i += 1
    raise SchemaError(f"unterminated {quote} quote starting at offset {start}")


def rendered_statements(sf: SchemaFile, ctx: RenderContext) -> list[str]:
    # Comments go first so that placeholders mentioned in header comments are not rendered.
    return [render(stmt, ctx, str(sf.path)) for stmt in split_statements(sf.text)]


def plan(tcfg: TelemetryConfig, directory: Path = SCHEMA_DIR) -> list[tuple[SchemaFile, list[str]]]:
    """Every schema file with its rendered statements, without touching a store (for --dry-run)."""
    ctx = RenderContext.from_config(tcfg)
    return [(sf, rendered_statements(sf, ctx)) for sf in schema_files(directory)]


def applied_versions(store: Store) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) from the ledger."""
    res = store.query(
        f"SELECT version, any(name), any(checksum) FROM {MIGRATIONS_TABLE} GROUP BY version ORDER BY version"
    )
    return {int(v): (str(name), str(cs)) for v, name, cs in res.rows}


def migrate(store: Store, tcfg: TelemetryConfig, directory: Path = SCHEMA_DIR) -> list[str]:
    """Apply every schema file not yet recorded, in version order.  Returns the names applied this time.

    Safe to run on every start and from several processes: statements are idempotent and the ledger is
    read with ``GROUP BY version``.  A recorded file whose checksum no longer matches raises SchemaError
    before anything is applied.
    """
    if store.database != tcfg.database:
        raise SchemaError(
            f"store database {store.database!r} differs from telemetry.database {tcfg.database!r}"
        )
    ctx = RenderContext.from_config(tcfg)
    files = schema_files(directory)
    bootstrap = [f for f in files if f.version == BOOTSTRAP_VERSION]
    for sf in bootstrap:
        _execute(store, sf, ctx)
    applied = applied_versions(store)
    _check_checksums(files, applied)
    done: list[str] = []
    for sf in files:
        if sf.version in applied:
            continue
        if sf.version != BOOTSTRAP_VERSION:
            _execute(store, sf, ctx)
        store.insert(MIGRATIONS_TABLE, [(sf.version, sf.name, sf.checksum)], ["version", "name", "checksum"])
        done.append(sf.name)
    return done


def _check_checksums(files: Sequence[SchemaFile], applied: dict[int, tuple[str, str]]) -> None:
    problems = []
    for sf in files:
        rec = applied.get(sf.version)
        if rec is not None and rec[1] != sf.checksum:
            problems.append(
                f"{sf.path}: applied as {rec[0]!r} with checksum {rec[1][:12]}…, the file now has "
                f"{sf.checksum[:12]}…; applied schema files must not change: revert it and add a new "
                f"numbered file with the change"
            )
    if problems:
        raise SchemaError("\n".join(problems))


def _execute(store: Store, sf: SchemaFile, ctx: RenderContext) -> None:
    for stmt in rendered_statements(sf, ctx):
        try:
            store.command(stmt)
        except Exception as exc:
            first = stmt.splitlines()[0] if stmt else ""
            raise SchemaError(f"{sf.path}: statement {first!r} failed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TtlChange:
    table: str
    before_days: int  # 0 = no TTL
    after_days: int


def ttl_days_of(store: Store, table: str) -> int:
    """The TTL in days the table has now (0 = none, or no such table)."""
    res = store.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND "
                      "name = {t:String}", {"t": table})
    m = _TTL_DAYS_RE.search(str(res.rows[0][0])) if res.rows else None
    return int(m.group(1)) if m else 0


def reconcile_ttl(store: Store, tcfg: TelemetryConfig, directory: Path = SCHEMA_DIR) -> list[TtlChange]:
    """Bring every TTL-carrying table to ``tcfg.ttl_days`` (rollups: at least ROLLUP_MIN_TTL_DAYS).

    Existing parts are not rewritten (``materialize_ttl_after_modify = 0``): a shorter TTL removes old
    rows at the next merges, a longer one keeps what is still there.
    """
    ctx = RenderContext.from_config(tcfg)
    changes: list[TtlChange] = []
    for sf in schema_files(directory):
        for stmt in split_statements(sf.text):
            m = _TTL_TABLE_RE.search(stmt)
            if m is None:
                continue
            table, key, expr = m.group(1), m.group(2), m.group(3).strip()
            want = 0 if ctx.ttl_days <= 0 else (ctx.ttl_days if key == "TTL"
                                                else max(ctx.ttl_days, ROLLUP_MIN_TTL_DAYS))
            have = ttl_days_of(store, table)
            if have == want:
                continue
            clause = f"MODIFY {_ttl(expr, want)}" if want else "REMOVE TTL"
            on_cluster = f" ON CLUSTER {quote_ident(ctx.cluster)}" if ctx.cluster else ""
            store.command(f"ALTER TABLE {quote_ident(ctx.database)}.{table}{on_cluster} {clause}",
                          settings={"materialize_ttl_after_modify": 0})
            changes.append(TtlChange(table, have, want))
    return changes


def _days(n: int) -> str:
    return f"{n} days" if n else "none (kept forever)"


def parse_ttl(text: str) -> int:
    """``--ttl``: whole days as ``30d`` or ``30``; 0 keeps data forever."""
    m = _TTL_ARG_RE.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole days, e.g. 30d or 90 (0 keeps forever)")
    return int(m.group(1))


# ----------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    from collectors import cli_store

    p = argparse.ArgumentParser(
        prog="loomgate migrate",
        description="Apply the versioned ClickHouse schema (queries/schema/NNN_*.sql) to the store. "
        "An embedded chdb:// store must not be open in another process (stop the gateway first).",
    )
    cli_store.add_store_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the rendered SQL and exit; touches nothing")
    p.add_argument("--ttl", type=parse_ttl, metavar="DAYS",
                   help="raw-span and metric retention in days, e.g. 30d (0 = keep forever); default: the "
                        "config's telemetry.ttl, else 30d.  Rollups keep max(DAYS, 400) days.  Existing "
                        "tables are altered to match")
    p.add_argument("--span-attr", action="append", default=[], metavar="KEY=ATTR[,ATTR...]",
                   help="which span attributes give partner/artisan/route/upstream for spans without "
                        "loomgate.request_id (first non-empty wins), e.g. route=http.route")
    return p


def cli_main(argv: list[str]) -> int:
    from collectors import cli_store
    from collectors.span_import import SpanImportError, parse_span_attrs, set_span_mapping

    args = _parser().parse_args(argv)
    try:
        target = cli_store.resolve(args.config, args.dsn, args.database, allow_defaults=True)
        tcfg = target.telemetry if args.ttl is None else replace(target.telemetry, ttl_days=args.ttl)
        span_attrs = parse_span_attrs(args.span_attr)
        if args.dry_run:
            for sf, stmts in plan(tcfg):
                print(f"-- {sf.path.name} (sha256 {sf.checksum[:12]})")
                for stmt in stmts:
                    print(stmt + ";\n")
            return 0
        store = cli_store.open_store(target)
        try:
            applied = migrate(store, tcfg)
            changes = reconcile_ttl(store, tcfg)
            if span_attrs:
                set_span_mapping(store, span_attrs)
        finally:
            store.close()
    except (cli_store.StoreTargetError, SpanImportError) as exc:
        print(f"loomgate migrate: {exc}", file=sys.stderr)
        return 2
    except (SchemaError, StoreError) as exc:
        print(f"loomgate migrate: {exc}", file=sys.stderr)
        return 1
    for ch in changes:
        print(f"{ch.table}: TTL {_days(ch.before_days)} -> {_days(ch.after_days)}")
    if applied:
        print(f"applied {len(applied)} schema file(s) to {tcfg.database}: " + ", ".join(applied))
    else:
        print(f"schema of {tcfg.database} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
