"""Duration and size grammars, YAML anchors / merge keys, and x- extension keys."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config_loader import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), ("1d", 86400.0), ("1h30m", 5400.0),
     ("1.5s", 1.5), ("30", 30.0), ("0.5", 0.5), (7, 7.0), (2.5, 2.5), ("-1s", -1.0)],
)  # fmt: skip
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "2 s", "2sec", "1w", "ms250", "1.s", "nan", True])
def test_parse_duration_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1MiB", 1 << 20), ("512KiB", 512 * 1024), ("10MB", 10_000_000), ("1kB", 1000), ("1GiB", 1 << 30),
     ("2TB", 2 * 10**12), ("100", 100), ("100B", 100), (4096, 4096), ("1.5KiB", 1536)],
)  # fmt: skip
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1 megabyte", "1mib", "1.5", "MiB", "1e6", 1.5, False])
def test_parse_size_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match="bad size"):
        parse_size(text)


def test_anchors_merge_keys_and_extension_keys(case: Any) -> None:
    text = case.doc(
        upstreams="  - name: a\n    url: http://a\n    timeouts: &t {connect: 1s, total: 9s}\n"
        "  - name: b\n    url: http://b\n    timeouts: {<<: *t, total: 20s}\n",
        tail="x-notes: {anything: [1, 2]}\n",
    )
    config = case.load(text)
    assert [u.timeouts.total for u in config.upstreams[2:]] == [9.0, 20.0]
    assert [u.timeouts.connect for u in config.upstreams[2:]] == [1.0, 1.0]


def test_unquoted_numbers_and_times_keep_their_text_where_strings_are_expected(case: Any) -> None:
    text = case.doc(
        partners=f"  - id: 42\n    api_keys: [{case.DIGEST_B}]\n    artisans: [0017, 1_000, 12:30]\n",
        tail="maintenance:\n  - name: m\n    recurrence: {every: daily, at: 12:30, duration: 10m}\n",
    )
    config = case.load(text)
    assert config.partners[1].id == "42"
    assert config.partners[1].artisans == ("0017", "1_000", "12:30")
    assert config.maintenance[0].recurrence is not None and config.maintenance[0].recurrence.at == "12:30"
