"""SpikeNAS's fast memory-aware search: a pruned op set, searched one cell at a time.

The search runs in phases k = 2 ... max_cells. Its candidates are the valid cells over the pruned
op set, one per distinct function (``space.distinct_cells``: the 2^6 = 64 cells over
``{skip, conv3x3}`` compute 39 functions). In phase 2 a candidate fills cells 1 and 2; in phase
k > 2 cells 1 ... k-1 keep the cells already chosen and the candidate fills cell k. A candidate
whose network would exceed the memory budget is dropped before the phase starts, so it is never
built, scored or even proposed. When every candidate of a phase has
been scored, the best-scoring one is fixed and the network grows by one cell, while the budget
allows and until ``max_cells``.

Storage is the only state. Trial numbers are handed out by the storage, one per trial, and slot
``n`` of the search (the n-th candidate, counting phase after phase) belongs to trial ``n``, so
several workers sharing a study never propose the same candidate. A trial whose slot lies in a
phase that cannot be planned yet (the previous phase still has trials running in other workers)
waits for it. A slot left without a result (its trial failed, or its worker died and the
heartbeat marked it failed) is taken over by the next trial that would otherwise wait, so a
killed run that is restarted finishes with the same result.

The result (the grown network: the winner of the last finished phase) is marked as
``result_mark`` says. Each trial also records the phase of its slot, so that the result can be
read from the trials alone, without this sampler's settings and budget
(:func:`grown_network`, what ``export`` uses).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.interrupts import stop_optimize
from optuna_spikenas.recovery import WORKER_KEY, attempts_settled, fail_stale_trials, mark_worker
from optuna_spikenas.samplers.result_mark import mark_result
from optuna_spikenas.space import (
    OPS,
    Architecture,
    Cell,
    SearchSpace,
    architecture_params,
    distinct_cells,
    op_code,
)
from optuna_spikenas.storage import beat_while_sampling

_logger = logging.getLogger(__name__)

SLOT_KEY = "cellbycell:slot"
PARAMS_KEY = "cellbycell:params"
PHASE_KEY = "cellbycell:phase"  # [k, start, end] of the phase of the trial's slot


@dataclass(frozen=True)
class Phase:
    """Phase ``k``: slots ``start .. start + len(candidates) - 1`` try ``candidates`` as cell k
    (as cells 1 and 2 when k = 2) after the cells already chosen in ``prefix``."""

    k: int
    start: int
    prefix: tuple[Cell, ...]
    candidates: tuple[Cell, ...]
    width: int

    @property
    def end(self) -> int:
        return self.start + len(self.candidates)

    def architecture(self, slot: int) -> Architecture:
        cell = self.candidates[slot - self.start]
        cells = (cell, cell) if self.k == 2 else (*self.prefix, cell)
        return Architecture(cells, self.width)


@dataclass(frozen=True)
class SearchState:
    """What the trials in storage say: the phases planned so far, and whether the search is
    complete (no phase can follow the last one) or waits on the last one."""

    phases: tuple[Phase, ...]
    complete: bool
    winners: tuple[int, ...]  # the winning slot of each finished phase
    settled: int = 0  # slots of the last phase with a result

    def phase_of(self, slot: int) -> Phase | None:
        for phase in self.phases:
            if phase.start <= slot < phase.end:
                return phase
        return None

    @property
    def current(self) -> Phase | None:
        """The last planned phase (the one still running when the search is not complete)."""
        return self.phases[-1] if self.phases else None


class CellByCellSampler(BaseSampler):
    """SpikeNAS's cell-by-cell search as an Optuna sampler.

    It proposes values for the parameters of :func:`optuna_spikenas.space.suggest_architecture`
    over a space with per-cell architectures (``shared_cell=False``), ``num_cells`` searched over
    ``2 .. max_cells`` and one width, always using only the pruned ``ops``; every other sampler
    sees the same full-op parameters.

    Example::

        sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=4, width=16,
                                    fits_budget=lambda arch: params(arch) <= 1_200_000)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective)           # stops by itself when the search is complete
        best = sampler.result(study)        # the grown network's trial

    Args:
        ops: The pruned op set (names or codes).
        max_cells: The largest number of cells the network may grow to.
        width: Channels of the first cell.
        fits_budget: True when an architecture fits the memory budget (analytic, no network;
            deterministic: each phase is planned with it once and remembered).
        poll_seconds: How often a waiting trial looks at the storage again.
    """

    def __init__(
        self,
        ops: Sequence[str | int] = ("skip", "conv3x3"),
        max_cells: int = 4,
        width: int = 16,
        fits_budget: Callable[[Architecture], bool] | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        if max_cells < 2:
            raise ValueError("max_cells must be at least 2: the search starts with two cells")
        if isinstance(ops, str):
            raise ValueError(f"ops must be a list of operation names, e.g. [{ops!r}], not a string")
        self.ops = tuple(OPS[op_code(op)] for op in ops)
        if not set(self.ops) - {"zero"}:
            raise ValueError(
                f"ops {list(self.ops)} has no op that carries a signal: add skip, conv1x1, "
                "conv3x3 or avgpool3x3"
            )
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.max_cells = max_cells
        self.width = width
        self.fits_budget = fits_budget or (lambda arch: True)
        self.poll_seconds = poll_seconds
        self.space = SearchSpace(
            num_cells=tuple(range(2, max_cells + 1)), widths=(width,), shared_cell=False
        )
        self.cells = tuple(distinct_cells(self.ops))
        self._fallback = RandomSampler()
        self._planned: dict[tuple[int, int, tuple[Cell, ...]], Phase] = {}
        self._claims: dict[int, dict[str, Any]] = {}  # trial id -> its claim's params, as stored

    def mismatches(self, space: SearchSpace, ops: Sequence[str]) -> list[str]:
        """How this sampler's settings contradict an objective's space and ops ([]: none)."""
        found = []
        if tuple(space.widths) != (self.width,):
            found.append(f"width {self.width} here, widths {list(space.widths)} there")
        if space.max_cells != self.max_cells:
            found.append(f"max_cells {self.max_cells} here, {space.max_cells} there")
        if tuple(ops) != self.ops:
            found.append(f"ops {list(self.ops)} here, {list(ops)} there")
        return found

    # --- what the storage says -------------------------------------------------------------

    def state(
        self,
        study: Study,
        finishing: FrozenTrial | None = None,
        trials: Sequence[FrozenTrial] | None = None,
    ) -> SearchState:
        """Plan the phases from the trials in storage (``trials`` when just read), as far as
        their results allow. ``finishing`` is a trial whose result Optuna has not written to
        storage yet."""
        if trials is None:
            trials = study.get_trials(deepcopy=False)
        if finishing is not None:
            trials = [finishing if t.number == finishing.number else t for t in trials]
        attempts = attempts_by_slot(trials)
        phases: list[Phase] = []
        winners: list[int] = []
        prefix: tuple[Cell, ...] = ()
        start = 0
        for k in range(2, self.max_cells + 1):
            phase = self._plan_phase(k, start, prefix)
            if not phase.candidates:
                break
            phases.append(phase)
            settled = sum(
                attempts_settled(attempts.get(s, [])) for s in range(phase.start, phase.end)
            )
            if settled < len(phase.candidates):
                return SearchState(tuple(phases), False, tuple(winners), settled)
            winner = _best_slot(attempts, range(phase.start, phase.end))
            if winner is None:  # nothing in this phase was scored: it cannot grow further
                break
            winners.append(winner)
            chosen = phase.candidates[winner - phase.start]
            prefix = (chosen, chosen) if k == 2 else (*prefix, chosen)
            start = phase.end
        return SearchState(
            tuple(phases), True, tuple(winners), len(phases[-1].candidates) if phases else 0
        )

    def _plan_phase(self, k: int, start: int, prefix: tuple[Cell, ...]) -> Phase:
        """Phase ``k`` after ``prefix``, its candidates filtered by the budget once (``state``
        plans the phases again on every look at the storage)."""
        key = (k, start, prefix)
        if key not in self._planned:
            every = Phase(k, start, prefix, self.cells, self.width)
            fits = [self.fits_budget(every.architecture(start + i)) for i in range(len(self.cells))]
            fitting = tuple(c for c, ok in zip(self.cells, fits, strict=True) if ok)
            self._planned[key] = Phase(k, start, prefix, fitting, self.width)
        return self._planned[key]

    def foreign_trials(
        self, study: Study, trials: Sequence[FrozenTrial] | None = None
    ) -> list[int]:
        """Numbers of trials with a result that this sampler did not make (it needs a study of
        its own: trial numbers are its slots). A failed trial never counts: it may be one of
        ours whose worker died before recording its slot."""
        return [
            t.number
            for t in (study.get_trials(deepcopy=False) if trials is None else trials)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and SLOT_KEY not in t.system_attrs
            and "failed_trial" not in t.system_attrs
        ]

    def is_complete(self, study: Study) -> bool:
        """True when every phase has been scored and the network cannot grow further."""
        return self.state(study).complete

    def result(self, study: Study) -> FrozenTrial | None:
        """The trial of the final, grown network: the winner of the last phase."""
        trials = study.get_trials(deepcopy=False)
        return _result(self.state(study, trials=trials), trials)

    # --- Optuna's sampler interface ----------------------------------------------------------

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        beat_while_sampling(study, trial._trial_id)  # first: the trial exists from now on
        self._claims.pop(trial._trial_id, None)  # left by an unfinished trial of another storage
        mark_worker(study, trial._trial_id, trial.system_attrs.get(WORKER_KEY))
        if SLOT_KEY in trial.system_attrs or "failed_trial" in trial.system_attrs:
            # A retry made by Optuna's RetryFailedTrialCallback keeps its candidate; it waits
            # while another worker's trial that took the orphaned slot over is still running,
            # so that it reuses that trial's score instead of scoring the candidate twice.
            self._wait_for_slot_twin(study, trial)
            return
        if study.directions != [StudyDirection.MAXIMIZE]:
            raise ValueError(
                "CellByCellSampler keeps each phase's highest value: its study needs one "
                'objective, direction="maximize"'
            )
        # one read for this check and the first claim
        trials: list[FrozenTrial] | None = study.get_trials(deepcopy=False)
        if "fixed_params" in trial.system_attrs or self.foreign_trials(study, trials):
            raise ValueError(
                "CellByCellSampler needs a study of its own, and proposes every candidate "
                "itself: do not enqueue trials or mix samplers in its study"
            )
        while True:
            slot, arch, phase = self._claim(study, trial, trials)
            trials = None
            params: dict[str, Any] = {}
            if arch is not None:
                params = architecture_params(arch, self.space)
            study._storage.set_trial_system_attr(trial._trial_id, SLOT_KEY, slot)
            study._storage.set_trial_system_attr(trial._trial_id, PARAMS_KEY, params)
            if phase is not None:
                where = [phase.k, phase.start, phase.end]
                study._storage.set_trial_system_attr(trial._trial_id, PHASE_KEY, where)
            self._claims[trial._trial_id] = params  # what storage now holds: no read per param
            if slot < 0 or slot == trial.number:  # its own slot, or the final network
                return
            # An adopted orphan. Read back after one poll, so that a worker that adopted the
            # same slot at the same moment has written its claim: the slot goes to a retry of it
            # taken up meanwhile (which cannot have seen this claim yet), else to the adopter
            # with the lowest number; the others claim again.
            time.sleep(self.poll_seconds)
            trials = study.get_trials(deepcopy=False)  # also the next claim's read
            below = [t for t in trials if t.number < trial.number]
            if not _runs_slot(trials, trial, slot, retry=True) and not _runs_slot(
                below, trial, slot, retry=False
            ):
                return

    def _claim(
        self, study: Study, trial: FrozenTrial, trials: Sequence[FrozenTrial] | None
    ) -> tuple[int, Architecture | None, Phase | None]:
        """The slot this trial works on, its architecture and its phase (None for the final
        network, re-proposed), waiting while the phase that holds the trial's own slot cannot be
        planned yet (``trials``: the storage as just read, else read here)."""
        announced = False
        while True:
            beat_while_sampling(study, trial._trial_id)
            state, trials = self.state(study, trials=trials), None
            phase = state.phase_of(trial.number)
            if phase is not None:
                return trial.number, phase.architecture(trial.number), phase
            current = state.current
            if state.complete or current is None:
                # Nothing left to search: re-propose the final network (a duplicate, free).
                final = state.winners[-1] if state.winners else -1
                owner = state.phase_of(final)
                return -1, owner.architecture(final) if owner else None, None
            orphan = self._orphan_slot(study, current, trial.number)
            if orphan is not None:
                return orphan, current.architecture(orphan), current
            if not announced:
                _logger.info(
                    "trial %d waits for phase %d (cell %d) to finish in other workers",
                    trial.number,
                    current.k,
                    current.k,
                )
                announced = True
            fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    def _wait_for_slot_twin(self, study: Study, trial: FrozenTrial) -> None:
        while True:
            trials = study.get_trials(deepcopy=False)
            by_number = {t.number: t for t in trials}
            slot = _slot_of(by_number.get(trial.number, trial), by_number)
            # a fresh trial that took the slot over (never another retry: no deadlock)
            if not _runs_slot(trials, trial, slot, retry=False):
                return
            beat_while_sampling(study, trial._trial_id)
            fail_stale_trials(study)  # a twin whose worker died stops holding the slot
            time.sleep(self.poll_seconds)

    def _orphan_slot(self, study: Study, phase: Phase, own_number: int) -> int | None:
        """The first slot of ``phase`` that no live trial works on and that has no result."""
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != own_number]
        attempts = attempts_by_slot(trials)
        for slot in range(phase.start, phase.end):
            tried = attempts.get(slot, [])
            # A WAITING retry (Optuna's RetryFailedTrialCallback) is not live: this trial may be
            # the only worker left, so it takes the candidate; the retry later reuses the score.
            live = any(t.state == TrialState.RUNNING for t in tried)
            if not live and not attempts_settled(tried):
                return slot
        return None

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        params = self._claims.get(trial._trial_id)  # read once per trial, not once per param
        if params is None:  # not claimed by this process (a retry keeping its claim): read it
            attrs = study._storage.get_trial_system_attrs(trial._trial_id)
            params = self._claims[trial._trial_id] = attrs.get(PARAMS_KEY, {})
        if param_name in params:
            return params[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._claims.pop(trial._trial_id, None)
        # Optuna calls this before it stores the trial's result: count it as stored.
        finishing = copy.copy(trial)
        finishing.state = state
        finishing.values = values
        trials = study.get_trials(deepcopy=False)
        trials = [finishing if t.number == trial.number else t for t in trials]
        search = self.state(study, trials=trials)
        mark_result(study, trial, _result(search, trials), search.complete)
        if search.complete:
            stop_optimize(study)


# --- the result, from the trials alone ----------------------------------------------------


@dataclass(frozen=True)
class GrownNetwork:
    """The cell-by-cell search's result as its trials record it."""

    trial: FrozenTrial  # the winner of the last finished phase
    cells: int  # its number of cells (k of that phase)
    unfinished: int | None  # the phase after it, when it has started but is not finished


