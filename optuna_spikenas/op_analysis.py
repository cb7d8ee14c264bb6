"""Operation analysis (SpikeNAS step 1): which operations can leave the cell space?

Putra & Shafique (SpikeNAS, 2024) measured each operation's effect on accuracy and found that
removing ``zero``, ``conv1x1`` and ``avgpool3x3`` from SNASNet's cells does not change accuracy
significantly, so SpikeNAS searches {skip, conv3x3} only. This module repeats the analysis with
the training-free score instead of (or, optionally, next to) training.

Procedure, for the full op set F and for every op o (the set F \\ {o}):

1. **Sample** ``n`` distinct valid architectures of the config's space (macro, num_cells,
   widths, shared cell, backward edges, SNASNet validity) whose edges use only ops of the set
   (:func:`sample_architectures`). Each draw picks every edge uniformly among the set's choices
   (``zero``, or a non-zero op with, in backward spaces, a direction), so every cell of the set
   is equally likely; a draw that is invalid or whose canonical form was already drawn is
   rejected. When the set has fewer than ``n`` distinct architectures, all of them are taken.
2. **Skip** candidates over the config's memory budget (never built, never scored, counted).
3. **Score** the rest with the objective's training-free score. Identical architectures (same
   canonical key) across sets are scored once.
4. **Summarise** the finite scores x_1..x_m of the set: mean, median, 90th percentile (linear
   interpolation), max, and the top-quartile mean ``T(x)``, the mean of the ``k = ceil(m / 4)``
   largest scores. A score of ``-inf`` (singular kernel: a network that never fires) is counted
   as ``non_finite`` and left out of the statistics.
5. **Compare** with the full set: ``Δ = T(x_set) − T(x_full)``, with a seeded percentile
   bootstrap 95 % interval: ``B`` times, resample each set with replacement (independently, at
   its own size), take ``Δ* = T(x*_set) − T(x*_full)``; the interval is the 2.5 % and 97.5 %
   quantiles of the ``Δ*``. (Sets share some architectures; resampling them independently ignores
   that positive correlation, which makes the interval wider, i.e. conservative.)
6. Optionally (``train_settings``) **short-train** the 3 best-scored architectures of each set
   and take their mean validation accuracy.

**Proposal rule.** An op o is *removable* when removing it does not lower the top-quartile mean
score: the bootstrap interval of Δ includes 0 or lies above it (its upper end is ``>= 0``), and,
when accuracy was measured, the mean accuracy without o is at most 1 point (percentage point)
below the full set's. The proposed op set is the ops that are not removable. A set that leaves
fewer than 32 distinct valid cells has nothing to search (``{conv3x3}`` alone is one cell), so
then the removable ops are added back, the one whose removal lowers the top-quartile mean most
first, until 32 cells are reached. The proposed set is then sampled and scored like the others
and compared with SpikeNAS's {skip, conv3x3}.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_spikenas.space import (
    BACKWARD,
    EDGES,
    FORWARD,
    OPS,
    ZERO,
    Architecture,
    Cell,
    SearchSpace,
    SpaceError,
    distinct_cells,
    invalid_reason,
    op_code,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.train import TrainSettings

__all__ = [
    "SPIKENAS_OPS",
    "RULE",
    "OpAnalysis",
    "OpSetResult",
    "RemovalEvidence",
    "ScoreStats",
    "analyze_ops",
    "bootstrap_difference",
    "count_architectures",
    "format_table",
    "is_removable",
    "op_analysis_figure",
    "propose_ops",
    "sample_architectures",
    "score_stats",
    "top_quartile_mean",
    "write_outputs",
]

ZERO_NAME = OPS[ZERO]
SPIKENAS_OPS: tuple[str, ...] = ("skip", "conv3x3")
"""The op set SpikeNAS searches after its operation analysis."""

RULE = (
    "an op is removable when removing it does not lower the top-quartile mean score (the "
    "bootstrap 95% interval of the difference includes 0 or is above 0) and, when accuracy was "
    "measured, does not lower the mean validation accuracy by more than 1 point; the proposed "
    "op set is the ops that are not removable, plus, while they leave fewer than 32 distinct "
    "cells, the removable ops whose removal lowers the top-quartile mean most"
)
MAX_ACCURACY_DROP = 1.0
"""Percentage points of mean validation accuracy an op's removal may cost and stay removable."""
TOP_TRAINED = 3
"""Best-scored architectures of each set that are trained when accuracy is asked for."""
RESAMPLES = 2000
"""Bootstrap resamples per interval."""
ENUMERATE_LIMIT = 5000
"""Largest number of raw cells per op set that is enumerated to count its architectures."""

