"""Server-rendered SVG charts for the dashboard: horizontal bars, no script, no library.

Role: turn a few labelled numbers into an accessible ``<svg>`` (``role="img"``,
a ``<title>``, each bar's value also written as text) that the page embeds
as is. Every label is escaped. Input: ``(label, value)`` pairs, or a
``CostReport``. Output: ``markupsafe.Markup``. Callers:
``llmops.api.dashboard.pages`` (experiment weights, costs).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from llmops.api.resources import CostReport, GpuHours

WIDTH = 640
ROW = 28
LABEL = 220
COLOURS = ("#1f5fa8", "#b3541e", "#2e7d32", "#6a3d9a", "#8c6d1f", "#00707a")


def number(value: float) -> str:
    """A bar's value as text: whole numbers with separators, small ones to 3 digits."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3g}"


def bars(title: str, rows: Sequence[tuple[str, float]], unit: str = "") -> Markup:
    """One bar per row, scaled to the largest value; an empty chart says so."""
    if not rows:
        return Markup('<p class="empty">{}: no data in this window.</p>').format(title)
    top = max(value for _, value in rows) or 1.0
    span = WIDTH - LABEL - 90
    height = ROW * len(rows) + 8
    parts = [Markup('<svg class="chart" viewBox="0 0 {w} {h}" width="100%" role="img" '
                    'aria-label="{t}"><title>{t}</title>').format(w=WIDTH, h=height, t=title)]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * ROW
        length = max(1.0, span * value / top) if value > 0 else 0.0
        parts.append(Markup(
            '<text x="{lx}" y="{ty}" text-anchor="end">{label}</text>'
            '<rect x="{x}" y="{y}" width="{len:.1f}" height="{bh}" fill="{c}"/>'
            '<text x="{vx:.1f}" y="{ty}">{value}{unit}</text>').format(
                lx=LABEL - 8, ty=y + 17, label=label, x=LABEL, y=y, len=length, bh=ROW - 8,
                c=COLOURS[i % len(COLOURS)], vx=LABEL + length + 6,
                value=number(value), unit=unit))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def weights_bar(variants: Sequence[tuple[str, int]]) -> Markup:
    """The variants' traffic shares as one stacked bar with a legend (percent of 100)."""
    total = sum(weight for _, weight in variants) or 1
    parts = [Markup('<svg class="weights" viewBox="0 0 {w} 36" width="100%" role="img" '
                    'aria-label="traffic per variant"><title>traffic per variant</title>')
             .format(w=WIDTH)]
    x = 0.0
    for i, (name, weight) in enumerate(variants):
        width = WIDTH * weight / total
        if width > 0:
            parts.append(Markup('<rect x="{x:.1f}" y="0" width="{w:.1f}" height="36" '
                                'fill="{c}"><title>{n}: {p}%</title></rect>').format(
                x=x, w=width, c=COLOURS[i % len(COLOURS)], n=name, p=weight))
        x += width
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _label(row: GpuHours, field: str) -> str:
    if field != "endpoint":
        return str(getattr(row, field) or "")
    if row.training_job:
        return f"{row.environment}/{row.training_job} (training)"
    return f"{row.environment}/{row.endpoint}"


def cost_charts(report: CostReport) -> dict[str, Markup]:
    """GPU-hour and token bars per team, environment and endpoint of one report."""
    groups = {"team": report.by_team, "environment": report.by_environment,
              "endpoint": report.by_endpoint}
    charts: dict[str, Markup] = {}
    for field, rows in groups.items():
        charts[f"gpu_{field}"] = bars(f"GPU hours per {field}, last {report.window}",
                                      [(_label(r, field), r.gpu_hours) for r in rows])
        charts[f"tokens_{field}"] = bars(
            f"Tokens (prompt + completion) per {field}, last {report.window}",
            [(_label(r, field), float(r.prompt_tokens + r.completion_tokens)) for r in rows
             if r.prompt_tokens + r.completion_tokens > 0])
    return charts
