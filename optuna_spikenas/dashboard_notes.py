"""The notes optuna-dashboard shows first: a trial's atop its page, the study's on its Note tab.

optuna-dashboard (0.21) renders a note as Markdown (tables, images) above everything else of a
trial, so the note says what the user attributes and parameters below it only list: the
architecture, whether it kept the budgets (each broken one and by how much), its values, its
costs and spikes, and its cell diagram (the trial's ``cell.svg`` artifact, full size). The
study's note names the search's result and counts the trials.

Only text is made here (no storage, no torch); ``dashboard.py`` saves it with
``optuna_dashboard.save_note``. Links are relative to the dashboard's study pages
(``trials?numbers=N``); images use the artifact route ``/artifacts/STUDY/TRIAL/ID``, as the
dashboard's own note editor writes it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.budgets import CONSTRAINTS
from optuna_spikenas.samplers.screen import SCREEN, STAGE_ATTR

STUDY_NOTE_MARK = (
    "_Written by optuna-spikenas at the end of each search run; a run replaces only a note "
    "it wrote._"
)
"""The study note's last line: a note without it is the user's, and is left as it is."""

COSTS = {  # constraint name: (user attribute of the cost, of the budget, format of a value)
    "memory": ("memory_bits", "memory_budget_bits", "bytes"),
    "area": ("area_mm2", "area_budget_mm2", "{:.3f} mm²"),
    "latency": ("latency_ms", "latency_budget_ms", "{:.3f} ms"),
    "energy": ("energy_uj", "energy_budget_uj", "{:.3f} µJ"),
}


def value_names(attrs: Mapping[str, Any], objectives: int) -> list[str]:
    """What each of a study's ``objectives`` values is, from a trial's user attributes (see
    ``objective.py``, ``autosnn_objective.py``)."""
    if "fitness" in attrs:  # AutoSNN: the fitness, or (accuracy, spikes)
        return ["fitness"] if objectives == 1 else ["held-out accuracy", "spikes per image"]
    if objectives == 2:
        return ["score", "validation accuracy"]
    trained = "score" in attrs or "val_accuracy" in attrs  # the score is then an attribute
    return ["validation accuracy" if trained else "score"]


def memory_text(bits: float) -> str:
    """Weight memory in bytes: ``5.66 kB``, ``1.234 MB``."""
    size = bits / 8
    if size < 1e3:
        return f"{size:,.0f} B"
    if size < 1e6:
        return f"{size / 1e3:.2f} kB"
    return f"{size / 1e6:.3f} MB"


def _number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value).replace("inf", "∞")


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended, as its objective wrapper saw it: the values returned (None when it
    raised) and, when it did not return, why (``"pruned: ..."`` or ``"failed: ..."``)."""

    values: Sequence[float] | None
    problem: str | None = None


