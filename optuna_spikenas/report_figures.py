"""The comparison report's figures, one style per sampler so that every line stays visible.

Each sampler (in the order the runs give them) has a colour, a dash pattern and a marker of its
own; the earlier samplers' lines and markers are wider, and every min..max band is drawn under
every line, so that curves that coincide (e.g. NSGA-II's first generation and random search with
the same seed) show both. A sampler whose search the budget cut short is marked "[cut short]" in
the legends.

1. best feasible value against trial number, mean over seeds and min..max band;
2. the same against wall time, each seed's step curve resampled on a common time grid;
3. the feasible fraction per sampler (mean, min..max error bar);
4. the Pareto fronts value/memory and, when energies exist, value/energy.

Curves: a seed has no value before its first feasible trial; the mean and band are over the
seeds that find one, drawn from the point where all of them have (so the mean of best-so-far
values only rises); a seed that stopped earlier than its sampler's longest seed keeps its final
best.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from optuna_spikenas.comparison_runs import Curve, Run, by_sampler

PALETTE = qualitative.Plotly + qualitative.D3
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down")
MARKERS_PER_LINE = 12
TIME_GRID_POINTS = 200


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates, the first coordinate
    maximized and the second minimized; equal points do not dominate each other."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best_before = -math.inf  # best first coordinate among strictly smaller second coordinates
    group_b, group_best = None, -math.inf
    for i in order:
        a, b = points[i]
        if b != group_b:
            best_before = max(best_before, group_best)
            group_b, group_best = b, a  # sorted: the group's first point has its largest a
        if a > best_before and a >= group_best:
            front.append(i)
    return sorted(front)


def _hold(curve: Curve, length: int) -> Curve:
    """``curve`` extended to ``length`` with its last value."""
    return curve + [curve[-1] if curve else None] * (length - len(curve))


def _stats(curves: Sequence[Curve]) -> tuple[Curve, Curve, Curve]:
    """Mean, min and max at each index over the curves that ever have a value (seeds with a
    feasible trial), from the index where all of them have one: a mean over a changing set of
    seeds could fall when a seed joins with a low value, though each seed's best only rises."""
    ever = [c for c in curves if any(v is not None for v in c)]
    length = len(curves[0]) if curves else 0
    columns = [list(column) for column in zip(*ever, strict=True)] if ever else [[]] * length
    complete = [c if all(v is not None for v in c) else [] for c in columns]
    mean = [statistics.fmean(c) if c else None for c in complete]
    return mean, [min(c, default=None) for c in complete], [max(c, default=None) for c in complete]


