"""A sampler comparison as one self-contained HTML page, a JSON of its numbers and PNG figures.

Input: one :class:`~optuna_spikenas.comparison_runs.Run` per (sampler, seed). The page shows
what to read first (the highest mean best or the tie, the searches the budget cut short, the
samplers whose curves coincide), the figures of :mod:`report_figures` and a summary table (also
in ``report.json`` with each run's best-so-far curve and how far its search got).

A sampler is starred "highest mean best" only when no other's mean best is equal to it or lies
within one standard deviation over seeds (the larger of the two) of it: otherwise the report
says "tie" and names the tied samplers. Best values are averaged over the seeds that found a
feasible trial.
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

import plotly.graph_objects as go

from optuna_spikenas import browser
from optuna_spikenas.comparison_runs import Run, by_sampler
from optuna_spikenas.report_figures import comparison_figures

TIE_RULE = "best means equal, or within one standard deviation over seeds (the larger of the two)"
PNG_SIZE = (1000, 560)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    pngs: tuple[Path, ...]


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def _std(values: Sequence[float]) -> float | None:
    """Sample standard deviation; 0 for one value, None for none."""
    return statistics.stdev(values) if len(values) > 1 else 0.0 if values else None


def summarize(runs: Sequence[Run], sampler_settings: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per sampler: what the report's table shows. ``highest_mean_best`` is true for
    the one sampler whose mean best no other's comes near (:func:`tied_with`);
    ``tied_for_highest`` marks every sampler of a tie for the highest."""
    rows = []
    for sampler, mine in by_sampler(runs).items():
        best = [r.best_value for r in mine]
        found = [b for b in best if b is not None]
        rows.append(
            {
                "sampler": sampler,
                "settings": sampler_settings.get(sampler, ""),
                "seeds": [r.seed for r in mine],
                "search": [r.extent.detail if r.extent else None for r in mine],
                "cut_short_seeds": [r.seed for r in mine if r.cut_short],
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
    leader = max(scored, key=lambda row: float(row["best_mean"]), default=None)  # type: ignore[arg-type]
    tied = [row for row in scored if leader is not None and tied_with(leader, row)]
    for row in rows:
        row["highest_mean_best"] = len(tied) == 1 and row is leader
        row["tied_for_highest"] = len(tied) > 1 and any(row is t for t in tied)
    return rows


def tied_with(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """True when two summary rows' mean best values are equal, or within one standard
    deviation over seeds (the larger of the two) of each other: :data:`TIE_RULE`."""
    a, b = float(first["best_mean"]), float(second["best_mean"])
    noise = max(float(first["best_std"] or 0.0), float(second["best_std"] or 0.0))
    return math.isclose(a, b, rel_tol=1e-12) or abs(a - b) <= noise


def coinciding(runs: Sequence[Run]) -> list[list[str]]:
    """Groups of samplers (two or more) with the same best-so-far curve on every seed, the
    same seeds each: their lines lie one on another."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for sampler, mine in by_sampler(runs).items():
        key = tuple(sorted((r.seed, tuple(r.best_so_far())) for r in mine))
        groups.setdefault(key, []).append(sampler)
    return [names for names in groups.values() if len(names) > 1]


def findings(rows: Sequence[Mapping[str, Any]], runs: Sequence[Run]) -> list[str]:
    """What to read before the figures: who is highest (or the tie), which searches the budget
    cut short, which curves coincide."""
    winner = [row["sampler"] for row in rows if row["highest_mean_best"]]
    tied = [row["sampler"] for row in rows if row["tied_for_highest"]]
    if winner:
        found = [f"Highest mean best: {winner[0]}. A tie would be {TIE_RULE}."]
    elif tied:
        found = [f"Tie for the highest mean best: {_and(tied)}, with {TIE_RULE}."]
    else:
        found = ["No sampler found a feasible trial."]
    if all(len([v for v in row["best_values"] if v is not None]) < 2 for row in rows):
        found[0] += " With one seed per sampler no spread is known: only equal values tie."
    for row in rows:
        if row["cut_short_seeds"]:
            where = "; ".join(
                f"seed {seed}: {detail}"
                for seed, detail in zip(row["seeds"], row["search"], strict=True)
                if seed in row["cut_short_seeds"]
            )
            found.append(
                f"Cut short by the budget: {row['sampler']} ({where}). Its search did not run "
                "its course; it is compared on what it did in the budget."
            )
    for names in coinciding(runs):
        found.append(
            f"{_and(names)} found the same best value after every trial on every seed: "
            "their lines coincide (told apart by dash and marker)."
        )
    return found


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _search_cell(row: Mapping[str, Any]) -> str:
    details = [d for d in row["search"] if d is not None]
    if not details:
        return "–"
    if len(set(details)) == 1:
        return details[0] + (" (every seed)" if len(details) > 1 else "")
    return "; ".join(f"seed {s}: {d}" for s, d in zip(row["seeds"], row["search"], strict=True))


def _sampler_cell(row: Mapping[str, Any]) -> str:
    mark = " ★ highest mean best" if row["highest_mean_best"] else ""
    mark += " = tie for highest mean best" if row["tied_for_highest"] else ""
    return row["sampler"] + (" [cut short]" if row["cut_short_seeds"] else "") + mark


def _table_html(rows: Sequence[Mapping[str, Any]], value_name: str) -> str:
    heads = [
        "sampler", "settings", "search (how far it got)", "seeds", "finished trials / seed (mean)",
        "feasible fraction (mean)", f"best {value_name} (mean ± std; per seed)",
        "seconds / run (mean)", "seconds to best (mean)",
        "distinct feasible architectures evaluated / seed (mean)",
    ]  # fmt: skip
    body = []
    for row in rows:
        per_seed = ", ".join(_fmt(v) for v in row["best_values"])
        best = f"{_fmt(row['best_mean'])} ± {_fmt(row['best_std'], 2)} ({per_seed})"
        if row["seeds_without_feasible"]:
            best += f"; {row['seeds_without_feasible']} seed(s) without a feasible trial"
        cells = [
            _sampler_cell(row), row["settings"], _search_cell(row),
            ", ".join(map(str, row["seeds"])),
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
        "search": run.extent.detail if run.extent else None,
        "cut_short": run.cut_short,
    }


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}tr.winner{font-weight:bold}.figure{margin:1em 0}
ul.findings{background:#fff8e1;border-left:4px solid #f0b400;padding:0.5em 2em}"""


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
    title: str,
    value_name: str,
    sampler_settings: Mapping[str, str],
    notes: Sequence[str],
    found: Sequence[str],
) -> str:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    first = "".join(f"<li>{html.escape(f)}</li>" for f in found)
    settings = "".join(
        f"<dt><b>{html.escape(s)}</b></dt><dd>{html.escape(v)}</dd>"
        for s, v in sampler_settings.items()
    )
    return (
        f"<h1>{html.escape(title)}</h1><p>Value: {html.escape(value_name)} (maximized; only "
        f'feasible trials count).</p><ul class="findings">{first}</ul><ul>{items}</ul>'
        f"<dl>{settings}</dl>"
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
    figures = comparison_figures(runs, value_name)
    rows = summarize(runs, sampler_settings)
    found = findings(rows, runs)
    header = _header(title, value_name, sampler_settings, notes, found)
    html_path = out / "report.html"
    page = _page(title, header, list(figures.values()), _table_html(rows, value_name))
    html_path.write_text(page, encoding="utf-8")
    winner = next((row["sampler"] for row in rows if row["highest_mean_best"]), None)
    data = {
        "title": title,
        "value_name": value_name,
        "findings": found,
        "notes": list(notes),
        "sampler_settings": dict(sampler_settings),
        "highest_mean_best": winner,
        "tied_for_highest": [row["sampler"] for row in rows if row["tied_for_highest"]],
        "tie_rule": TIE_RULE,
        "figures": list(figures),
        "samplers": rows,
        "runs": [_run_json(r) for r in runs],
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(_json_safe(data), indent=1, allow_nan=False), encoding="utf-8")
    pngs = _write_pngs(figures, out) if png else ()
    return ReportFiles(html_path, json_path, pngs)
