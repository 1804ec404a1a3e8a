"""Inline SVG charts for the HTML pages the app writes (evaluation reports, run comparisons).

One renderer: ``line_plot`` (lines with optional markers and dashes, nice ticks, a
logarithmic y axis when the values span more than 3x, an optional legend) and
``bar_chart``. Presentation attributes, not CSS, so any SVG viewer draws them alike.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np

#: colours for series that do not bring their own
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


# SVG presentation attributes (not CSS classes), so any SVG viewer draws them alike
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'
_TITLE = f'{_FONT} font-size="13" font-weight="600" fill="#1d2330"'
_LABEL = f'{_FONT} font-size="12" fill="#334"'
_TICK = f'{_FONT} font-size="11" fill="#556"'
_GRID = 'stroke="#e6e9ef" stroke-width="1"'


@dataclass(frozen=True)
class _Axes:
    """Where the data lands: the plot area in pixels (left, top, width, height) and the
    data range it shows (on a logarithmic axis y0 and y1 are log10 values)."""

    left: int
    top: int
    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    logy: bool

    def ty(self, v):
        """A y value on the axis' scale: log10 on a logarithmic axis."""
        return np.log10(v) if self.logy else v

    def px(self, v):
        return self.left + (v - self.x0) / (self.x1 - self.x0) * self.width

    def py(self, v):
        return self.top + self.height - (self.ty(v) - self.y0) / (self.y1 - self.y0) * self.height


def _as_arrays(series: list[dict]) -> list[dict]:
    """Each series with x and y as flat float arrays (None -> NaN) and a colour."""
    return [{**s, "x": np.asarray(s["x"], dtype=float).reshape(-1),
             "y": np.asarray([np.nan if v is None else v for v in s["y"]], dtype=float).reshape(-1),
             "color": s.get("color") or PALETTE[i % len(PALETTE)]} for i, s in enumerate(series)]


def _axes(xs: np.ndarray, ys: np.ndarray, log_y: bool | None, left: int, top: int, width: int,
          height: int) -> _Axes:
    """The axes that show every finite point (xs, ys): a 5% margin above and below, and
    a logarithmic y axis as ``line_plot`` documents."""
    logy = bool((ys > 0).all() and ys.max() / ys.min() > 3) if log_y is None else bool(log_y and (ys > 0).any())
    ty = np.log10 if logy else (lambda v: v)
    x0, x1 = float(xs.min()), float(xs.max())
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = float(ty(ys).min()), float(ty(ys).max())
    pad = (y1 - y0) * 0.05 or max(abs(y0) * 0.05, 1e-3)
    return _Axes(left, top, width, height, x0, x1, y0 - pad, y1 + pad, logy)


def _log_ticks(y0: float, y1: float) -> list[float]:
    """Ticks of a logarithmic axis from 10^y0 to 10^y1: decades, then 1-2-5, then every
    digit, whichever first gives four; nice ticks of the exponent when none gives two."""
    for mults in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        yticks = [10 ** e * m for e in range(math.floor(y0) - 1, math.ceil(y1) + 1) for m in mults]
        yticks = [t for t in yticks if y0 <= math.log10(t) <= y1]
        if len(yticks) >= 4:
            break
    if len(yticks) < 2:
        yticks = [10 ** v for v in nice_ticks(y0, y1, 4)]
    return yticks


def _grid(a: _Axes, xlabel: str, ylabel: str, total_height: int) -> list[str]:
    """Grid lines with their tick labels, and the two axis labels."""
    ml, mt, pw, ph = a.left, a.top, a.width, a.height
    out = []
    for t in nice_ticks(a.x0, a.x1):
        X = a.px(t)
        out.append(f'<line x1="{X:.1f}" y1="{mt}" x2="{X:.1f}" y2="{mt + ph}" {_GRID}/>')
        out.append(f'<text x="{X:.1f}" y="{mt + ph + 16}" text-anchor="middle" {_TICK}>{t:g}</text>')
    for t in _log_ticks(a.y0, a.y1) if a.logy else nice_ticks(a.y0, a.y1, 5):
        Y = a.py(t)
        out.append(f'<line x1="{ml}" y1="{Y:.1f}" x2="{ml + pw}" y2="{Y:.1f}" {_GRID}/>')
        out.append(f'<text x="{ml - 6}" y="{Y + 4:.1f}" text-anchor="end" {_TICK}>{t:.3g}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{total_height - 8}" text-anchor="middle" {_LABEL}>'
               f'{html.escape(xlabel)}</text>')
    out.append(
        f'<text x="14" y="{mt + ph / 2}" text-anchor="middle" {_LABEL} '
        f'transform="rotate(-90 14 {mt + ph / 2})">{html.escape(ylabel)}{" (log scale)" if a.logy else ""}</text>'
    )
    return out