Log = Callable[[str], None]


# --- sampling ------------------------------------------------------------------------------


def _codes(ops: Iterable[int | str]) -> tuple[int, ...]:
    codes = tuple(sorted({op_code(o) for o in ops}))
    if not codes:
        raise ValueError("an op set has at least one operation")
    return codes


def _edge_choices(codes: tuple[int, ...], backward: bool) -> tuple[tuple[int, str], ...]:
    """What one edge may carry: ``zero`` (no direction) or a non-zero op with a direction."""
    directions = (FORWARD, BACKWARD) if backward else (FORWARD,)
    choices: list[tuple[int, str]] = [(ZERO, FORWARD)] if ZERO in codes else []
    choices += [(c, d) for c in codes if c != ZERO for d in directions]
    return tuple(choices)


def _cell_ok(cell: Cell, space: SearchSpace) -> bool:
    """The cell-level rules of ``invalid_reason`` (validity, direction, direct edge)."""
    arch = Architecture((cell,) * space.num_cells[0], space.widths[0])
    return invalid_reason(arch, space) is None


@lru_cache(maxsize=64)
def _distinct_cells(codes: tuple[int, ...], space: SearchSpace) -> int | None:
    """Distinct valid canonical cells over ``codes``, or None when there are too many raw
    cells to enumerate (more than ``ENUMERATE_LIMIT``; such sets have plenty)."""
    choices = _edge_choices(codes, space.backward)
    if len(choices) ** len(EDGES) > ENUMERATE_LIMIT:
        return None
    seen: set[Cell] = set()
    for picks in np.ndindex(*(len(choices),) * len(EDGES)):
        cell = _cell_from_choices([choices[p] for p in picks])
        if _cell_ok(cell, space):
            seen.add(cell.canonical())
    return len(seen)


def count_architectures(ops: Iterable[int | str], space: SearchSpace) -> int | None:
    """How many distinct (canonical) valid architectures the op set has in ``space``, or None
    when it is too large to count (then far more than any sample): ``D`` distinct cells give
    ``sum over num_cells c of (D if shared else D**c) x len(widths)`` architectures."""
    distinct = _distinct_cells(_codes(ops), space)
    if distinct is None:
        return None
    per_width = sum(distinct if space.shared_cell else distinct**c for c in space.num_cells)
    return per_width * len(space.widths)


def _cell_from_choices(picks: Sequence[tuple[int, str]]) -> Cell:
    forward = {e: c for e, (c, d) in zip(EDGES, picks, strict=True) if d == FORWARD}
    backward = {e: c for e, (c, d) in zip(EDGES, picks, strict=True) if d == BACKWARD}
    return Cell.from_edges(forward, backward)


def sample_architectures(
    ops: Iterable[int | str],
    n: int,
    rng: np.random.Generator,
    space: SearchSpace,
    *,
    max_draws: int | None = None,
) -> list[Architecture]:
    """Up to ``n`` distinct valid architectures of ``space`` whose edges use only ``ops``.

    A draw takes num_cells and width uniformly from the space's lists and every edge of every
    cell (one cell when the cell is shared) uniformly from the op set's edge choices; invalid
    draws and repeats of a canonical form are rejected. Fewer than ``n`` come back only when the
    op set has fewer distinct architectures (all are returned) or after ``max_draws`` draws
    (default ``1000 n + 10000``).
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    codes = _codes(ops)
    choices = _edge_choices(codes, space.backward)
    available = count_architectures(codes, space)
    wanted = n if available is None else min(n, available)
    limit = max_draws if max_draws is not None else 1000 * n + 10000
    found: dict[str, Architecture] = {}
    draws = 0
    while len(found) < wanted and draws < limit:
        draws += 1
        num_cells = space.num_cells[int(rng.integers(len(space.num_cells)))]
        width = space.widths[int(rng.integers(len(space.widths)))]
        distinct_cells = 1 if space.shared_cell else num_cells
        cells = tuple(
            _cell_from_choices([choices[p] for p in rng.integers(len(choices), size=len(EDGES))])
            for _ in range(distinct_cells)
        )
        arch = Architecture(cells * num_cells if space.shared_cell else cells, width)
        if invalid_reason(arch, space) is None:
            found.setdefault(arch.canonical_key(), arch)
    return list(found.values())


# --- statistics ----------------------------------------------------------------------------


def top_quartile_mean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the ``ceil(m / 4)`` largest of ``m`` values (at least one)."""
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0:
        raise ValueError("top_quartile_mean of no values")
    k = max(1, math.ceil(x.size / 4))
    return float(x[-k:].mean())