def broken_budgets(attrs: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Each budget the trial broke, with its excess (``constraint_NAME``, a fraction)."""
    return [
        (name, float(attrs[f"constraint_{name}"]))
        for name in CONSTRAINTS
        if float(attrs.get(f"constraint_{name}", 0.0)) > 0
    ]


def _one_line(text: str, limit: int = 300) -> str:
    """``text``'s first line, at most ``limit`` characters (a heading is one line)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def headline(attrs: Mapping[str, Any], outcome: TrialOutcome, names: Sequence[str]) -> str:
    """The note's first line: feasible or not (and why), and the values."""
    if outcome.problem is not None:
        problem = _one_line(outcome.problem)
        return f"### ✗ {problem[0].upper()}{problem[1:]}"
    values = list(outcome.values or [])
    if any(math.isnan(v) for v in values):
        error = _one_line(str(attrs.get("score_error", "the objective returned NaN")))
        return f"### ✗ Failed: {error}"
    if attrs.get("invalid_reason"):
        return f"### ✗ Invalid, not built or scored: {_one_line(str(attrs['invalid_reason']))}"
    if attrs.get("feasible") is False:
        over = ", ".join(f"{name} +{100 * excess:.1f} %" for name, excess in broken_budgets(attrs))
        return f"### ✗ Over budget ({over}), not scored"
    if attrs.get(STAGE_ATTR) == SCREEN:
        return f"### ✓ Feasible · screened: score {_number(float(attrs['score']))}, not trained"
    shown = " · ".join(f"{n} {_number(v)}" for n, v in zip(names, values, strict=False))
    return f"### ✓ Feasible · {shown}" if shown else "### ✓ Feasible"


def architecture_line(attrs: Mapping[str, Any]) -> str:
    """The architecture (a code span, as ``Architecture.parse`` reads it), shape and size."""
    parts = [f"`{attrs['architecture']}`"] if "architecture" in attrs else []
    if "width" in attrs:
        cells = attrs.get("num_cells", 1)
        parts.append(f"width {attrs['width']}, {cells} cell{'s' * (cells != 1)}")
    if "parameters" in attrs:
        parts.append(
            f"{attrs['parameters']:,} parameters, {memory_text(attrs['memory_bits'])} at "
            f"{attrs['weight_bits']}-bit weights"
        )
    return " · ".join(parts)


def _cost_text(name: str, value: float, attrs: Mapping[str, Any]) -> str:
    """A cost or budget as the table shows it; memory also as parameters at the weight width
    (configs give it as ``max_parameters``)."""
    style = COSTS[name][2]
    if style != "bytes":
        return style.format(value)
    bits = int(attrs.get("weight_bits") or 0)
    return memory_text(value) + (f" ({value / bits:,.0f} parameters)" if bits else "")


def costs_table(attrs: Mapping[str, Any]) -> list[str]:
    """A row per cost the trial has (memory, the IMC chip's area, latency, energy per image):
    its value, its budget and how far within or over it."""
    rows = []
    for name in CONSTRAINTS:
        cost_key, budget_key, _ = COSTS[name]
        if cost_key not in attrs:
            continue
        cost = float(attrs[cost_key])
        if budget_key not in attrs:
            rows.append(f"| {name} | {_cost_text(name, cost, attrs)} | no budget | |")
            continue
        budget = float(attrs[budget_key])
        excess = 100 * (cost - budget) / budget
        margin = f"**{excess:+.1f} % (over)**" if excess > 0 else f"{excess:+.1f} % (within)"
        shown = f"{_cost_text(name, cost, attrs)} | {_cost_text(name, budget, attrs)}"
        rows.append(f"| {name} | {shown} | {margin} |")
    if not rows:
        return []
    header = ["| cost | this network | budget | margin |", "|---|---|---|---|"]
    chip = attrs.get("hardware_profile")
    footer = [f"Area, latency and energy per image: IMC chip model `{chip}`."] if chip else []
    return ["", *header, *rows, "", *footer]


def measured_lines(attrs: Mapping[str, Any], busiest: tuple[str, float] | None) -> list[str]:
    """Accuracy (trained, or AutoSNN's shared weights) and spikes, when measured."""
    lines = []
    if "val_accuracy" in attrs:
        line = f"**Trained**: validation accuracy {attrs['val_accuracy']:.4f}"
        if "test_accuracy" in attrs:
            line += f" (test {attrs['test_accuracy']:.4f})"
        lines.append(line + ".")
    if "fitness" in attrs:
        lines.append(
            f"**Held-out accuracy** {attrs['accuracy']:.4f} (super-network's shared weights), "
            f"fitness {attrs['fitness']:.4f}."
        )
    if "spikes_per_image" in attrs:
        line = f"**Spikes**: {attrs['spikes_per_image']:,.1f} per image"
        if "spikes_measured_on" in attrs:
            line += f" ({attrs['spikes_measured_on']})"
        if busiest is not None:
            line += f", most in layer `{busiest[0]}` ({busiest[1]:.0f} %)"
        line += "; per layer: the artifact `spikes_by_layer.csv`"
        if "synops_per_image" in attrs:
            line += (
                f". {attrs['synops_per_image']:,.0f} SynOps per image, "
                f"{attrs['synops_energy_uj']:.4f} µJ ({attrs['synops_energy_convention']})"
            )
        lines.append(line + ".")
    return lines


def trial_note(
    attrs: Mapping[str, Any],
    outcome: TrialOutcome,
    names: Sequence[str],
    diagram_url: str | None = None,
    busiest: tuple[str, float] | None = None,
) -> str:
    """A trial's note (Markdown) from its user attributes and how it ended; ``names`` are the
    study's value names (:func:`value_names`), ``diagram_url`` the cell diagram to show,
    ``busiest`` the layer with the most spikes and its share in percent."""
    lines = [headline(attrs, outcome, names), "", architecture_line(attrs)]
    if "duplicate_of" in attrs:
        number = attrs["duplicate_of"]
        lines += [
            "",
            f"The same network as [trial {number}](trials?numbers={number}): its values and "
            "measurements are reused.",
        ]
    lines += costs_table(attrs)
    measured = measured_lines(attrs, busiest)
    if measured:
        lines += ["", *measured]
    if diagram_url is not None:
        lines += ["", f"![cell diagram]({diagram_url})"]
    return "\n".join(lines) + "\n"


def trial_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """The trials by kind for the study note: ``"trials"`` (all of them), then each kind that
    has any: scored, duplicates reused, invalid, over budget (with the budgets broken), pruned,
    failed, unfinished."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    over = [t for t in complete if t.user_attrs.get("feasible") is False]
    invalid = [t for t in over if t.user_attrs.get("invalid_reason")]
    over = [t for t in over if not t.user_attrs.get("invalid_reason")]
    broken = Counter(name for t in over for name, _ in broken_budgets(t.user_attrs))
    over_kind = "over budget"
    if broken:
        over_kind += f" ({', '.join(f'{name} {n}' for name, n in broken.items())})"
    kinds = {
        "scored": sum(
            1
            for t in complete
            if t.user_attrs.get("feasible") and "duplicate_of" not in t.user_attrs
        ),
        "duplicates reused": sum(1 for t in complete if "duplicate_of" in t.user_attrs),
        "invalid": len(invalid),
        over_kind: len(over),
        "pruned": sum(1 for t in trials if t.state == TrialState.PRUNED),
        "failed": sum(1 for t in trials if t.state == TrialState.FAIL),
        "unfinished": sum(1 for t in trials if not t.state.is_finished()),
    }
    return {"trials": len(trials)} | {k: n for k, n in kinds.items() if n or k == "scored"}


def study_note(
    result: tuple[Mapping[str, Any], int, str] | None,
    counts: Mapping[str, int],
    front: Sequence[int] = (),
    diagram_url: str | None = None,
) -> str:
    """The study's note (Markdown): ``result`` is (its user attributes, its number, why it is
    the result) or None; ``counts`` the trials by kind; ``front`` the feasible Pareto front
    of a two-objective study."""
    lines = ["## Search result", ""]
    if result is None:
        lines.append("No feasible architecture got a finite value yet.")
    else:
        attrs, number, why = result
        lines += [
            f"**[Trial {number}](trials?numbers={number})**, {why}:",
            "",
            architecture_line(attrs),
        ]
        lines += costs_table(attrs)
    if front:
        links = ", ".join(f"[{n}](trials?numbers={n})" for n in front)
        lines += ["", f"Pareto front of the feasible trials: trials {links}."]
    if result is not None and diagram_url is not None:
        lines += ["", f"![cell diagram of trial {result[1]}]({diagram_url})"]
    kinds = ", ".join(f"{count} {kind}" for kind, count in counts.items() if kind != "trials")
    lines += ["", "## Trials", "", f"{counts['trials']} trials: {kinds}.", "", STUDY_NOTE_MARK]
    return "\n".join(lines) + "\n"
