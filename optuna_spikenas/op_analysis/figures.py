"""Operation analysis, output: the table, the HTML figure and the JSON of an analysis."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import plotly.graph_objects as go

from optuna_spikenas.op_analysis.analysis import TOP_TRAINED, OpAnalysis, OpSetResult, number_text
from optuna_spikenas.op_analysis.evidence import MIN_CELLS, SPIKENAS_OPS
from optuna_spikenas.op_analysis.sampling import ZERO_NAME

# --- output --------------------------------------------------------------------------------


def _label(result: OpSetResult) -> str:
    if result.name == "proposed":
        return f"proposed {{{', '.join(result.ops)}}}"
    return result.name


def format_table(analysis: OpAnalysis) -> str:
    """The analysis as a plain-text table, the rule, and the proposal."""
    measured = analysis.accuracy_measured
    header = (
        f"{'op set':<26} {'scored':>6} {'over':>4} {'mean':>8} {'median':>8} {'p90':>8} "
        f"{'max':>8} {'top25%':>8}  {'Δ top25% [95% CI]':<23}"
        + (f" {'val acc':>7}" if measured else "")
        + " removable"
    )
    lines = [header, "-" * len(header)]
    for r in analysis.sets:
        s = r.stats
        if r is analysis.full:
            diff = "reference"
        elif r.diff is None or r.diff_low is None or r.diff_high is None:
            diff = "-"
        else:
            diff = f"{r.diff:+.2f} [{r.diff_low:+.2f}, {r.diff_high:+.2f}]"
        acc = "-" if r.mean_accuracy is None else f"{100 * r.mean_accuracy:.1f}%"
        removable = "" if r.removed is None else ("yes" if analysis.removable[r.removed] else "no")
        row = (
            f"{_label(r):<26} {len(r.scores):>6} {len(r.over_budget):>4} {number_text(s.mean):>8} "
            f"{number_text(s.median):>8} {number_text(s.p90):>8} {number_text(s.max):>8} "
            f"{number_text(s.top_quartile_mean):>8}  {diff:<23}"
            + (f" {acc:>7}" if measured else "")
            + f" {removable}"
        )
        lines.append(row.rstrip())
    notes = [
        f"{analysis.samples} samples per op set (seed {analysis.seed}), "
        f"{analysis.scored_architectures} distinct networks scored in {analysis.seconds:.0f} s. "
        "over: sampled but over the memory budget, never scored. top25%: mean of the best "
        "quarter of the scores.",
    ]
    silent = [f"{r.name} {r.stats.non_finite}" for r in analysis.sets if r.stats.non_finite]
    if silent:
        notes.append(
            "-inf scores (a network that never fires), left out of the statistics: "
            + ", ".join(silent)
            + "."
        )
    if measured:
        notes.append(
            f"val acc: mean final validation accuracy of the {TOP_TRAINED} best-scored "
            "architectures of the set after short training."
        )
    notes.append(f"Rule: {analysis.rule}.")
    verdict = "reproduces" if analysis.reproduces_spikenas else "does not reproduce"
    proposal = (
        f"Proposed op set: {{{', '.join(analysis.proposed_ops)}}}; this {verdict} SpikeNAS's "
        f"{{{', '.join(SPIKENAS_OPS)}}}."
    )
    available = analysis.proposed.available
    if available is not None and available < analysis.samples:
        proposal += (
            f" The proposed set has only {available} distinct valid architecture(s) in this space"
            + (
                " (without zero every edge carries one of its ops)"
                if ZERO_NAME not in analysis.proposed_ops
                else ""
            )
            + ", all of them scored."
        )
    if analysis.fallback:
        proposal += (
            f" The ops that are not removable leave fewer than {MIN_CELLS} distinct cells, so the "
            "removable ops whose removal lowers the top-quartile mean most were added back until "
            "they do."
        )
    notes.append(proposal)
    wrapped = [textwrap.fill(n, width=100, subsequent_indent="  ") for n in notes]
    return "\n".join([*lines, "", *wrapped])


def op_analysis_figure(analysis: OpAnalysis) -> go.Figure:
    """A box plot (all points shown) of the finite scores of each op set, one trace per set."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for r in analysis.sets:
        finite = [
            (a, s) for a, s in zip(r.architectures, r.scores, strict=True) if math.isfinite(s)
        ]
        figure.add_trace(
            go.Box(
                y=[s for _, s in finite],
                text=[a for a, _ in finite],
                name=_label(r),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                boxmean=True,
                hovertemplate="%{text}<br>score %{y:.3f}<extra>%{fullData.name}</extra>",
            )
        )
    verdict = "reproduces" if analysis.reproduces_spikenas else "does not reproduce"
    figure.update_layout(
        title=(
            f"Operation analysis: training-free score per op set ({analysis.samples} samples "
            f"each)<br><sup>proposed {{{', '.join(analysis.proposed_ops)}}}: {verdict} "
            f"SpikeNAS's {{{', '.join(SPIKENAS_OPS)}}}</sup>"
        ),
        yaxis_title="training-free score (higher is better)",
        xaxis_title="op set",
        showlegend=False,
        template="plotly_white",
    )
    return figure


def write_outputs(analysis: OpAnalysis, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``op_analysis.html`` (self-contained) and ``op_analysis.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = out / "op_analysis.html"
    op_analysis_figure(analysis).write_html(html, include_plotlyjs=True)
    data = out / "op_analysis.json"
    data.write_text(json.dumps(analysis.as_dict(), indent=2, allow_nan=False) + "\n")
    return html, data
