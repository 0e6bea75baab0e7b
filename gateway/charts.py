"""Server-rendered SVG charts for the admin pages: no JavaScript, no external assets.

Each function returns one ``<svg>`` element as text; every label is escaped.  Colours come from a small
palette so the pages look alike.  Shapes carry ``<title>`` children, which browsers show as tooltips.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

GREEN, AMBER, RED, GREY, BLUE = "#2e9d57", "#e0a21b", "#d64545", "#c9ced6", "#3a78c9"
PALETTE = ("#3a78c9", "#d9782d", "#7b5cc4", "#2e9d57", "#c0392b", "#5b6770")
FONT = 'font-family="system-ui, sans-serif" font-size="11" fill="#4a5361"'


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # tooltip first line, e.g. the day
    value: float | None  # None = no data
    color: str
    detail: str = ""  # tooltip second line


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (x, y); y None = gap
    color: str = ""
    dashed: bool = False


def bars(data: Sequence[Bar], *, width: int = 720, height: int = 34, gap: float = 2.0,
         css_class: str = "bars") -> str:
    """Equal-width vertical bars filling the height (status-page uptime strips)."""
    n = max(len(data), 1)
    w = max((width - gap * (n - 1)) / n, 1.0)
    parts = [f'<svg class="{escape(css_class)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, b in enumerate(data):
        x = i * (w + gap)
        tip = escape(b.label + (f"\n{b.detail}" if b.detail else ""))
        value = "" if b.value is None else f' data-value="{b.value:.4f}"'
        parts.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" rx="1.5" fill="{b.color}"'
                     f'{value} data-label="{escape(b.label)}"><title>{tip}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    # the full number, never "30k": the axis unit (ms, s) is written once and must read as such
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"


def _time_label(t: float, span: float) -> str:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.strftime("%H:%M") if span <= 2 * 86400 else d.strftime("%d %b")


def line_chart(series: Sequence[Series], *, x_range: tuple[float, float], width: int = 720, height: int = 180,
               y_label: str = "", threshold: float | None = None, threshold_label: str = "",
               time_axis: bool = True, css_class: str = "chart", markers: bool = False) -> str:
    """Lines over a shared x axis (epoch seconds when ``time_axis``), optional dashed threshold line."""
    left, right, bottom = 48, 12, 22
    top = 22 if y_label else 10  # room for the unit above the axis, clear of the top tick label
    pw, ph = width - left - right, height - top - bottom
    x0, x1 = x_range
    if x1 <= x0:
        x1 = x0 + 1
    ys = [y for s in series for _, y in s.points if y is not None]
    if threshold is not None:
        ys.append(threshold)
    ticks = nice_ticks(0.0, max(ys) if ys else 1.0)
    y_max = ticks[-1] if ticks else 1.0

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y / y_max) * ph if y_max else top + ph

    out = [f'<svg class="{escape(css_class)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_fmt(t)}</text>')
    if y_label:
        out.append(f'<text class="axis-label" x="{left - 6}" y="11" text-anchor="end" {FONT}>'
                   f'{escape(y_label)}</text>')
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        label = _time_label(x, x1 - x0) if time_axis else _fmt(x)
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        out.append(f'<text x="{sx(x):.1f}" y="{height - 6}" text-anchor="{anchor}" {FONT}>'
                   f'{escape(label)}</text>')
    if threshold is not None:
        y = sy(threshold)
        out.append(f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{RED}" stroke-dasharray="5,4" stroke-width="1.2"/>')
        if threshold_label:
            out.append(f'<text x="{width - right - 4}" y="{y - 4:.1f}" text-anchor="end" {FONT}>'
                       f'{escape(threshold_label)}</text>')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="4,3"' if s.dashed else ""
        for seg in _segments(s.points):
            pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in seg)
            out.append(f'<polyline data-series="{escape(s.name)}" points="{pts}" fill="none" stroke="{color}"'
                       f' stroke-width="1.8"{dash}><title>{escape(s.name)}</title></polyline>')
            if markers or len(seg) == 1:
                out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}"/>'
                           for x, y in seg)
    out.append("</svg>")
    return "".join(out)


def scatter(points: Sequence[tuple[float, float, str]], *, x_range: tuple[float, float], width: int = 720,
            height: int = 180, y_label: str = "", color: str = BLUE, time_axis: bool = True) -> str:
    """Dots (x, y, tooltip) on the same axes as ``line_chart``."""
    ser = [Series("points", [(x, y) for x, y, _ in points], color)]
    svg = line_chart(ser, x_range=x_range, width=width, height=height, y_label=y_label,
                     time_axis=time_axis, css_class="scatter", markers=True)
    return svg.replace("<polyline", '<polyline visibility="hidden"', 1) if points else svg


def legend(series: Sequence[Series]) -> str:
    """An HTML legend for ``line_chart`` series."""
    items = []
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        items.append(f'<span class="legend-item"><span class="swatch" style="background:{color}"></span>'
                     f'{escape(s.name)}</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    segs: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    for x, y in points:
        if y is None or (isinstance(y, float) and not math.isfinite(y)):
            if cur:
                segs.append(cur)
            cur = []
        else:
            cur.append((x, y))
    if cur:
        segs.append(cur)
    return segs
