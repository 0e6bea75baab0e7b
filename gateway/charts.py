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


# ------------------------------------------------------------------------------------ Insights charts


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        return (max(lo - 1, 0.0) if lo >= 0 else lo - 1), hi + 1
    pad = (hi - lo) * 0.05
    # Rates, latencies and lags are never negative: padding must not invent negative axis values.
    return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def scatter_plot(points: Sequence[tuple[float, float]], x_label: str, y_label: str, *, width: int = 300,
                 height: int = 210) -> str:
    """Dots with both axes labelled (quantity and unit), min/max ticks and a least-squares line."""
    left, bottom, top, right = 52, 34, 10, 10
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = _span(xs)
    y0, y1 = _span(ys)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    base, mid_y = height - bottom, (top + height - bottom) / 2
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5"/>' for x, y in points)
    fit = _fit(xs, ys)
    line = "" if fit is None else (
        f'<line class="fit" x1="{sx(x0):.1f}" y1="{sy(fit[0] + fit[1] * x0):.1f}" x2="{sx(x1):.1f}" '
        f'y2="{sy(fit[0] + fit[1] * x1):.1f}" stroke="#b3261e" stroke-width="1.5"/>')
    return (
        f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(x_label)} vs {escape(y_label)}">'
        f'<g stroke="#8895a7"><line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}"/></g>'
        f'<g fill="#2f6fb3" fill-opacity="0.6">{dots}</g>{line}'
        f'<g font-size="9" fill="#5a6675"><text x="{left}" y="{base + 11}">{_num(x0)}</text>'
        f'<text x="{width - right}" y="{base + 11}" text-anchor="end">{_num(x1)}</text>'
        f'<text x="{left - 3}" y="{base}" text-anchor="end">{_num(y0)}</text>'
        f'<text x="{left - 3}" y="{top + 8}" text-anchor="end">{_num(y1)}</text></g>'
        f'<g font-size="10" fill="#1f2733">'
        f'<text class="x-label" x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
        f'{escape(x_label)}</text>'
        f'<text class="y-label" x="12" y="{mid_y}" text-anchor="middle" transform="rotate(-90 12 {mid_y})">'
        f'{escape(y_label)}</text></g></svg>')


def before_after_bars(groups: Sequence[tuple[str, float, float]], *, unit: str = "%", width: int = 300,
                      height: int = 190) -> str:
    """Grouped before/after bars (grey = before, blue = after), values in ``unit`` above the bars."""
    left, bottom, top = 10, 34, 16
    top_value = max([max(b, a) for _, b, a in groups] + [1e-9])
    slot = (width - 2 * left) / max(len(groups), 1)
    bar_w = slot / 3
    parts = [f'<text class="y-label" x="{left}" y="10" font-size="9" fill="#5a6675">values in '
             f'{escape(unit)}</text>']
    for i, (label, before, after) in enumerate(groups):
        x = left + i * slot + slot / 6
        pair = ((before, "#9aa5b4", "before"), (after, "#2f6fb3", "after"))
        for j, (value, colour, cls) in enumerate(pair):
            h = value / top_value * (height - top - bottom)
            bx, y = x + j * bar_w, height - bottom - h
            parts.append(f'<rect class="{cls}" x="{bx:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"/><text x="{bx + bar_w / 2 - 1:.1f}" '
                         f'y="{y - 3:.1f}" font-size="9" text-anchor="middle">{value:.1f}</text>')
        parts.append(f'<text class="x-label" x="{x + bar_w:.1f}" y="{height - bottom + 13}" font-size="10" '
                     f'text-anchor="middle">{escape(label)}</text>')
    legend = (f'<g font-size="9"><rect x="{left}" y="{height - 12}" width="8" height="8" fill="#9aa5b4"/>'
              f'<text x="{left + 11}" y="{height - 5}">before</text><rect x="{left + 50}" y="{height - 12}" '
              f'width="8" height="8" fill="#2f6fb3"/><text x="{left + 61}" y="{height - 5}">after</text></g>')
    return (f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg" aria-label="before and after">'
            f'{"".join(parts)}{legend}</svg>')
