"""Which trial ``export`` takes: the one asked for (``--trial N``), else the search's own result
where its sampler finds one, else the best feasible trial; and why, in words for the user.

The study's sampler is not at hand when exporting (the storage does not keep it), so the rule
is told from what the samplers store in their trials: the cell-by-cell search's phases
(``cellbycell.PHASE_KEY``, ``SLOT_KEY``) and the evolutionary search's generations
(``evolution.GENERATION_KEY``); their results are read with the samplers' own rules from the
trials alone (``cellbycell.grown_network``, ``evolution.fittest_trial``). No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.samplers.cellbycell import PHASE_KEY, SLOT_KEY, grown_network
from optuna_spikenas.samplers.evolution import GENERATION_KEY, fittest_trial


class TrialChoiceError(SpikeNASError):
    """No trial of the study can be exported as asked; the message (one line) says why."""


@dataclass(frozen=True)
class Selection:
    """The trial to export, and why that one (for the user)."""

    trial: FrozenTrial
    why: str


def select_trial(study: optuna.Study, trial_number: int | None) -> Selection:
    """Trial ``trial_number`` (which must be COMPLETE); without one, the search's result where
    the study's sampler finds one (:func:`search_result`), else the best feasible trial."""
    trials = study.get_trials(deepcopy=False)
    if trial_number is None:
        result, note = search_result(study, trials)
        if result is not None:
            return result
        best = best_feasible_trial(trials, study.directions[0])
        if best is None:
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            raise TrialChoiceError(
                f"study {study.study_name!r} has no feasible trial ({len(trials)} trials, "
                f"{complete} complete); pass --trial N to export another one"
            )
        return Selection(best, "the best feasible trial" + (f"; {note}" if note else ""))
    found = [t for t in trials if t.number == trial_number]
    if not found:
        known = f"trials 0 to {len(trials) - 1}" if trials else "no trials"
        raise TrialChoiceError(f"study {study.study_name!r} has no trial {trial_number} ({known})")
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        raise TrialChoiceError(
            f"trial {trial_number} of study {study.study_name!r} is {trial.state.name}, "
            "not COMPLETE; export a complete trial"
        )
    return Selection(trial, "as asked")


def search_result(
    study: optuna.Study, trials: list[FrozenTrial]
) -> tuple[Selection | None, str | None]:
    """The result of a search that finds its own, told from what its sampler stored in the
    trials: ``(selection, None)``, or ``(None, why there is none)`` for a cell-by-cell or
    evolutionary search without a result yet, or ``(None, None)`` for the other samplers."""
    if any(PHASE_KEY in t.system_attrs or SLOT_KEY in t.system_attrs for t in trials):
        grown = grown_network(trials)
        if grown is None:
            if not any(PHASE_KEY in t.system_attrs for t in trials):
                return None, (
                    "this cell-by-cell study was made before its phases were recorded, so its "
                    "grown network is not known here (`--trial N` exports it)"
                )
            return None, "the cell-by-cell search has not finished its first phase yet"
        why = f"the network the cell-by-cell search grew: {grown.cells} cells"
        if grown.unfinished is not None:
            why += f"; phase {grown.unfinished} is not finished, run optimize again to grow it"
        return _if_feasible(grown.trial, why)
    if len(study.directions) == 1 and any(GENERATION_KEY in t.system_attrs for t in trials):
        fittest = fittest_trial(trials, study.direction)
        if fittest is None:
            return None, "the evolutionary search has no complete candidate yet"
        generations = {g for t in trials if (g := t.system_attrs.get(GENERATION_KEY)) is not None}
        complete = sum(
            t.state == TrialState.COMPLETE and t.system_attrs.get(GENERATION_KEY) is not None
            for t in trials
        )
        why = (
            f"the fittest candidate of the evolutionary search: {complete} evaluated over "
            f"{len(generations)} generation{'s' if len(generations) != 1 else ''}"
        )
        return _if_feasible(fittest, why)
    return None, None


def _if_feasible(trial: FrozenTrial, why: str) -> tuple[Selection | None, str | None]:
    if trial.user_attrs.get("feasible") is False or not math.isfinite(trial.values[0]):
        return None, f"the search's result, trial {trial.number}, is not feasible"
    return Selection(trial, why), None


def best_feasible_trial(
    trials: list[FrozenTrial], direction: optuna.study.StudyDirection | str = "maximize"
) -> FrozenTrial | None:
    """The feasible trial (COMPLETE, user attribute ``feasible`` true, finite first value) with
    the best first value (the lowest number among equals), or None."""
    feasible = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.user_attrs.get("feasible") is True
        and t.values
        and math.isfinite(t.values[0])
    ]
    if not feasible:
        return None
    minimize = str(direction).lower().endswith("minimize")
    sign = 1.0 if minimize else -1.0
    return min(feasible, key=lambda t: (sign * t.values[0], t.number))