def _lines(series: list[dict], a: _Axes) -> list[str]:
    """One path per series through its finite points (positive ones on a log axis), with
    its markers; a series with no such point draws nothing."""
    out = []
    for s in series:
        ok = np.isfinite(s["x"]) & np.isfinite(s["y"]) & ((s["y"] > 0) if a.logy else True)
        x, y = s["x"][ok], s["y"][ok]
        if x.size == 0:
            continue
        d = " ".join(f"{'M' if i == 0 else 'L'}{a.px(p):.1f},{a.py(q):.1f}" for i, (p, q) in enumerate(zip(x, y)))
        dash = ' stroke-dasharray="6 3"' if s.get("dash") else ""
        out.append(
            f'<path d="{d}" fill="none" stroke="{s["color"]}" stroke-width="{s.get("width", 1.6)}"{dash}><title>{html.escape(s["name"])}</title></path>'
        )
        if s.get("markers"):
            for p, q in zip(x, y):
                out.append(f'<circle cx="{a.px(p):.1f}" cy="{a.py(q):.1f}" r="2.6" fill="{s["color"]}"/>')
    return out


def _legend(series: list[dict], a: _Axes) -> list[str]:
    """A sample of each series' line and its name, one per row in the top right corner."""
    out = []
    for i, s in enumerate(series):
        ly = a.top + 16 + 16 * i
        dash = ' stroke-dasharray="6 3"' if s.get("dash") else ""
        out.append(f'<line x1="{a.left + a.width - 150}" x2="{a.left + a.width - 130}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{s["color"]}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{a.left + a.width - 125}" y="{ly}" {_TICK}>{html.escape(s["name"])}</text>')
    return out


def line_plot(series: list[dict], title: str = "", xlabel: str = "", *, ylabel: str = "loss", width: int = 560,
              height: int = 340, log_y: bool | None = None, legend: bool = False) -> str:
    """An inline SVG line plot. series: [{"name", "x", "y", optional "color", "dash", "markers",
    "width"}] (x, y: sequences; non-finite points are skipped). log_y None: logarithmic when
    every value is positive and they span more than 3x. legend: name the series in a corner."""
    series = _as_arrays(series)
    ml, mr, mt, mb = 64, 16, 30 if title else 14, 44
    pw, ph = width - ml - mr, height - mt - mb
    xs = np.concatenate([s["x"][np.isfinite(s["x"]) & np.isfinite(s["y"])] for s in series]) if series else np.array([])
    ys = np.concatenate([s["y"][np.isfinite(s["x"]) & np.isfinite(s["y"])] for s in series]) if series else np.array([])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'class="plot" role="img" aria-label="{html.escape(title)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{ml + pw / 2}" y="18" text-anchor="middle" {_TITLE}>{html.escape(title)}</text>',
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#9aa3b2"/>',
    ]
    if xs.size == 0:
        out.append(f'<text x="{ml + pw / 2}" y="{mt + ph / 2}" text-anchor="middle" {_LABEL}>no data</text></svg>')
        return "\n".join(out)
    a = _axes(xs, ys, log_y, ml, mt, pw, ph)
    out += _grid(a, xlabel, ylabel, height)
    out += _lines(series, a)
    if legend:
        out += _legend(series, a)
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(values: list[float], labels: list[str] | None = None, *, width: int = 360, height: int = 180,
              color: str = "#4c72b0") -> str:
    """An inline SVG bar chart: one bar per value, its label below and its share of the
    total above (the predicted-label histogram: counts of the digits 0-9)."""
    labels = labels if labels is not None else [str(i) for i in range(len(values))]
    total = sum(values) or 1
    top = max(values, default=0) or 1
    bw = (width - 40) / max(1, len(values))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" class="plot" role="img">']
    for i, (v, label) in enumerate(zip(values, labels)):
        h = (height - 40) * v / top
        x = 20 + i * bw
        out.append(f'<rect x="{x + 2:.1f}" y="{height - 20 - h:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 6}" text-anchor="middle" {_TICK}>{html.escape(label)}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 24 - h:.1f}" text-anchor="middle" {_TICK}>'
                   f'{v / total:.0%}</text>')
    out.append("</svg>")
    return "\n".join(out)


