"""What ``optimize`` prints: progress lines during the search and the summary at its end."""

from __future__ import annotations

import math
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

from optuna_spikenas.samplers.cellbycell import (
    CellByCellSampler,
    Phase,
    SearchState,
    attempts_by_slot,
    best_attempt,
)
from optuna_spikenas.samplers.screen import (
    RANK_ATTR,
    STAGE_ATTR,
    TRAIN,
    ScreenThenTrainSampler,
    counted_screen,
)
from optuna_spikenas.storage import redact
from optuna_spikenas.wording import plural

if TYPE_CHECKING:
    from tqdm import tqdm

    from optuna_spikenas.cpu_load import LoadWatch


def progress_line(message: str) -> None:
    """A line on stderr that does not break Optuna's progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def first_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """The trial's first objective (the score, or the accuracy alone), if it has values."""
    return trial.values[0] if trial.values else None


def duration_text(seconds: float) -> str:
    """``8.4 s``, ``3 min 12 s`` or ``1 h 05 min``."""
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def phase_name(k: int) -> str:
    """Phase 2 searches cells 1 and 2 together; phase k > 2 searches cell k."""
    return "phase 2 (cells 1-2)" if k == 2 else f"phase {k} (cell {k})"


def phase_scores(attempts: dict[int, list[FrozenTrial]], phase: Phase) -> list[float]:
    """The finite scores of the phase's candidates so far (one per candidate, as the sampler
    counts it: its first completed attempt)."""
    found = (best_attempt(attempts.get(slot, [])) for slot in range(phase.start, phase.end))
    return [t.values[0] for t in found if t is not None and _finite(first_value(t))]


def phase_times(
    state: SearchState, attempts: dict[int, list[FrozenTrial]], first_start: datetime
) -> list[tuple[float, float]]:
    """(seconds of the phase, seconds since the study's first trial began) at the end of each
    finished phase, from the trials' times in storage: a phase begins when its first trial
    began, or when the phase before ended if that is later (its trials waited for it)."""
    times = []
    previous_end = first_start
    for phase in state.phases[: len(state.winners)]:
        tried = [t for slot in range(phase.start, phase.end) for t in attempts.get(slot, [])]
        starts = [t.datetime_start for t in tried if t.datetime_start is not None]
        ends = [t.datetime_complete for t in tried if t.datetime_complete is not None]
        end = max(ends, default=previous_end)
        begin = max(min(starts, default=previous_end), previous_end)
        times.append(((end - begin).total_seconds(), (end - first_start).total_seconds()))
        previous_end = end
    return times


class PhaseProgress:
    """The cell-by-cell search's progress on stderr: a line that stays for each finished phase
    (its candidates, winner, score and time) and, during a phase, a bar over its candidates with
    an ETA and the phase's best score so far. Read from storage after each trial, so each of
    several workers sharing a study shows the whole study's progress. Use it as a context
    manager around ``study.optimize`` (it closes its bar) and pass it as a callback."""

    def __init__(self, study: optuna.Study) -> None:
        assert isinstance(study.sampler, CellByCellSampler)
        self.study = study
        self.sampler = study.sampler
        self.reported = 0  # finished phases printed so far
        self.bar: tqdm | None = None
        self.bar_start = -1  # the first slot of the bar's phase

    def __enter__(self) -> PhaseProgress:
        self.update()  # phases finished before this run, and the bar of the running one
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def update(self) -> None:
        from tqdm import tqdm

        trials = self.study.get_trials(deepcopy=False)
        state = self.sampler.state(self.study, trials=trials)
        attempts = attempts_by_slot(trials)
        if self.reported < len(state.winners):
            self.close()
            first = min(t.datetime_start for t in trials if t.datetime_start is not None)
            times = phase_times(state, attempts, first)
            for index in range(self.reported, len(state.winners)):
                progress_line(self.finished_line(state, index, attempts, times[index]))
            self.reported = len(state.winners)
        phase = state.current
        if phase is None or state.complete:
            self.close()
            unscored = len(state.phases) > len(state.winners)  # its last phase had no winner
            if phase is not None and unscored and self.reported < len(state.phases):
                progress_line(
                    f"{phase_name(phase.k)}: {plural(len(phase.candidates), 'candidate')}, none "
                    "scored a finite value: the network stops growing"
                )
                self.reported = len(state.phases)
            return
        if self.bar is None or self.bar_start != phase.start:
            self.close()
            self.bar = tqdm(
                total=len(phase.candidates),
                initial=state.settled,
                desc=phase_name(phase.k),
                bar_format="{desc}: {n_fmt}/{total_fmt} candidates |{bar}| "
                "{elapsed}<{remaining}{postfix}",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,  # the phase's line replaces it
            )
            self.bar_start = phase.start
        scores = phase_scores(attempts, phase)
        if scores:
            self.bar.set_postfix_str(f"best {max(scores):.4f}", refresh=False)
        self.bar.update(state.settled - self.bar.n)

    def finished_line(
        self,
        state: SearchState,
        index: int,
        attempts: dict[int, list[FrozenTrial]],
        times: tuple[float, float],
    ) -> str:
        phase, slot = state.phases[index], state.winners[index]
        winner = best_attempt(attempts[slot])
        assert winner is not None  # a phase's winner has a completed attempt
        count = len(phase.candidates)
        over = len(self.sampler.cells) - count
        dropped = f" ({over} more over the budget)" if over else ""
        return (
            f"{phase_name(phase.k)}: {plural(count, 'candidate')}{dropped} in "
            f"{duration_text(times[0])} (total {duration_text(times[1])}); winner trial "
            f"{winner.number}, score {first_value(winner):.4f}: {phase.architecture(slot)}"
        )


def elapsed_line(watch: LoadWatch) -> str:
    """How long the run took and, where measured, how much of the CPU other processes took."""
    line = f"search ran {duration_text(watch.elapsed)}"
    share = watch.overall_share()
    if share is not None:
        line += f"; other processes used {share:.0%} of the {watch.cpus} CPUs meanwhile"
    return line


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def print_cell_by_cell_result(
    study: optuna.Study, sampler: CellByCellSampler, shown: FrozenTrial | None = None
) -> None:
    """The grown network; only its trial number when it is ``shown``, the best trial that
    :func:`print_summary` has just printed."""
    final = sampler.result(study)
    if final is None:
        return
    state = sampler.state(study)
    status = "complete" if state.complete else "not complete yet (run the command again)"
    print(f"cell-by-cell search {status}: {len(state.winners)} cell choices fixed")
    if shown is not None and shown.number == final.number:
        print(f"  grown network: trial {final.number}, the best trial above")
        return
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


def print_summary(study: optuna.Study, url: str, study_name: str) -> FrozenTrial | None:
    """The trials' counts and the best trial; returns the best trial shown (None: none)."""
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
        return None
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
    return best
