"""A sampler comparison as one self-contained HTML page, a JSON of its numbers and PNG figures.

Input: one :class:`Run` per (sampler, seed), read from its Optuna study by :func:`load_run`.
The first objective is the value to maximize. A trial is *feasible* when it is COMPLETE, its
``feasible`` user attribute is true and its value is finite; RUNNING/WAITING trials are ignored,
FAIL and PRUNED ones count as finished but not feasible. A trial's time is its
``datetime_complete`` minus the study's earliest ``datetime_start``.

:func:`write_report` draws, with one colour per sampler (in the order the runs give them):

1. best feasible value against trial number, mean over seeds and min..max band;
2. the same against wall time, each seed's step curve resampled on a common time grid;
3. the feasible fraction per sampler (mean, min..max error bar);
4. the Pareto fronts value/memory and, when energies exist, value/energy;
5. a summary table (also in ``report.json`` with each run's best-so-far curve).

Curves: a seed has no value before its first feasible trial, and the mean and band at a point
are over the seeds that have one; a seed that stopped earlier than its sampler's longest seed
keeps its final best. Best values are averaged over the seeds that found a feasible trial.
"""

from __future__ import annotations

import html
import json
import math
import statistics
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from optuna_spikenas import browser

PALETTE = qualitative.Plotly + qualitative.D3
TIME_GRID_POINTS = 200
PNG_SIZE = (1000, 560)
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
Curve = list[float | None]


@dataclass(frozen=True)
class TrialPoint:
    """What the report needs of one finished trial."""

    number: int
    seconds: float
    value: float | None  # None unless feasible
    feasible: bool
    memory_megabytes: float | None
    energy_uj: float | None
    accuracy: float | None
    architecture: str | None
    duplicate: bool


@dataclass(frozen=True)
class Run:
    """One study: a sampler run with one seed; ``trials`` in trial-number order."""

    sampler: str
    seed: int
    study_name: str
    trials: tuple[TrialPoint, ...]

    def best_so_far(self) -> Curve:
        """The best feasible value after each trial (None before the first feasible one)."""
        best: float | None = None
        curve: Curve = []
        for t in self.trials:
            if t.value is not None and (best is None or t.value > best):
                best = t.value
            curve.append(best)
        return curve

    def best_at(self, seconds: float) -> float | None:
        """The best feasible value among the trials finished by ``seconds``."""
        values = [t.value for t in self.trials if t.value is not None and t.seconds <= seconds]
        return max(values, default=None)

    @property
    def best_value(self) -> float | None:
        return max((t.value for t in self.trials if t.value is not None), default=None)

    @property
    def feasible_fraction(self) -> float:
        """Feasible trials over finished trials (0 for a run without any)."""
        return sum(t.feasible for t in self.trials) / len(self.trials) if self.trials else 0.0

    @property
    def seconds(self) -> float:
        return max((t.seconds for t in self.trials), default=0.0)

    @property
    def seconds_to_best(self) -> float | None:
        """Time of the first trial that reached the run's best value."""
        best = self.best_value
        if best is None:
            return None
        return next(t.seconds for t in self.trials if t.value == best)

    @property
    def distinct_architectures(self) -> int:
        """Feasible architectures really evaluated (duplicates reused a result)."""
        return len(
            {
                t.architecture or f"#{t.number}"
                for t in self.trials
                if t.feasible and not t.duplicate
            }
        )


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    pngs: tuple[Path, ...]


