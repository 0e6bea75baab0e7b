"""The query library: header parsing, parameter conversion and binding, running against a real store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from collectors import querylib
from collectors.querylib import (
    QueryDefinitionError,
    QueryParamError,
    UnknownQueryError,
    bind_params,
    list_queries,
    load_query,
    run_query,
    run_query_sync,
)
from collectors.store import Store, ThreadStore

NOW = dt.datetime(2024, 6, 15, 12, 0, 0, tzinfo=dt.UTC)

ECHO = """\
-- name: echo
-- answers: Echoes its parameters back,
--   one column each.
-- formula: x = x
-- param: start DateTime64(3) = -7d   -- window start
-- param: n UInt16 = 10
-- param: who String
-- param: tags Array(String) =
-- param: ratio Nullable(Float64) =
SELECT {start:DateTime64(3)} AS start, {n:UInt16} AS n, {who:String} AS who,
       {tags:Array(String)} AS tags, {ratio:Nullable(Float64)} AS ratio
"""


@pytest.fixture
def qdir(tmp_path: Path) -> Path:
    (tmp_path / "echo.sql").write_text(ECHO)
    return tmp_path


def test_header_is_parsed(qdir: Path) -> None:
    q = load_query("echo", qdir)
    assert q.name == "echo"
    assert q.description == "Echoes its parameters back, one column each."
    assert q.params == {"start": "DateTime64(3)", "n": "UInt16", "who": "String", "tags": "Array(String)",
                        "ratio": "Nullable(Float64)"}
    assert q.defaults == {"start": "-7d", "n": "10", "tags": "", "ratio": ""}
    assert q.formulas == ("x = x",)
    assert q.param_help and q.param_help["start"] == "window start"
    assert [x.name for x in list_queries(qdir)] == ["echo"]


def test_conversion_of_each_type(qdir: Path) -> None:
    q = load_query("echo", qdir)
    vals = bind_params(q, {"who": "o'brien", "tags": "a, b,c", "ratio": "0.5", "n": "7"}, NOW)
    assert vals == {"start": NOW - dt.timedelta(days=7), "n": 7, "who": "o'brien", "tags": ["a", "b", "c"],
                    "ratio": 0.5}
    vals = bind_params(q, {"who": "x", "start": "2024-05-01T10:00:00+02:00"}, NOW)
    assert vals["start"] == dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
    assert vals["tags"] == [] and vals["ratio"] is None
    assert bind_params(q, {"who": "x", "start": "2024-05-01"}, NOW)["start"] == dt.datetime(
        2024, 5, 1, tzinfo=dt.UTC)
    assert bind_params(q, {"who": "x", "start": "now-12h"}, NOW)["start"] == NOW - dt.timedelta(hours=12)
    assert bind_params(q, {"who": "x", "start": "now"}, NOW)["start"] == NOW


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        ({}, "who", "missing required parameter of type String"),
        ({"who": "x", "bogus": "1"}, "bogus", "unknown parameter"),
        ({"who": "x", "n": "70000"}, "n", "out of range"),
        ({"who": "x", "n": "ten"}, "n", "'ten' is not an integer"),
        ({"who": "x", "start": "yesterday-ish"}, "start", "is not a time"),
        ({"who": "x", "ratio": "abc"}, "ratio", "is not a number"),
    ],
)
def test_bad_params_name_the_param(qdir: Path, raw: dict[str, str], param: str, fragment: str) -> None:
    with pytest.raises(QueryParamError) as err:
        bind_params(load_query("echo", qdir), raw, NOW)
    assert err.value.param == param
    assert param in str(err.value) and fragment in str(err.value)


def test_values_are_bound_by_clickhouse_not_formatted(store: Store, qdir: Path) -> None:
    # A quote and a SQL fragment in a String parameter come back verbatim.
    nasty = "x'); DROP TABLE t; --"
    res = run_query_sync(store, "echo", {"who": nasty, "tags": "a,b", "start": "2024-01-02T03:04:05.678Z"},
                         queries_dir=qdir, now=NOW)
    row = res.dicts()[0]
    assert row["who"] == nasty
    assert row["tags"] == ["a", "b"]
    assert row["n"] == 10 and row["ratio"] is None
    assert row["start"].replace(tzinfo=None) == dt.datetime(2024, 1, 2, 3, 4, 5, 678000)


async def test_async_run_query(store: Store, qdir: Path) -> None:
    res = await run_query(ThreadStore(store), "echo", {"who": "w", "n": "3"}, queries_dir=qdir, now=NOW)
    assert res.dicts()[0]["n"] == 3
    with pytest.raises(QueryParamError):
        await run_query(ThreadStore(store), "echo", {"n": "3"}, queries_dir=qdir)


def test_unknown_query(qdir: Path) -> None:
    with pytest.raises(UnknownQueryError):
        load_query("nope", qdir)
    with pytest.raises(UnknownQueryError):
        load_query("../etc/passwd", qdir)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-- answers: a\n-- param: a UInt8\nSELECT {b:UInt8}\n", "placeholder {b:UInt8} has no 'param:'"),
        ("-- answers: a\n-- param: a UInt8\nSELECT {a:UInt16}\n", "does not match the declared type"),
        ("-- answers: a\n-- param: a UInt8\nSELECT 1\n", "not used in the SQL: a"),
        ("-- answers: a\n-- param: a Map(String, String)\nSELECT 1\n", "unsupported parameter type"),
        ("-- answers: a\n-- colour: red\nSELECT 1\n", "unknown header key 'colour'"),
        ("-- name: other\n-- answers: a\nSELECT 1\n", "does not match the file name"),
        ("-- param: a UInt8\nSELECT {a:UInt8}\n", "no 'answers:' line"),
    ],
)
def test_broken_headers_are_reported(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "q.sql").write_text(text)
    with pytest.raises(QueryDefinitionError) as err:
        load_query("q", tmp_path)
    assert fragment in str(err.value)
    assert "q.sql" in str(err.value)


def test_every_shipped_query_parses_and_binds_its_defaults() -> None:
    queries = list_queries()
    assert len(queries) >= 7
    for q in queries:
        assert q.description, q.name
        required = [p for p in q.params if p not in q.defaults]
        if not required:
            bind_params(q, {}, NOW)  # every default converts with its declared type
            continue
        with pytest.raises(QueryParamError) as err:
            bind_params(q, {}, NOW)
        assert err.value.param == required[0]


def test_render_formats() -> None:
    res = querylib.QueryResult(("a", "b"), [(1, float("nan")), (2, 0.5)])
    assert querylib.render(res, "csv") == "a,b\n1,\n2,0.5\n"
    assert '"b": null' in querylib.render(res, "json")
    table = querylib.render(res, "table")
    assert table.splitlines()[0].split() == ["a", "b"] and table.rstrip().endswith("(2 rows)")