def _top_quartile_means(samples: np.ndarray) -> np.ndarray:
    """``top_quartile_mean`` of each row of a [B, m] array."""
    k = max(1, math.ceil(samples.shape[1] / 4))
    return np.sort(samples, axis=1)[:, -k:].mean(axis=1)


def bootstrap_difference(
    values: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``(Δ, low, high)``: ``Δ = T(values) − T(reference)`` with ``T`` the top-quartile mean,
    and its percentile-bootstrap interval at ``level`` (each sample resampled independently
    with replacement at its own size, ``resamples`` times)."""
    a = np.asarray(values, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_difference needs at least one value on each side")
    estimate = top_quartile_mean(a) - top_quartile_mean(b)
    star_a = _top_quartile_means(a[rng.integers(a.size, size=(resamples, a.size))])
    star_b = _top_quartile_means(b[rng.integers(b.size, size=(resamples, b.size))])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(star_a - star_b, [alpha, 1.0 - alpha])
    return estimate, float(low), float(high)


@dataclass(frozen=True)
class ScoreStats:
    """Summary of one op set's scores; the statistics use the finite scores only."""

    count: int  # finite scores
    non_finite: int  # -inf scores (networks whose kernel is singular)
    mean: float | None
    median: float | None
    p90: float | None
    max: float | None
    top_quartile_mean: float | None


def score_stats(scores: Sequence[float]) -> ScoreStats:
    x = np.asarray([s for s in scores if math.isfinite(s)], dtype=float)
    non_finite = len(scores) - x.size
    if x.size == 0:
        return ScoreStats(0, non_finite, None, None, None, None, None)
    return ScoreStats(
        count=int(x.size),
        non_finite=non_finite,
        mean=float(x.mean()),
        median=float(np.median(x)),
        p90=float(np.percentile(x, 90)),
        max=float(x.max()),
        top_quartile_mean=top_quartile_mean(x),
    )


# --- the proposal rule ---------------------------------------------------------------------


@dataclass(frozen=True)
class RemovalEvidence:
    """What removing one op did, compared with the full op set."""

    op: str
    diff: float | None  # top-quartile mean without the op minus the full set's; None: no scores
    diff_high: float | None  # upper end of the bootstrap interval of diff
    accuracy_drop: float | None = None  # points: full set's mean accuracy minus this set's


def is_removable(
    evidence: RemovalEvidence,
    accuracy_measured: bool = False,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
) -> bool:
    """The interval of Δ includes 0 or is above it (``high >= 0``) and, when accuracy was
    measured, accuracy drops by at most ``max_accuracy_drop`` points. Missing evidence (no
    architecture of the set could be scored or trained) keeps the op."""
    if evidence.diff_high is None or evidence.diff_high < 0:
        return False
    if accuracy_measured:
        return evidence.accuracy_drop is not None and evidence.accuracy_drop <= max_accuracy_drop
    return True


MIN_CELLS = 32
"""A proposed op set must leave at least this many distinct cells to search."""


def propose_ops(
    evidence: Sequence[RemovalEvidence],
    accuracy_measured: bool = False,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    min_cells: int = MIN_CELLS,
) -> tuple[str, ...]:
    """The ops that are not removable, in ``OPS`` order. When those leave fewer than
    ``min_cells`` distinct valid cells (too few to search), the removable ops are added back
    one at a time, the one whose removal lowers the top-quartile mean most (smallest Δ) first,
    until they do."""
    kept = {e.op for e in evidence if not is_removable(e, accuracy_measured, max_accuracy_drop)}
    by_harm = sorted(
        (e for e in evidence if e.op not in kept and e.diff is not None),
        key=lambda e: (e.diff, OPS.index(e.op)),
    )
    for e in by_harm:
        if len(distinct_cells(tuple(kept))) >= min_cells:
            break
        kept.add(e.op)
    return tuple(op for op in OPS if op in kept)


# --- the analysis --------------------------------------------------------------------------


@dataclass(frozen=True)
class OpSetResult:
    """One op set: what was sampled, skipped and scored, and how it compares with the full set."""

    name: str  # "full", "without zero", ..., "proposed"
    ops: tuple[str, ...]
    removed: str | None  # the op left out (None for the full and the proposed set)
    available: int | None  # distinct architectures of the set; None: too many to count
    architectures: tuple[str, ...]  # scored architectures, in sample order
    scores: tuple[float, ...]  # their scores (may hold -inf)
    over_budget: tuple[str, ...]  # sampled but over the memory budget: never scored
    stats: ScoreStats
    diff: float | None = None  # top-quartile mean minus the full set's; None for the full set
    diff_low: float | None = None
    diff_high: float | None = None
    trained: tuple[str, ...] = ()  # the best-scored architectures that were trained
    accuracies: tuple[float, ...] = ()  # their final validation accuracy, in [0, 1]
    seconds: float = 0.0

    @property
    def sampled(self) -> int:
        return len(self.architectures) + len(self.over_budget)

    @property
    def mean_accuracy(self) -> float | None:
        return float(np.mean(self.accuracies)) if self.accuracies else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ops": list(self.ops),
            "removed": self.removed,
            "available": self.available,
            "sampled": self.sampled,
            "scored": len(self.scores),
            "over_budget": len(self.over_budget),
            "stats": {key: _plain(value) for key, value in asdict(self.stats).items()},
            "top_quartile_diff": _plain(self.diff),
            "diff_interval_95": None if self.diff is None else [self.diff_low, self.diff_high],
            "mean_accuracy": self.mean_accuracy,
            "architectures": [
                {"architecture": a, "score": _plain(s)}
                for a, s in zip(self.architectures, self.scores, strict=True)
            ],
            "over_budget_architectures": list(self.over_budget),
            "trained": [
                {"architecture": a, "val_accuracy": acc}
                for a, acc in zip(self.trained, self.accuracies, strict=True)
            ],
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class OpAnalysis:
    """The whole analysis: the full set, one set per removed op, the rule and the proposal."""

    samples: int
    seed: int
    full: OpSetResult
    removals: tuple[OpSetResult, ...]  # one per op, in OPS order
    removable: dict[str, bool]
    proposed_ops: tuple[str, ...]
    proposed: OpSetResult
    accuracy_measured: bool
    fallback: bool  # removable ops were added back: the non-removable ones left too few cells
    scored_architectures: int  # networks scored (after the cache)
    seconds: float
    rule: str = field(default=RULE)

    @property
    def sets(self) -> tuple[OpSetResult, ...]:
        return (self.full, *self.removals, self.proposed)

    @property
    def reproduces_spikenas(self) -> bool:
        return set(self.proposed_ops) == set(SPIKENAS_OPS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "seed": self.seed,
            "rule": self.rule,
            "accuracy_measured": self.accuracy_measured,
            "removable": dict(self.removable),
            "proposed_ops": list(self.proposed_ops),
            "proposal_is_fallback": self.fallback,
            "spikenas_ops": list(SPIKENAS_OPS),
            "reproduces_spikenas": self.reproduces_spikenas,
            "scored_architectures": self.scored_architectures,
            "seconds": round(self.seconds, 3),
            "sets": [s.as_dict() for s in self.sets],
        }


def _plain(value: float | int | None) -> float | int | None:
    """JSON-safe: plain Python numbers, None for a non-finite float."""
    if value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


class _CachedScorer:
    """``objective.score`` once per canonical architecture."""

    def __init__(self, objective: SpikeNASObjective) -> None:
        self.objective = objective
        self.cache: dict[str, float] = {}

    def __call__(self, arch: Architecture) -> float:
        key = arch.canonical_key()
        if key not in self.cache:
            self.cache[key] = float(self.objective.score(arch))
        return self.cache[key]


def _over_budget(objective: SpikeNASObjective, arch: Architecture) -> bool:
    """Memory (parameters x weight bits, analytic) above the config's budget."""
    check = objective.budgets.check(arch)
    limit = check.budgets.get("memory")
    return limit is not None and check.memory is not None and check.memory.memory_bits > limit


def _check_macro(objective: SpikeNASObjective) -> None:
    """Every num_cells of the space fits the images (else no architecture can be built)."""
    for num_cells in objective.space.num_cells:
        try:
            objective.macro.feature_sizes(num_cells)
        except ValueError as err:
            raise SpaceError(str(err)) from None


def analyze_ops(
    objective: SpikeNASObjective,
    samples: int = 40,
    seed: int = 0,
    train_settings: TrainSettings | None = None,
    progress: Log | None = None,
    resamples: int = RESAMPLES,
) -> OpAnalysis:
    """Run the operation analysis (see the module docstring) with ``objective``'s space, macro,
    dataset, memory budget and score. ``seed`` seeds sampling and bootstrap; each set has its
    own stream, so a set's sample does not depend on the others. With ``train_settings`` the
    top-3 architectures of each set are trained (weights seeded like scoring)."""
    if samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    _check_macro(objective)
    started = time.perf_counter()
    scorer = _CachedScorer(objective)
    trained: dict[str, float] = {}

    def accuracy(arch: Architecture) -> float:
        from optuna_spikenas.study_setup import candidate_seed
        from optuna_spikenas.train import train_architecture

        key = arch.canonical_key()
        if key not in trained:
            assert train_settings is not None  # called only with training on
            result = train_architecture(
                arch,
                objective.macro,
                objective.dataset,
                train_settings,
                seed=candidate_seed(objective.config.seed, arch),
                device=objective.device,
            )
            trained[key] = float(result.final_val_accuracy)
        return trained[key]

    def run_set(
        name: str, ops: tuple[str, ...], removed: str | None, tag: int, full: OpSetResult | None
    ) -> OpSetResult:
        set_started = time.perf_counter()
        rng = np.random.default_rng([seed, tag])
        archs = sample_architectures(ops, samples, rng, objective.space)
        too_big = [_over_budget(objective, a) for a in archs]
        over = tuple(str(a) for a, big in zip(archs, too_big, strict=True) if big)
        kept = [a for a, big in zip(archs, too_big, strict=True) if not big]
        scores = tuple(scorer(a) for a in kept)
        stats = score_stats(scores)
        diff = low = high = None
        if full is not None and stats.count and full.stats.count:
            diff, low, high = bootstrap_difference(
                [s for s in scores if math.isfinite(s)],
                [s for s in full.scores if math.isfinite(s)],
                np.random.default_rng([seed, tag, 1]),
                resamples,
            )
        best: list[Architecture] = []
        if train_settings is not None:
            ranked = sorted(
                (i for i, s in enumerate(scores) if math.isfinite(s)), key=lambda i: -scores[i]
            )
            best = [kept[i] for i in ranked[:TOP_TRAINED]]
        accuracies = tuple(accuracy(a) for a in best)
        result = OpSetResult(
            name=name,
            ops=ops,
            removed=removed,
            available=count_architectures(ops, objective.space),
            architectures=tuple(str(a) for a in kept),
            scores=scores,
            over_budget=over,
            stats=stats,
            diff=diff,
            diff_low=low,
            diff_high=high,
            trained=tuple(str(a) for a in best),
            accuracies=accuracies,
            seconds=time.perf_counter() - set_started,
        )
        if progress is not None:
            progress(_progress_line(result, len(scorer.cache)))
        return result

    full = run_set("full", OPS, None, 0, None)
    removals = tuple(
        run_set(f"without {op}", tuple(o for o in OPS if o != op), op, 1 + code, full)
        for code, op in enumerate(OPS)
    )
    measured = train_settings is not None
    evidence = [_evidence(r, full) for r in removals]
    removable = {e.op: is_removable(e, measured) for e in evidence}
    proposed_ops = propose_ops(evidence, measured)
    proposed = run_set("proposed", proposed_ops, None, 100, full)
    return OpAnalysis(
        samples=samples,
        seed=seed,
        full=full,
        removals=removals,
        removable=removable,
        proposed_ops=proposed_ops,
        proposed=proposed,
        accuracy_measured=measured,
        fallback=set(proposed_ops) != {op for op, yes in removable.items() if not yes},
        scored_architectures=len(scorer.cache),
        seconds=time.perf_counter() - started,
    )


def _evidence(result: OpSetResult, full: OpSetResult) -> RemovalEvidence:
    drop = None
    if result.mean_accuracy is not None and full.mean_accuracy is not None:
        drop = 100.0 * (full.mean_accuracy - result.mean_accuracy)
    assert result.removed is not None
    return RemovalEvidence(result.removed, result.diff, result.diff_high, drop)


def _progress_line(result: OpSetResult, total_scored: int) -> str:
    tq = result.stats.top_quartile_mean
    line = (
        f"{result.name:>18}: {len(result.scores)} scored, {len(result.over_budget)} over budget, "
        f"top-25% mean {_num(tq)} ({result.seconds:.1f} s, {total_scored} networks scored so far)"
    )
    if result.mean_accuracy is not None:
        line += f", val accuracy {100 * result.mean_accuracy:.1f}%"
    return line


# --- output --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


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
            f"{_label(r):<26} {len(r.scores):>6} {len(r.over_budget):>4} {_num(s.mean):>8} "
            f"{_num(s.median):>8} {_num(s.p90):>8} {_num(s.max):>8} "
            f"{_num(s.top_quartile_mean):>8}  {diff:<23}"
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
