"""Column names of an import file, renamed by ``--map`` / a mapping file and checked in one pass.

Every import (KPI tables and spans) reads the file's header first (CSV header row, the union of keys over
all JSON Lines objects, the Parquet schema), applies the mapping ``source=target``, and reports every
unknown and every missing required column together, before anything is parsed or written.

A mapping file holds one ``source=target`` per line (blank lines and ``#`` comments ignored), or a JSON
object ``{"source": "target", ...}`` when the file name ends in ``.json``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ColumnMapError(Exception):
    """A --map item or mapping file is malformed, or the file's columns do not fit the table."""


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """Which file column feeds which table column."""

    sources: dict[str, str]  # table column -> file column

    def source_of(self, target: str) -> str:
        return self.sources.get(target, target)


def parse_map_items(items: Iterable[str], where: str = "--map") -> dict[str, str]:
    """``["src=dst", ...]`` -> ``{src: dst}``; a malformed or repeated item raises ColumnMapError."""
    out: dict[str, str] = {}
    for item in items:
        src, sep, dst = item.partition("=")
        src, dst = src.strip(), dst.strip()
        if not sep or not src or not dst:
            raise ColumnMapError(f"{where}: {item!r}: expected SOURCE=TARGET (file column=table column)")
        if src in out and out[src] != dst:
            raise ColumnMapError(f"{where}: {src!r} is mapped twice ({out[src]!r} and {dst!r})")
        out[src] = dst
    return out


def load_map_file(path: Path) -> dict[str, str]:
    """A mapping file (see the module docstring); errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ColumnMapError(f"{path}: cannot read the mapping file: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ColumnMapError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in data.items()):
            raise ColumnMapError(f"{path}: expected a JSON object of \"source\": \"target\" strings")
        return parse_map_items((f"{k}={v}" for k, v in data.items()), str(path))
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.update(parse_map_items([line], f"{path}: line {lineno}"))
    return out


def file_columns(path: Path, fmt: str) -> list[str]:
    """The column names of ``path`` in ``fmt`` (csv, jsonl, parquet), in first-seen order."""
    try:
        if fmt == "csv":
            with path.open(newline="", encoding="utf-8", errors="replace") as f:
                return [c.strip() for c in next(csv.reader(f), [])]
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        seen: dict[str, None] = {}
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue  # the parser reports it with its line number
                if isinstance(obj, dict):
                    seen.update(dict.fromkeys(obj))
        return list(seen)
    except OSError as exc:
        raise ColumnMapError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # pyarrow raises its own types for a file that is not Parquet
        raise ColumnMapError(f"{path}: cannot read the {fmt} header: {exc}") from None


def plan_columns(source: str, present: Sequence[str], mapping: Mapping[str, str], known: Sequence[str],
                 required: Sequence[str]) -> ColumnPlan:
    """Check the file's columns against the table in one pass; ColumnMapError lists every problem."""
    problems: list[str] = []
    for src in mapping:
        if src not in present:
            problems.append(f"--map {src}={mapping[src]}: the file has no column {src!r}")
    for src, dst in mapping.items():
        if dst not in known:
            problems.append(f"--map {src}={dst}: {dst!r} is not a column of the table")
    targets: dict[str, str] = {}
    for col in present:
        dst = mapping.get(col, col)
        if dst not in known:
            if col not in mapping:
                problems.append(f"column {col}: unknown column")
            continue
        if dst in targets:
            problems.append(f"columns {targets[dst]!r} and {col!r} both feed {dst!r}")
            continue
        targets[dst] = col
    missing = [c for c in required if c not in targets]
    if missing:
        problems.append("missing required column(s): " + ", ".join(missing))
    if problems:
        raise ColumnMapError(
            f"{source}: {len(problems)} column problem(s); nothing was imported:\n  " + "\n  ".join(problems)
            + "\n  table columns: " + ", ".join(known) + "\n  required: " + ", ".join(required)
            + "\n  rename file columns with --map SOURCE=TARGET or --map-file FILE")
    return ColumnPlan(targets)
