"""How far a sampler's search got in one study: did the budget let it run its course?

A comparison is only fair to a sampler that had room to be itself. :func:`search_extent` reads
each search's progress back from its study, as ``make_sampler`` builds the samplers:

- ``cellbycell`` stops by itself when its last phase is scored; before that it is cut short
  ("phase 2: 16 of 22 candidates scored").
- ``evolution`` (AutoSNN) runs its configured generations; fewer is cut short.
- ``nsga2``: its first generation is random draws, so with fewer than 2 generations it is random
  search, cut short.
- ``tpe``: its first ``TPE_STARTUP_TRIALS`` trials are random draws; with no more trials than
  these it is random search, cut short.
- ``random`` (and any other sampler) is always itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.sampler_catalog import TPE_STARTUP_TRIALS
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.evolution import GENERATION_KEY, EvolutionarySampler
from optuna_spikenas.wording import plural

NSGA2_GENERATION_KEY = "NSGAIISampler:generation"
"""The trial system attribute where Optuna's NSGA-II records a trial's generation (its
``BaseGASampler`` names it after the class)."""

MIN_GA_GENERATIONS = 2
"""A genetic search with fewer generations than this has bred nothing: random search."""


@dataclass(frozen=True)
class SearchExtent:
    """How far one run's search got: ``cut_short`` when the budget ended it before it ran its
    course (or before it differed from random search), ``detail`` in words."""

    cut_short: bool
    detail: str


def search_extent(sampler: BaseSampler, study: Study) -> SearchExtent:
    """How far ``sampler``'s search got in ``study`` (read from its trials)."""
    trials = study.get_trials(deepcopy=False)
    if isinstance(sampler, CellByCellSampler):
        return _cellbycell(sampler, study)
    if isinstance(sampler, EvolutionarySampler):
        reached = _generations(trials, GENERATION_KEY)
        complete = sampler.is_complete(study)
        return SearchExtent(not complete, f"{reached} of {sampler.generations} generations")
    if isinstance(sampler, NSGAIISampler):
        reached = _generations(trials, NSGA2_GENERATION_KEY)
        if reached < MIN_GA_GENERATIONS:
            return SearchExtent(True, f"{plural(reached, 'generation')}: random draws only")
        return SearchExtent(False, f"{reached} generations (the first random draws)")
    if isinstance(sampler, TPESampler):
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        if done <= TPE_STARTUP_TRIALS:
            return SearchExtent(
                True, f"{done} of its {TPE_STARTUP_TRIALS} random start-up trials only"
            )
        return SearchExtent(
            False, f"{TPE_STARTUP_TRIALS} random start-up + {done - TPE_STARTUP_TRIALS} TPE trials"
        )
    if isinstance(sampler, RandomSampler):
        return SearchExtent(False, "random search")
    return SearchExtent(False, type(sampler).__name__)


def _cellbycell(sampler: CellByCellSampler, study: Study) -> SearchExtent:
    state = sampler.state(study)
    phase = state.current
    if phase is None:
        return SearchExtent(False, "no candidate fits the budget")
    if state.complete:
        return SearchExtent(False, f"{plural(len(state.phases), 'phase')}, every candidate scored")
    return SearchExtent(
        True, f"phase {phase.k}: {state.settled} of {len(phase.candidates)} candidates scored"
    )


def _generations(trials: list[FrozenTrial], key: str) -> int:
    """Generations that have at least one finished trial (generations are numbered from 0)."""
    found = [t.system_attrs[key] for t in trials if key in t.system_attrs and t.state.is_finished()]
    return max(found) + 1 if found else 0
