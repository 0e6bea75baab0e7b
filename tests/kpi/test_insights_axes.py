"""Insights charts: axis ranges of non-negative metrics stay non-negative."""

from __future__ import annotations

from gateway.charts import _span


def test_padding_never_invents_negative_values_for_non_negative_data() -> None:
    lo, hi = _span([0.0, 0.01, 0.05])
    assert lo == 0.0 and hi > 0.05
    lo, hi = _span([2.0, 2.0])
    assert lo == 1.0 and hi == 3.0
    lo, hi = _span([0.2, 0.2])
    assert lo == 0.0 and hi == 1.2


def test_negative_data_keeps_its_padding() -> None:
    lo, hi = _span([-1.0, 1.0])
    assert lo < -1.0 and hi > 1.0