def _steps(x: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    """The corners of the step line through (x, y), held until the next x."""
    xs, ys = [x[0]], [y[0]]
    for i in range(1, len(x)):
        xs += [x[i], x[i]]
        ys += [y[i - 1], y[i]]
    return xs, ys


def _rgba(color: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


@dataclass(frozen=True)
class TraceStyle:
    """How one sampler is drawn in every figure."""

    color: str
    dash: str
    symbol: str
    width: float  # the earlier samplers' lines wider: a later line on top leaves them visible
    marker_size: float

    def line(self) -> dict[str, Any]:
        return {"color": self.color, "dash": self.dash, "width": self.width}

    def marker(self) -> dict[str, Any]:
        return {"color": self.color, "symbol": self.symbol, "size": self.marker_size}


def trace_styles(samplers: Sequence[str]) -> dict[str, TraceStyle]:
    """One style per sampler: colour, dash and marker all differ between samplers (up to
    six of them), and lines and markers get thinner in drawing order."""
    last = len(samplers) - 1
    return {
        s: TraceStyle(
            color=PALETTE[i % len(PALETTE)],
            dash=DASHES[i % len(DASHES)],
            symbol=SYMBOLS[i % len(SYMBOLS)],
            width=2.0 + 1.25 * min(last - i, 3),
            marker_size=6.0 + 2.0 * min(last - i, 3),
        )
        for i, s in enumerate(samplers)
    }


def _legend_name(sampler: str, runs: Sequence[Run]) -> str:
    """``sampler``, marked when the budget cut its search short on any seed."""
    cut = sum(r.cut_short for r in runs)
    if not cut:
        return sampler
    return f"{sampler} [cut short{'' if cut == len(runs) else f' on {cut} of {len(runs)} seeds'}]"


def _curve_traces(
    x: Sequence[float], curves: Sequence[Curve], runs: Sequence[Run], style: TraceStyle
) -> tuple[list[go.Scatter], go.Scatter]:
    """The min..max band over seeds (a filled polygon; none without a feasible trial) and
    the mean over seeds as a step line."""
    mean, low, high = _stats(curves)
    kept = [i for i, m in enumerate(mean) if m is not None]
    name = runs[0].sampler
    legend = _legend_name(name, runs)
    line = style.line() | {"shape": "hv"}
    marker = style.marker() | {"maxdisplayed": MARKERS_PER_LINE}
    common = {"mode": "lines+markers", "line": line, "marker": marker, "legendgroup": name}
    if not kept:  # no seed found a feasible trial: nothing to draw, the legend says so
        return [], go.Scatter(x=[None], y=[None], name=f"{legend}: no feasible trial", **common)
    xs = [x[i] for i in kept]
    highs = [v for i in kept if (v := high[i]) is not None]  # all of them: kept have a mean
    lows = [v for i in kept if (v := low[i]) is not None]
    (ux, uy), (lx, ly) = _steps(xs, highs), _steps(xs, lows)
    band = go.Scatter(x=ux + lx[::-1], y=uy + ly[::-1], mode="lines", fill="toself",
                      fillcolor=_rgba(style.color, 0.15), line={"width": 0}, hoverinfo="skip",
                      legendgroup=name, showlegend=False)  # fmt: skip
    label = f"{legend} (mean; band: min..max of {len(curves)} seeds)"
    ys = [mean[i] for i in kept]
    return [band], go.Scatter(x=xs, y=ys, name=label, **common)


def _add_curves(fig: go.Figure, traces: Sequence[tuple[list[go.Scatter], go.Scatter]]) -> None:
    """Every band first, then every line: no band veils another sampler's line."""
    for bands, _ in traces:
        fig.add_traces(bands)
    fig.add_traces([line for _, line in traces])


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    legend = {"orientation": "h", "y": -0.18}
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      legend=legend, margin={"t": 60, "b": 110})  # fmt: skip
    return fig


def _best_by_trial(
    groups: Mapping[str, list[Run]], styles: Mapping[str, TraceStyle], value_name: str
) -> go.Figure:
    fig = go.Figure()
    traces = []
    for sampler, runs in groups.items():
        length = max(len(r.trials) for r in runs)
        curves = [_hold(r.best_so_far(), length) for r in runs]
        traces.append(_curve_traces(list(range(length)), curves, runs, styles[sampler]))
    _add_curves(fig, traces)
    return _layout(fig, f"Best feasible {value_name} by trial", "trial number", value_name)


def _best_by_time(
    groups: Mapping[str, list[Run]], styles: Mapping[str, TraceStyle], value_name: str
) -> go.Figure:
    fig = go.Figure()
    end = max(r.seconds for runs in groups.values() for r in runs)
    grid = np.linspace(0.0, end, TIME_GRID_POINTS) if end > 0 else np.zeros(1)
    traces = []
    for sampler, runs in groups.items():
        mine = [float(s) for s in grid if s <= max(r.seconds for r in runs)]
        curves = [[r.best_at(s) for s in mine] for r in runs]
        traces.append(_curve_traces(mine, curves, runs, styles[sampler]))
    _add_curves(fig, traces)
    return _layout(fig, f"Best feasible {value_name} by wall time", "wall time (s)", value_name)


def _feasible_fraction(
    groups: Mapping[str, list[Run]], styles: Mapping[str, TraceStyle]
) -> go.Figure:
    names = list(groups)
    fractions = [[r.feasible_fraction for r in groups[s]] for s in names]
    mean = [statistics.fmean(f) for f in fractions]
    pairs = list(zip(fractions, mean, strict=True))
    error = {"type": "data", "symmetric": False, "array": [max(f) - m for f, m in pairs],
             "arrayminus": [m - min(f) for f, m in pairs]}  # fmt: skip
    labels = [_legend_name(s, groups[s]) for s in names]
    bar = go.Bar(x=labels, y=mean, marker_color=[styles[s].color for s in names], error_y=error)
    fig = go.Figure(bar)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    title = "Feasible fraction of finished trials (mean; bar: min..max over seeds)"
    return _layout(fig, title, "sampler", "feasible fraction")


def _pareto_traces(
    runs: Sequence[Run], key: str, label: str, value_name: str, style: TraceStyle, legend: bool
) -> list[go.Scatter]:
    """Every feasible trial of ``runs`` (faint) and their pooled front on cost ``key``."""
    pts = [(r, t) for r in runs for t in r.trials if t.feasible and getattr(t, key) is not None]
    xs = [getattr(t, key) for _, t in pts]
    ys = [t.value for _, t in pts if t.value is not None]  # every feasible trial has one
    text = [f"{r.study_name} trial {t.number}<br>{t.architecture}" for r, t in pts]
    hover = f"%{{text}}<br>{label} %{{x:.4g}}<br>{value_name} %{{y:.4g}}<extra></extra>"
    front = sorted(pareto_front(list(zip(ys, xs, strict=True))), key=lambda i: xs[i])
    name, shown = runs[0].sampler, _legend_name(runs[0].sampler, runs)
    common = {"legendgroup": name, "hovertemplate": hover, "showlegend": legend}
    trials = go.Scatter(x=xs, y=ys, text=text, mode="markers", opacity=0.25,
                        name=f"{shown} trials", marker=style.marker(), **common)  # fmt: skip
    line = go.Scatter(x=[xs[i] for i in front], y=[ys[i] for i in front], mode="lines+markers",
                      text=[text[i] for i in front], line=style.line() | {"shape": "hv"},
                      marker=style.marker(), name=f"{shown} Pareto front (all seeds)",
                      **common)  # fmt: skip
    return [trials, line]


def _pareto(
    groups: Mapping[str, list[Run]], styles: Mapping[str, TraceStyle], value_name: str
) -> go.Figure:
    """Value against memory and, when any feasible trial has one, against energy."""
    axes = [("memory_megabytes", "memory (MB)")]
    runs = [r for rs in groups.values() for r in rs]
    if any(t.energy_uj is not None for r in runs for t in r.trials if t.feasible):
        axes.append(("energy_uj", "energy (µJ)"))
    titles = [f"{value_name} vs {label}" for _, label in axes]
    fig = make_subplots(rows=1, cols=len(axes), subplot_titles=titles)
    for col, (key, label) in enumerate(axes, start=1):
        traces = [
            _pareto_traces(mine, key, label, value_name, styles[sampler], col == 1)
            for sampler, mine in groups.items()
        ]
        # every sampler's faint trials first, then every front on top of them
        fig.add_traces([t for pair in traces for t in pair[:1]], rows=1, cols=col)
        fig.add_traces([t for pair in traces for t in pair[1:]], rows=1, cols=col)
        fig.update_xaxes(title_text=label, row=1, col=col)
        fig.update_yaxes(title_text=value_name, row=1, col=col)
    title = f"Pareto fronts: {value_name} (maximized) against cost (minimized)"
    return _layout(fig, title, axes[0][1], value_name).update_layout(margin={"t": 90})


def comparison_figures(runs: Sequence[Run], value_name: str) -> dict[str, go.Figure]:
    """The report's figures by name: best by trial, best by wall time, feasible fraction,
    Pareto fronts."""
    groups = by_sampler(runs)
    styles = trace_styles(list(groups))
    return {
        "best_by_trial": _best_by_trial(groups, styles, value_name),
        "best_by_time": _best_by_time(groups, styles, value_name),
        "feasible_fraction": _feasible_fraction(groups, styles),
        "pareto": _pareto(groups, styles, value_name),
    }
