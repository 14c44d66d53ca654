"""Charts drawn on the server as SVG: no script, nothing for the CSP to allow,
and they print. Each function returns markup safe to embed (labels escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

PALETTE = ("#2f6fed", "#12a150", "#e8890c", "#8e44ad", "#d6336c", "#0b8a8a", "#6c757d")


def _num(value: float | Decimal) -> float:
    return float(value or 0)


def _short(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}".replace(".0", "")
    return f"{value:.0f}"


def hbars(items: Sequence[tuple[str, float | Decimal]], *, width: int = 640,
          title: str = "") -> Markup:
    """Horizontal bars, one per (label, value): the funnel's shape."""
    row, label_w = 34, 130
    height = row * len(items) + 10
    top = max((_num(v) for _, v in items), default=0) or 1
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}">']
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        w = (width - label_w - 70) * _num(value) / top
        parts.append(f'<text x="{label_w - 8}" y="{y + 21}" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 10}" rx="3" '
                     f'fill="{PALETTE[0]}"/><text x="{label_w + w + 6:.1f}" y="{y + 21}">'
                     f'{_short(_num(value))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every label is escaped above)


def columns(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | Decimal]]], *,
            width: int = 720, height: int = 260, title: str = "") -> Markup:
    """Stacked columns: one column per label, one colour per series, with a legend."""
    left, bottom, top_pad = 48, 28, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    sums = [sum(_num(s[1][i]) for s in series) for i in range(len(labels))]
    top = max(sums, default=0) or 1
    step = plot_w / max(len(labels), 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 22 * ((len(series) + 3) // 4)}" '
             f'role="img" aria-label="{escape(title)}">']
    for tick in range(5):
        y = top_pad + plot_h * (1 - tick / 4)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{_short(top * tick / 4)}</text>')
    for i, label in enumerate(labels):
        x, base = left + i * step + step * 0.15, float(top_pad + plot_h)
        for s, (_name, values) in enumerate(series):
            h = plot_h * _num(values[i]) / top
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{step * 0.7:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + step * 0.35:.1f}" y="{height - 8}" text-anchor="middle">'
                     f'{escape(label[-5:])}</text>')
    for s, (name, _values) in enumerate(series):
        lx, ly = left + (s % 4) * 170, height + 14 + 22 * (s // 4)
        parts.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" '
                     f'fill="{PALETTE[s % len(PALETTE)]}"/><text x="{lx + 18}" y="{ly}">'
                     f'{escape(name[:22])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every label is escaped above)


def lines(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | Decimal]]], *,
          width: int = 720, height: int = 240, title: str = "") -> Markup:
    """Lines over the same labels (a person against their baseline and their peers)."""
    left, bottom, top_pad = 48, 28, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    top = max((_num(v) for _, values in series for v in values), default=0) or 1
    step = plot_w / max(len(labels) - 1, 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 22}" role="img" '
             f'aria-label="{escape(title)}">']
    for tick in range(5):
        y = top_pad + plot_h * (1 - tick / 4)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(top * tick / 4)}</text>')
    for s, (_name, values) in enumerate(series):
        points = " ".join(f"{left + i * step:.1f},{top_pad + plot_h * (1 - _num(v) / top):.1f}"
                          for i, v in enumerate(values))
        dash = ' stroke-dasharray="5 4"' if s else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[s % len(PALETTE)]}" '
                     f'stroke-width="{2.5 if s == 0 else 1.5}"{dash}/>')
    for i, label in enumerate(labels):
        if i % max(1, len(labels) // 6) == 0:
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 8}" text-anchor="middle">'
                         f'{escape(label[-5:])}</text>')
    for s, (name, _values) in enumerate(series):
        lx = left + s * 200
        parts.append(f'<rect x="{lx}" y="{height + 4}" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
                     f'<text x="{lx + 18}" y="{height + 14}">{escape(name[:26])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every label is escaped above)
