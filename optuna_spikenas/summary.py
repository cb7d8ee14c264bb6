"""What ``optimize`` prints: progress lines during the search and the summary at its end."""

from __future__ import annotations

import math
import sys

import optuna

from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.screen import (
    RANK_ATTR,
    STAGE_ATTR,
    TRAIN,
    ScreenThenTrainSampler,
    counted_screen,
)
from optuna_spikenas.storage import redact


def progress_line(message: str) -> None:
    """A line on stderr that does not break Optuna's progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def first_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """The trial's first objective (the score, or the accuracy alone), if it has values."""
    return trial.values[0] if trial.values else None


class PhaseProgress:
    """One status line for the cell-by-cell search, rewritten after each trial."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        assert isinstance(study.sampler, CellByCellSampler)
        state = study.sampler.state(study)
        phase = state.current
        if phase is None:
            return
        trials = study.get_trials(deepcopy=False)
        scores = [v for t in trials if (v := first_value(t)) is not None and math.isfinite(v)]
        best = f", best score {max(scores):.4f}" if scores else ""
        print(
            f"\rcell {phase.k}: {state.settled}/{len(phase.candidates)} candidates{best}   ",
            end="\n" if state.complete else "",
            file=sys.stderr,
            flush=True,
        )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def print_cell_by_cell_result(study: optuna.Study, sampler: CellByCellSampler) -> None:
    final = sampler.result(study)
    if final is None:
        return
    state = sampler.state(study)
    status = "complete" if state.complete else "not complete yet (run the command again)"
    print(f"cell-by-cell search {status}: {len(state.winners)} cell choices fixed")
    print(f"  grown network: trial {final.number}, score {first_value(final):.4f}")
    print(f"  architecture   {final.user_attrs['architecture']}")
    print(f"  parameters     {final.user_attrs['parameters']:,}")
    if "area_mm2" in final.user_attrs:
        print(f"  hardware       {hardware_costs(final.user_attrs)}")


def print_screen_result(study: optuna.Study, sampler: ScreenThenTrainSampler) -> None:
    """Screen, then train: the stages' counts and the trained winner with its score rank."""
    trials = study.get_trials(deepcopy=False)
    screened = [t for t in trials if counted_screen(t)]
    train = [t for t in trials if t.user_attrs.get(STAGE_ATTR) == TRAIN]
    pruned = [t for t in train if t.state == optuna.trial.TrialState.PRUNED]
    state = sampler.state(study, trials)
    status = "complete" if state.complete else "not complete yet (run the command again)"
    print(
        f"screen then train {status}: {len(screened)} candidates screened, "
        f"{len(train) - len(pruned)} trained to the end, {len(pruned)} pruned"
    )
    winner = sampler.result(study)
    if winner is None:
        print("  no candidate was trained to the end")
        return
    attrs = winner.user_attrs
    print(
        f"  trained winner: trial {winner.number}, val accuracy {winner.value:.4f}, score rank "
        f"{attrs.get(RANK_ATTR)} of {sampler.train_top} (score {attrs.get('score', math.nan):.4f})"
    )
    print(f"  architecture    {attrs['architecture']}")


def spread_note(attrs: dict) -> str:
    """`` (spread 0.84 over 4 initialisations)`` for a trial scored more than once, else ''."""
    if "score_spread" not in attrs:
        return ""
    return (
        f" (spread {attrs['score_spread']:.4f} over {len(attrs['score_per_init'])} initialisations)"
    )


def runner_up_within_spread(
    best: optuna.trial.FrozenTrial, feasible: list[optuna.trial.FrozenTrial]
) -> str | None:
    """A line when the best other architecture scores closer to the best than the best's
    score spreads over its initialisations: the search cannot tell the two apart."""
    spread = best.user_attrs.get("score_spread")
    canonical = best.user_attrs.get("canonical")
    others = [t for t in feasible if t.user_attrs.get("canonical") != canonical]
    if spread is None or not others:
        return None
    second = max(others, key=lambda t: t.values[0])
    gap = best.values[0] - second.values[0]
    if gap >= spread:
        return None
    return (
        f"  runner-up     trial {second.number} scores {gap:.4f} less, within the best's spread "
        f"({spread:.4f}): the score does not tell these two apart; train both to choose"
    )


def hardware_costs(attrs: dict) -> str:
    return (
        f"{attrs['area_mm2']:.3f} mm², {attrs['latency_ms']:.3f} ms, {attrs['energy_uj']:.3f} µJ "
        f"per image ({attrs['hardware_profile']})"
    )


def print_summary(study: optuna.Study, url: str, study_name: str) -> None:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    scored = [
        t for t in trials if t.user_attrs.get("feasible") and "duplicate_of" not in t.user_attrs
    ]
    duplicates = [t for t in trials if "duplicate_of" in t.user_attrs]
    infeasible = [t for t in trials if not t.user_attrs.get("feasible")]
    print(
        f"{len(trials)} trials: {len(scored)} scored, {len(duplicates)} duplicates reused, "
        f"{len(infeasible)} invalid or over budget"
    )
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    if pruned:
        print(f"{len(pruned)} trials pruned during training")
    feasible = [t for t in trials if t.user_attrs.get("feasible") and _finite(first_value(t))]
    if not feasible:
        within = [t for t in trials if t.user_attrs.get("feasible")]
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if within or any(t.user_attrs.get("feasible") for t in failed):
            print(
                "no architecture within the budget got a finite score: the scores were -inf "
                "(the spike patterns could not tell the images apart) or the trials failed "
                "(see score_error); try other [score] settings"
            )
        else:
            print("no feasible architecture was found; loosen the budget or run more trials")
        return
    best = max(feasible, key=lambda t: t.values[0])  # feasible trials have values
    attrs = best.user_attrs
    if "fitness" in attrs:  # AutoSNN: the fitness, or (accuracy, spikes)
        what = "fitness" if len(study.directions) == 1 else "accuracy"
    else:  # the score, or the accuracy alone ([train] objectives = "accuracy")
        what = "accuracy" if len(study.directions) == 1 and "score" in attrs else "score"
    print(f"best trial {best.number}: {what} {first_value(best):.4f}{spread_note(attrs)}")
    close = runner_up_within_spread(best, feasible) if what == "score" else None
    if close is not None:
        print(close)
    width = f"  (width {attrs['width']})" if "width" in attrs else ""
    print(f"  architecture  {attrs['architecture']}{width}")
    print(
        f"  parameters    {attrs['parameters']:,}  ({attrs['memory_bits'] / 8e6:.3f} MB at "
        f"{attrs['weight_bits']} bits)"
    )
    if "area_mm2" in attrs:
        print(f"  hardware      {hardware_costs(attrs)}")
    if "fitness" in attrs:
        print(
            f"  accuracy      {attrs['accuracy']:.4f} (held-out, shared weights), "
            f"{attrs['spikes_per_image']:,.0f} spikes per image, fitness {attrs['fitness']:.4f}"
        )
    if "val_accuracy" in attrs:
        print(f"  val accuracy  {attrs['val_accuracy']:.4f}  (test {attrs['test_accuracy']:.4f})")
    if len(study.directions) > 1:
        front = [t for t in study.best_trials if t.user_attrs.get("feasible")]
        print(f"  Pareto front: trials {[t.number for t in front]}")
    command = "best-trial" if len(study.directions) == 1 else "best-trials"
    print(f"inspect it:  optuna {command} --storage {redact(url)} --study-name {study_name}")