def _number(attrs: Mapping[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` present in ``attrs`` as a float, or None."""
    for key in keys:
        if attrs.get(key) is not None:
            return float(attrs[key])
    return None


def _trial_point(trial: FrozenTrial, origin: Any) -> TrialPoint:
    attrs = trial.user_attrs
    value = trial.values[0] if trial.values else None
    feasible = (
        trial.state == TrialState.COMPLETE
        and bool(attrs.get("feasible"))
        and value is not None
        and math.isfinite(value)
    )
    end = trial.datetime_complete or trial.datetime_start
    memory_bits = _number(attrs, "memory_bits")
    architecture = attrs.get("architecture")
    return TrialPoint(
        number=trial.number,
        seconds=(end - origin).total_seconds() if end is not None and origin is not None else 0.0,
        value=float(value) if feasible and value is not None else None,
        feasible=feasible,
        memory_megabytes=None if memory_bits is None else memory_bits / 8e6,
        energy_uj=_number(attrs, "energy_uj", "synops_energy_uj"),
        accuracy=_number(attrs, "val_accuracy", "accuracy"),
        architecture=None if architecture is None else str(architecture),
        duplicate="duplicate_of" in attrs,
    )


def load_run(study: optuna.Study, sampler: str, seed: int) -> Run:
    """``study``'s finished trials (COMPLETE, FAIL, PRUNED) as a :class:`Run`."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    origin = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    points = tuple(_trial_point(t, origin) for t in trials if t.state in FINISHED)
    return Run(sampler, seed, study.study_name, points)


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


def _samplers(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by sampler, in the order the samplers first appear."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.sampler, []).append(run)
    return groups


def _hold(curve: Curve, length: int) -> Curve:
    """``curve`` extended to ``length`` with its last value."""
    return curve + [curve[-1] if curve else None] * (length - len(curve))


def _stats(curves: Sequence[Curve]) -> tuple[Curve, Curve, Curve]:
    """Mean, min and max at each index over the curves that have a value there."""
    columns = [[v for v in column if v is not None] for column in zip(*curves, strict=True)]
    mean = [_mean(c) for c in columns]
    return mean, [min(c, default=None) for c in columns], [max(c, default=None) for c in columns]


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


def _add_curve(
    fig: go.Figure, x: Sequence[float], curves: Sequence[Curve], name: str, color: str
) -> None:
    """Mean over seeds as a step line and the min..max band as a filled polygon."""
    mean, low, high = _stats(curves)
    kept = [i for i, m in enumerate(mean) if m is not None]
    line = {"color": color, "shape": "hv", "width": 2}
    if not kept:  # no seed found a feasible trial: nothing to draw, the legend says so
        fig.add_trace(go.Scatter(x=[None], y=[None], name=f"{name}: no feasible trial", line=line))
        return
    xs = [x[i] for i in kept]
    highs = [v for i in kept if (v := high[i]) is not None]  # all of them: kept have a mean
    lows = [v for i in kept if (v := low[i]) is not None]
    (ux, uy), (lx, ly) = _steps(xs, highs), _steps(xs, lows)
    band = {"mode": "lines", "fill": "toself", "fillcolor": _rgba(color, 0.2), "line": {"width": 0}}
    fig.add_trace(go.Scatter(x=ux + lx[::-1], y=uy + ly[::-1], hoverinfo="skip", **band,
                             legendgroup=name, showlegend=False))  # fmt: skip
    label = f"{name} (mean; band: min..max of {len(curves)} seeds)"
    ys = [mean[i] for i in kept]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, line=line, legendgroup=name))


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    legend = {"orientation": "h", "y": -0.18}
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white",
                      legend=legend, margin={"t": 60, "b": 110})  # fmt: skip
    return fig


def _best_by_trial(
    groups: Mapping[str, list[Run]], colors: Mapping[str, str], value_name: str
) -> go.Figure:
    fig = go.Figure()
    for sampler, runs in groups.items():
        length = max(len(r.trials) for r in runs)
        curves = [_hold(r.best_so_far(), length) for r in runs]
        _add_curve(fig, list(range(length)), curves, sampler, colors[sampler])
    return _layout(fig, f"Best feasible {value_name} by trial", "trial number", value_name)


def _best_by_time(
    groups: Mapping[str, list[Run]], colors: Mapping[str, str], value_name: str
) -> go.Figure:
    fig = go.Figure()
    end = max(r.seconds for runs in groups.values() for r in runs)
    grid = np.linspace(0.0, end, TIME_GRID_POINTS) if end > 0 else np.zeros(1)
    for sampler, runs in groups.items():
        mine = [float(s) for s in grid if s <= max(r.seconds for r in runs)]
        curves = [[r.best_at(s) for s in mine] for r in runs]
        _add_curve(fig, mine, curves, sampler, colors[sampler])
    return _layout(fig, f"Best feasible {value_name} by wall time", "wall time (s)", value_name)


def _feasible_fraction(groups: Mapping[str, list[Run]], colors: Mapping[str, str]) -> go.Figure:
    names = list(groups)
    fractions = [[r.feasible_fraction for r in groups[s]] for s in names]
    mean = [statistics.fmean(f) for f in fractions]
    pairs = list(zip(fractions, mean, strict=True))
    error = {"type": "data", "symmetric": False, "array": [max(f) - m for f, m in pairs],
             "arrayminus": [m - min(f) for f, m in pairs]}  # fmt: skip
    fig = go.Figure(go.Bar(x=names, y=mean, marker_color=[colors[s] for s in names], error_y=error))
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    title = "Feasible fraction of finished trials (mean; bar: min..max over seeds)"
    return _layout(fig, title, "sampler", "feasible fraction")


def _pareto_traces(
    runs: Sequence[Run], key: str, label: str, value_name: str, color: str, legend: bool
) -> list[go.Scatter]:
    """Every feasible trial of ``runs`` (faint) and their pooled front on cost ``key``."""
    pts = [(r, t) for r in runs for t in r.trials if t.feasible and getattr(t, key) is not None]
    xs = [getattr(t, key) for _, t in pts]
    ys = [t.value for _, t in pts if t.value is not None]  # every feasible trial has one
    text = [f"{r.study_name} trial {t.number}<br>{t.architecture}" for r, t in pts]
    hover = f"%{{text}}<br>{label} %{{x:.4g}}<br>{value_name} %{{y:.4g}}<extra></extra>"
    front = sorted(pareto_front(list(zip(ys, xs, strict=True))), key=lambda i: xs[i])
    name = runs[0].sampler
    common = {"legendgroup": name, "hovertemplate": hover, "showlegend": legend}
    trials = go.Scatter(x=xs, y=ys, text=text, mode="markers", opacity=0.25, name=f"{name} trials",
                        marker={"color": color, "size": 6}, **common)  # fmt: skip
    line = go.Scatter(x=[xs[i] for i in front], y=[ys[i] for i in front], mode="lines+markers",
                      text=[text[i] for i in front], line={"shape": "hv", "color": color},
                      name=f"{name} Pareto front (all seeds)", **common)  # fmt: skip
    return [trials, line]


def _pareto(
    groups: Mapping[str, list[Run]], colors: Mapping[str, str], value_name: str
) -> go.Figure:
    """Value against memory and, when any feasible trial has one, against energy."""
    axes = [("memory_megabytes", "memory (MB)")]
    runs = [r for rs in groups.values() for r in rs]
    if any(t.energy_uj is not None for r in runs for t in r.trials if t.feasible):
        axes.append(("energy_uj", "energy (µJ)"))
    titles = [f"{value_name} vs {label}" for _, label in axes]
    fig = make_subplots(rows=1, cols=len(axes), subplot_titles=titles)
    for col, (key, label) in enumerate(axes, start=1):
        for sampler, mine in groups.items():
            traces = _pareto_traces(mine, key, label, value_name, colors[sampler], col == 1)
            fig.add_traces(traces, rows=1, cols=col)
        fig.update_xaxes(title_text=label, row=1, col=col)
        fig.update_yaxes(title_text=value_name, row=1, col=col)
    title = f"Pareto fronts: {value_name} (maximized) against cost (minimized)"
    return _layout(fig, title, axes[0][1], value_name).update_layout(margin={"t": 90})


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def _std(values: Sequence[float]) -> float | None:
    """Sample standard deviation; 0 for one value, None for none."""
    return statistics.stdev(values) if len(values) > 1 else 0.0 if values else None


def summarize(runs: Sequence[Run], sampler_settings: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per sampler: what the report's table shows."""
    rows = []
    for sampler, mine in _samplers(runs).items():
        best = [r.best_value for r in mine]
        found = [b for b in best if b is not None]
        rows.append(
            {
                "sampler": sampler,
                "settings": sampler_settings.get(sampler, ""),
                "seeds": [r.seed for r in mine],
                "trials_per_seed_mean": statistics.fmean(len(r.trials) for r in mine),
                "feasible_fraction_mean": statistics.fmean(r.feasible_fraction for r in mine),
                "best_values": best,
                "best_mean": _mean(found),
                "best_std": _std(found),
                "seeds_without_feasible": len(best) - len(found),
                "seconds_per_run_mean": statistics.fmean(r.seconds for r in mine),
                "seconds_to_best_mean": _mean([r.seconds_to_best for r in mine]),
                "architectures_mean": statistics.fmean(r.distinct_architectures for r in mine),
            }
        )
    scored = [row for row in rows if row["best_mean"] is not None]
    winner = max(scored, key=lambda row: float(row["best_mean"]), default=None)  # type: ignore[arg-type]
    for row in rows:
        row["highest_mean_best"] = row is winner
    return rows


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _table_html(rows: Sequence[Mapping[str, Any]], value_name: str) -> str:
    heads = [
        "sampler", "settings", "seeds", "finished trials / seed (mean)", "feasible fraction (mean)",
        f"best {value_name} (mean ± std; per seed)", "seconds / run (mean)",
        "seconds to best (mean)", "distinct feasible architectures evaluated / seed (mean)",
    ]  # fmt: skip
    body = []
    for row in rows:
        per_seed = ", ".join(_fmt(v) for v in row["best_values"])
        best = f"{_fmt(row['best_mean'])} ± {_fmt(row['best_std'], 2)} ({per_seed})"
        if row["seeds_without_feasible"]:
            best += f"; {row['seeds_without_feasible']} seed(s) without a feasible trial"
        cells = [
            row["sampler"] + (" ★ highest mean best" if row["highest_mean_best"] else ""),
            row["settings"], ", ".join(map(str, row["seeds"])),
            _fmt(row["trials_per_seed_mean"]), f"{row['feasible_fraction_mean']:.1%}", best,
            _fmt(row["seconds_per_run_mean"]), _fmt(row["seconds_to_best_mean"]),
            _fmt(row["architectures_mean"]),
        ]  # fmt: skip
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        body.append(f"<tr{' class=winner' if row['highest_mean_best'] else ''}>{tds}</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


RUN_FIELDS = ("sampler", "seed", "study_name", "feasible_fraction", "best_value", "seconds",
              "seconds_to_best", "distinct_architectures")  # fmt: skip


def _run_json(run: Run) -> dict[str, Any]:
    """A run's numbers and its curve: best value so far after each trial."""
    return {name: getattr(run, name) for name in RUN_FIELDS} | {
        "finished_trials": len(run.trials),
        "trial_numbers": [t.number for t in run.trials],
        "trial_seconds": [t.seconds for t in run.trials],
        "best_so_far": run.best_so_far(),
    }


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}tr.winner{font-weight:bold}.figure{margin:1em 0}"""


def _page(title: str, header: str, figures: Sequence[go.Figure], table: str) -> str:
    divs = [
        f.to_html(full_html=False, include_plotlyjs=i == 0, default_height="560px")
        for i, f in enumerate(figures)
    ]
    body = "".join(f'<div class="figure">{d}</div>' for d in divs)
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{header}{body}<h2>Summary</h2>{table}</body></html>"
    )


def _header(
    title: str, value_name: str, sampler_settings: Mapping[str, str], notes: Sequence[str]
) -> str:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    settings = "".join(
        f"<dt><b>{html.escape(s)}</b></dt><dd>{html.escape(v)}</dd>"
        for s, v in sampler_settings.items()
    )
    return (
        f"<h1>{html.escape(title)}</h1><p>Value: {html.escape(value_name)} (maximized; only "
        f"feasible trials count).</p><ul>{items}</ul><dl>{settings}</dl>"
    )


def _screenshot(fig: go.Figure, png: Path, tmp: Path, chromium: str) -> Path | None:
    """``fig`` alone on a page, as a PNG of :data:`PNG_SIZE`; None (and a warning) on failure."""
    width, height = PNG_SIZE
    size = {"default_width": f"{width}px", "default_height": f"{height}px"}
    config = {"displayModeBar": False, "staticPlot": True}
    div = fig.to_html(full_html=False, include_plotlyjs=True, config=config, **size)
    page = tmp / f"{png.stem}.html"
    page.write_text(f'<html><body style="margin:0">{div}</body></html>', encoding="utf-8")
    try:
        return browser.screenshot(page, png, width, height, wait_ms=3000, chromium=chromium)
    except browser.BrowserError as err:  # the HTML and the JSON are written already
        warnings.warn(f"no PNG of {png.stem}: {err}", stacklevel=2)
        return None


def _write_pngs(figures: Mapping[str, go.Figure], out_dir: Path) -> tuple[Path, ...]:
    """One PNG per figure through headless Chromium (in parallel); none without Chromium."""
    chromium = browser.find_chromium()
    if chromium is None:
        return ()
    with tempfile.TemporaryDirectory(prefix="spikenas-report-") as tmp:
        with ThreadPoolExecutor(max_workers=len(figures)) as pool:
            jobs = [
                pool.submit(_screenshot, fig, out_dir / f"{name}.png", Path(tmp), chromium)
                for name, fig in figures.items()
            ]
            return tuple(png for job in jobs if (png := job.result()) is not None)


def write_report(
    runs: Sequence[Run],
    out_dir: str | Path,
    *,
    title: str,
    value_name: str,
    sampler_settings: Mapping[str, str],
    notes: Sequence[str] = (),
    png: bool = True,
) -> ReportFiles:
    """Write ``report.html``, ``report.json`` and (``png`` and Chromium) one PNG per figure."""
    if not runs:
        raise ValueError("write_report needs at least one run (no studies were given)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = _samplers(runs)
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(groups)}
    figures = {
        "best_by_trial": _best_by_trial(groups, colors, value_name),
        "best_by_time": _best_by_time(groups, colors, value_name),
        "feasible_fraction": _feasible_fraction(groups, colors),
        "pareto": _pareto(groups, colors, value_name),
    }
    rows = summarize(runs, sampler_settings)
    header = _header(title, value_name, sampler_settings, notes)
    html_path = out / "report.html"
    page = _page(title, header, list(figures.values()), _table_html(rows, value_name))
    html_path.write_text(page, encoding="utf-8")
    winner = next((row["sampler"] for row in rows if row["highest_mean_best"]), None)
    data = {
        "title": title,
        "value_name": value_name,
        "notes": list(notes),
        "sampler_settings": dict(sampler_settings),
        "highest_mean_best": winner,
        "figures": list(figures),
        "samplers": rows,
        "runs": [_run_json(r) for r in runs],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(_json_safe(data), indent=1, allow_nan=False), encoding="utf-8")
    pngs = _write_pngs(figures, out) if png else ()
    return ReportFiles(html_path, json_path, pngs)
