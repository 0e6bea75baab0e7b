"""Content errors are told apart from availability errors on the real store's own exceptions, and the
dead-letter file stays within its budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collectors.deadletter import DeadLetterFile, DeadRecord, is_content_error
from collectors.store import Store


def _raised(fn: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def test_the_store_s_content_errors_and_availability_errors_are_told_apart(store: Store) -> None:
    store.command("CREATE TABLE t (s String, n UInt16) ENGINE = MergeTree ORDER BY tuple()")
    content = [
        _raised(lambda: store.insert_columns("t", [["bad\udcff"], [1]], ["s", "n"])),  # not UTF-8
        _raised(lambda: store.insert_columns("t", [["ok"], ["x"]], ["s", "n"])),  # not a number
        _raised(lambda: store.insert_columns("t", [["ok"], [70000]], ["s", "n"])),  # out of range
        _raised(lambda: store.command("SELECT toUInt8('x')")),  # the server cannot parse it
    ]
    assert [is_content_error(e) for e in content] == [True] * 4, content
    store.command("DETACH TABLE t")
    unavailable = [
        _raised(lambda: store.insert_columns("t", [["ok"], [1]], ["s", "n"])),  # table gone
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ]
    assert [is_content_error(e) for e in unavailable] == [False] * 3, unavailable


def test_dead_letter_file_keeps_to_its_budget(tmp_path: Path) -> None:
    dead = [DeadRecord(("x" * 100, i), "ValueError: no") for i in range(10)]
    f = DeadLetterFile(tmp_path / "dl.jsonl", max_bytes=800)
    written = f.append("b1", dead)
    assert 0 < written < 10
    lines = (tmp_path / "dl.jsonl").read_text(encoding="ascii").splitlines()
    assert len(lines) == written and (tmp_path / "dl.jsonl").stat().st_size <= 800
    assert json.loads(lines[0])["record"] == {"fields": ["x" * 100, 0]}
    assert f.append("b2", dead) == 0  # full: the caller counts them as dropped
