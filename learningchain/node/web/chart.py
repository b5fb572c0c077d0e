"""The index page's chart: the global metric per round on this node's held-out
set as inline SVG, drawn here in Python (the page's script only swaps in a
newer rendering, :mod:`learningchain.node.web.explorer`).

Round 0 is G0, the genesis model; baselines are horizontal lines
(``line.baseline[data-name]``: ``g0``, ``local-only``, ``centralized``). The
y-axis is fixed by default ([0, 1] for accuracy, [0, max] for an error such as
RMSE), so one point of noise looks like one point; ``fixed=False`` scales it to
the rounds' values (baselines outside that range are drawn at its edge and
say so). Round ticks are integers. A value that is not finite (a diverged
model's RMSE: inf or NaN) has no place on an axis: such rounds and baselines
are left out, counted in ``data-left-out`` and named in the title.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

CHART_W, CHART_H = 1100, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 230, 30, 46
#: the chart shows the newest rounds only (a page must not grow with the chain).
CHART_ROUNDS = 500
#: at most this many round ticks.
MAX_TICKS = 12


@dataclass(frozen=True)
class Baseline:
    name: str  # g0 | local-only | centralized
    value: float


def axis_range(ys: list[float]) -> tuple[float, float]:
    """The data-scaled y-axis: the data's range plus 5 % on each side."""
    lo, hi = min(ys), max(ys)
    margin = (hi - lo) * 0.05 or max(abs(hi) * 0.01, 1e-3)
    return lo - margin, hi + margin


def fixed_range(label: str, values: list[float]) -> tuple[float, float]:
    """[0, 1] for accuracy-like metrics, else [0, the largest value + 5 %]."""
    top = max(values, default=1.0)
    if label == "accuracy" or top <= 1.0:
        return 0.0, 1.0
    return 0.0, top * 1.05


def round_ticks(x0: int, x1: int) -> list[int]:
    """Integer ticks from x0 to x1, a step of 1, 2, 5, 10, 20, 50, ... rounds."""
    span, step, k = max(1, x1 - x0), 1, 0
    while span // step > MAX_TICKS:
        k += 1
        step = (1, 2, 5)[k % 3] * 10 ** (k // 3)
    first = -(-x0 // step) * step
    return list(range(first, x1 + 1, step))


def _spread(ys: list[float], gap: float = 14.0) -> list[float]:
    """Label positions at least ``gap`` apart (in the order given, top first)."""
    out: list[float] = []
    for y in ys:
        out.append(max(y, out[-1] + gap) if out else y)
    return out


def metric_chart(points: list[tuple[int, float]], label: str, baselines: list[Baseline] = (),
                 fixed: bool = True) -> Markup:
    """``svg#chart`` of (round, value) points, G0 at round 0 if it is a baseline;
    points and baselines whose value is not finite are left out (and said so)."""
    points = sorted(p for p in points if p[0] >= 1)
    left_out = [r for r, y in points if not math.isfinite(y)]
    points = [p for p in points if math.isfinite(p[1])]
    dropped = [b.name for b in baselines if not math.isfinite(b.value)]
    baselines = [b for b in baselines if math.isfinite(b.value)]
    g0 = next((b.value for b in baselines if b.name == "g0"), None)
    plotted = ([(0, g0)] if g0 is not None else []) + points
    axis = "fixed" if fixed else "data"
    everything = [y for _, y in plotted] + [b.value for b in baselines]
    if not plotted:
        y0, y1 = fixed_range(label, [0.0])
    elif fixed:
        y0, y1 = fixed_range(label, everything)
    else:
        y0, y1 = axis_range([y for _, y in points] or everything)
    missing = "; ".join(
        ([f"{len(left_out)} round(s) not drawn, their {label} not finite: "
          f"{', '.join(map(str, left_out[:5]))}{' ...' if len(left_out) > 5 else ''}"] if left_out else [])
        + ([f"not finite, not drawn: {', '.join(dropped)}"] if dropped else []))
    head = (f'<svg id="chart" data-rounds="{len(points)}" data-axis="{axis}" data-metric="{escape(label)}" '
            f'data-y-min="{y0:.6g}" data-y-max="{y1:.6g}" data-left-out="{len(left_out) + len(dropped)}" '
            f'viewBox="0 0 {CHART_W} {CHART_H}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" '
            f'aria-label="global {escape(label)} per round">')
    if not plotted:
        empty = "No round has been evaluated yet." if not missing else f"Nothing to draw ({escape(missing)})."
        return Markup(head + f'<text x="{CHART_W / 2}" y="{CHART_H / 2}" text-anchor="middle" class="muted">'
                      f'{empty}</text></svg>')
    x0, x1 = 0, max(1, plotted[-1][0])
    right, bottom = CHART_W - RIGHT, CHART_H - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (right - LEFT)

    def sy(y: float) -> float:
        return bottom - (min(max(y, y0), y1) - y0) / (y1 - y0) * (bottom - TOP)

    parts = [head]
    unit = fixed and (y0, y1) == (0.0, 1.0)
    for k in range(6 if unit else 5):
        v = y0 + (y1 - y0) * k / (5 if unit else 4)
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">'
                     f'{format(v, ".1f" if unit else ".4g")}</text>')
    for x in round_ticks(x0, x1):
        parts.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{bottom}" y2="{bottom + 4}" class="tick"/>'
                     f'<text x="{sx(x):.1f}" y="{bottom + 18}" text-anchor="middle" class="tick">{x}</text>')
    order = sorted(baselines, key=lambda b: -b.value)  # labels top to bottom
    for b, ly in zip(order, _spread([sy(b.value) + 4 for b in order])):
        off = "" if y0 <= b.value <= y1 else (" (above the axis)" if b.value > y1 else " (below the axis)")
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{sy(b.value):.1f}" y2="{sy(b.value):.1f}" '
                     f'class="baseline" data-name="{b.name}" data-value="{b.value:.6g}"/>'
                     f'<text x="{right + 6}" y="{ly:.1f}" class="baseline-label" data-name="{b.name}">'
                     f'{b.name} {b.value:.4f}{off}</text>')
    g0_off = g0 is not None and not y0 <= g0 <= y1  # the data-scaled axis: G0 drawn at its edge
    poly = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in plotted if not (x == 0 and g0_off))
    parts.append(f'<polyline points="{poly}" class="series"/>')
    for x, y in plotted:
        cls = ("point g0 off-axis" if g0_off else "point g0") if x == 0 else "point"
        what = "G0 (genesis model)" if x == 0 else f"round {x}"
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{4 if x == 0 else 3}" class="{cls}" '
                     f'data-round="{x}" data-value="{y:.6g}"><title>{what}: {y:.4f}</title></circle>')
    if g0 is not None:
        text = f"G0 {g0:.4f}, {'below' if g0 < y0 else 'above'} the axis" if g0_off else "G0"
        parts.append(f'<text x="{sx(0) + 6:.1f}" y="{sy(g0) + (-6 if g0 <= y1 else 16):.1f}" '
                     f'class="g0-label">{text}</text>')
    scale = "fixed axis" if fixed else "axis scaled to the rounds' values"
    note = f'<tspan class="left-out" data-count="{len(left_out) + len(dropped)}">; {escape(missing)}</tspan>' \
        if missing else ""
    parts.append(f'<text x="{(LEFT + right) / 2}" y="{CHART_H - 8}" text-anchor="middle">round</text>'
                 f'<text x="{(LEFT + right) / 2}" y="16" text-anchor="middle">global {escape(label)} on this '
                 f"node's held-out set ({scale}){note}</text></svg>")
    return Markup("".join(parts))
