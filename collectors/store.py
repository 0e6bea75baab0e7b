"""Access to the ClickHouse store, embedded (chDB, ``chdb:///path``) or a server (``http(s)://…``).

The same SQL runs on both: the client is a normal clickhouse-connect client either way.  chDB allows one
data directory per process (and per process lifetime), so an embedded store is owned by exactly one
process; every other user goes through that owner (see ``collectors.writer``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import clickhouse_connect


class StoreError(Exception):
    """The store could not be opened or a statement failed."""


class WriterUnavailable(StoreError):
    """No process owns the store right now (the telemetry writer is down or restarting): try again later."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


EMBEDDED_EXTRA = "loomgate[embedded]"


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def chdb_path(dsn: str) -> str:
    """The data directory of a ``chdb://`` DSN (``chdb:///abs/path`` or ``chdb://rel/path``)."""
    rest = dsn[len("chdb://") :]
    return str(Path(rest).resolve())


def require_driver(dsn: str) -> None:
    """chDB is an optional dependency (the ``embedded`` extra): say which one when it is missing."""
    if not is_embedded(dsn):
        return
    try:
        import chdb  # noqa: F401
    except ImportError:
        raise StoreError(f"{dsn}: the embedded store needs chDB, which is not installed: "
                         f"pip install '{EMBEDDED_EXTRA}' (or use an http(s):// ClickHouse server)") from None


def open_client(dsn: str, database: str | None = None) -> Any:
    """A clickhouse-connect client for the DSN; ``database`` becomes its default database."""
    try:
        if is_embedded(dsn):
            require_driver(dsn)
            path = chdb_path(dsn)
            Path(path).mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn="chdb://" + path, database=database)
        parts = urlsplit(dsn)
        if parts.scheme not in ("http", "https"):
            raise StoreError(f"unsupported store DSN scheme {parts.scheme!r} (use chdb:// or http(s)://)")
        kwargs: dict[str, Any] = {"dsn": dsn}
        if database:
            kwargs["database"] = database
        return clickhouse_connect.get_client(**kwargs)
    except StoreError:
        raise
    except Exception as exc:  # clickhouse-connect raises several unrelated types here
        raise StoreError(f"cannot open store {redact_dsn(dsn)}: {exc}") from exc


def redact_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        return dsn.replace(":" + parts.password + "@", ":***@")
    return dsn


class Store:
    """Blocking store access, safe to share between threads (one statement at a time).

    Never call it from the event loop directly: use ``asyncio.to_thread`` or the writer process.
    """

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self._lock = threading.Lock()
        bootstrap = open_client(dsn)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
        self._client = open_client(dsn, database)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None,
              settings: Mapping[str, Any] | None = None) -> QueryResult:
        with self._lock:
            res = self._client.query(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
        return QueryResult(tuple(res.column_names), list(res.result_rows))

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))

    def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str],
               settings: Mapping[str, Any] | None = None) -> None:
        if not rows:
            return
        with self._lock:
            self._client.insert(table, rows, column_names=list(column_names), settings=dict(settings or {}))

    def insert_columns(self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str],
                       settings: Mapping[str, Any] | None = None) -> None:
        """Column-oriented insert: ``columns[i]`` holds every value of ``column_names[i]``, so a caller that
        has columns (or can transpose tuples with ``zip``) builds no row objects."""
        if not columns or not columns[0]:
            return
        with self._lock:
            self._client.insert(table, columns, column_names=list(column_names), column_oriented=True,
                                settings=dict(settings or {}))

    def insert_raw(self, table: str, data: bytes | Iterable[bytes], fmt: str,
                   settings: Mapping[str, Any] | None = None) -> None:
        """Insert a file body in a ClickHouse input format (CSVWithNames, JSONEachRow, Parquet …),
        parsed by ClickHouse itself; ``data`` may be an iterator of chunks (streamed, not held whole)."""
        with self._lock:
            self._client.raw_insert(table, None, data, settings=dict(settings or {}), fmt=fmt)

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except Exception:
            return False

    def close(self) -> None:
        with self._lock:
            self._client.close()


def quote_ident(name: str) -> str:
    """Backquote an identifier from config (database / cluster names); never used for user input."""
    if not name or any(c in name for c in "`\\\0"):
        raise StoreError(f"invalid identifier {name!r}")
    return f"`{name}`"


class AsyncStore(Protocol):
    """Store access for coroutines (admin API, health checks, alerts)."""

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None,
                    settings: Mapping[str, Any] | None = None) -> QueryResult: ...

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None,
                      settings: Mapping[str, Any] | None = None) -> Any: ...

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str],
                     settings: Mapping[str, Any] | None = None) -> None: ...


class ThreadStore:
    """``AsyncStore`` over a blocking ``Store`` owned by this process: calls run in worker threads."""

    def __init__(self, store: Store) -> None:
        self.sync = store

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None,
                    settings: Mapping[str, Any] | None = None) -> QueryResult:
        return await asyncio.to_thread(self.sync.query, sql, parameters, settings)

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None,
                      settings: Mapping[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.sync.command, sql, parameters, settings)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str],
                     settings: Mapping[str, Any] | None = None) -> None:
        await asyncio.to_thread(self.sync.insert, table, rows, column_names, settings)