def grown_network(trials: Sequence[FrozenTrial]) -> GrownNetwork | None:
    """:meth:`CellByCellSampler.result` read from the trials alone, without the sampler's
    settings or budget (``export`` has neither): the winner of the last finished phase, each
    phase as its trials recorded it when they claimed their slots (``PHASE_KEY``). None when no
    phase has finished, or the trials were made before phases were recorded."""
    attempts = attempts_by_slot(trials)
    phases = sorted(
        {tuple(t.system_attrs[PHASE_KEY]) for t in trials if PHASE_KEY in t.system_attrs}
    )
    grown: GrownNetwork | None = None
    for k, start, end in phases:
        slots = range(start, end)
        if not all(attempts_settled(attempts.get(slot, [])) for slot in slots):
            return None if grown is None else replace(grown, unfinished=k)
        slot = _best_slot(attempts, slots)
        winner = None if slot is None else best_attempt(attempts[slot])
        if winner is None:  # nothing in the phase scored: the network stopped growing
            break
        grown = GrownNetwork(winner, k, None)
    return grown


def _result(state: SearchState, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The winner of ``state``'s last finished phase, read from ``trials``."""
    if not state.winners:
        return None
    return best_attempt(attempts_by_slot(trials)[state.winners[-1]])


# --- reading attempts from the trials --------------------------------------------------------


def _runs_slot(trials: Sequence[FrozenTrial], own: FrozenTrial, slot: int, retry: bool) -> bool:
    """True when a running trial other than ``own`` works on ``slot``: one of Optuna's retries
    (``retry``), or a fresh trial (not ``retry``)."""
    by_number = {t.number: t for t in trials}
    return any(
        t.number != own.number
        and t.state == TrialState.RUNNING
        and ("failed_trial" in t.system_attrs) == retry
        and _slot_of(t, by_number) == slot
        for t in trials
    )


def _slot_of(trial: FrozenTrial, by_number: dict[int, FrozenTrial]) -> int:
    """The slot a trial works on: its recorded slot, its original's for a retry, else its
    number (a trial whose sampler has not recorded its slot yet works on its own)."""
    seen = set()
    while "failed_trial" in trial.system_attrs and trial.number not in seen:
        seen.add(trial.number)
        original = by_number.get(trial.system_attrs["failed_trial"])
        if original is None:
            break
        trial = original
    return trial.system_attrs.get(SLOT_KEY, trial.number)


def attempts_by_slot(trials: Sequence[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """Each candidate slot's trials (the first attempt and its retries), from the trials alone
    (also read by ``summary.py``'s phase lines, so that they cannot disagree with the sampler)."""
    by_number = {t.number: t for t in trials}
    attempts: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        attempts.setdefault(_slot_of(t, by_number), []).append(t)
    return attempts


def best_attempt(tried: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The slot's result: its first complete attempt with values (None while there is none)."""
    done = [t for t in tried if t.state == TrialState.COMPLETE and t.values]
    return min(done, key=lambda t: t.number) if done else None


def _best_slot(attempts: dict[int, list[FrozenTrial]], slots: range) -> int | None:
    """The slot with the highest finite score (the study's first objective); ties go to the
    lowest slot."""
    best: tuple[float, int] | None = None
    for slot in slots:
        trial = best_attempt(attempts.get(slot, []))
        if trial is None or not _finite(trial.values[0]):
            continue
        if best is None or trial.values[0] > best[0]:
            best = (trial.values[0], slot)
    return None if best is None else best[1]


def _finite(value: float | None) -> bool:
    return value is not None and value not in (float("inf"), float("-inf")) and value == value
