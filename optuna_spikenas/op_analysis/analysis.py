"""Operation analysis end to end: sample, skip what is over budget, score (each architecture
once), optionally short-train the best, and propose an op set (see the package docstring)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_spikenas.space import (
    OPS,
    Architecture,
    SpaceError,
)

if TYPE_CHECKING:
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.train import TrainSettings
from optuna_spikenas.op_analysis.evidence import (
    RESAMPLES,
    RULE,
    SPIKENAS_OPS,
    RemovalEvidence,
    ScoreStats,
    bootstrap_difference,
    is_removable,
    propose_ops,
    score_stats,
)
from optuna_spikenas.op_analysis.sampling import count_architectures, sample_architectures

TOP_TRAINED = 3
"""Best-scored architectures of each set that are trained when accuracy is asked for."""
Log = Callable[[str], None]

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
        f"top-25% mean {number_text(tq)} ({result.seconds:.1f} s, "
        f"{total_scored} networks scored so far)"
    )
    if result.mean_accuracy is not None:
        line += f", val accuracy {100 * result.mean_accuracy:.1f}%"
    return line


def number_text(value: float | None, digits: int = 2) -> str:
    """A statistic for the progress lines and the table; ``-`` where there is none."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}"
