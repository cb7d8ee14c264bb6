"""Operation analysis, steps 4-5 and the proposal rule: each op set's score statistics, the
bootstrap interval of its difference from the full set, and which ops are removable."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optuna_spikenas.space import (
    OPS,
    distinct_cells,
)

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
RESAMPLES = 2000
"""Bootstrap resamples per interval."""

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
