"""What a comparison report reads of each run: one sampler with one seed, from its study.

The first objective is the value to maximize. A trial is *feasible* when it is COMPLETE, its
``feasible`` user attribute is true and its value is finite; RUNNING/WAITING trials are ignored,
FAIL and PRUNED ones count as finished but not feasible. A trial's time is its
``datetime_complete`` minus the study's earliest ``datetime_start``. A run may also say how far
its sampler's search got (a :class:`~optuna_spikenas.search_extent.SearchExtent`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.search_extent import SearchExtent

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
    extent: SearchExtent | None = None  # how far the sampler's search got (None: not known)

    @property
    def cut_short(self) -> bool:
        return self.extent is not None and self.extent.cut_short

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


def load_run(
    study: optuna.Study, sampler: str, seed: int, extent: SearchExtent | None = None
) -> Run:
    """``study``'s finished trials (COMPLETE, FAIL, PRUNED) as a :class:`Run`."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    origin = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    points = tuple(_trial_point(t, origin) for t in trials if t.state in FINISHED)
    return Run(sampler, seed, study.study_name, points, extent)


def by_sampler(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by sampler, in the order the samplers first appear."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.sampler, []).append(run)
    return groups
