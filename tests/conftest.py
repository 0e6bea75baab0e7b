"""Shared fixtures: a real embedded ClickHouse store (chDB), one per test session.

chDB binds one data directory per process for the life of the process, so the session owns one
directory and each test that needs a store gets a fresh database inside it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.store import Store


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def chdb_dsn(chdb_dir: Path) -> str:
    return "chdb://" + str(chdb_dir)


@pytest.fixture
def store(chdb_dsn: str) -> Iterator[Store]:
    """A fresh, empty database in the session's embedded store (no schema applied)."""
    database = "t_" + uuid.uuid4().hex[:12]
    s = Store(chdb_dsn, database)
    try:
        yield s
    finally:
        s.command(f"DROP DATABASE IF EXISTS `{database}`")
