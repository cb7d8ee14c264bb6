"""Screen, then train: the training-free score ranks ``screen`` candidates, the ``train_top``
best are trained, all in one single-objective study whose value is the validation accuracy.

Every trial says its stage in the user attribute ``stage``:

- ``"screen"``: a candidate proposed by the base sampler (random, TPE, NSGA-II), scored but not
  trained. Its score is the user attribute ``score``; it ends COMPLETE with the value ``-inf``
  (no accuracy was measured) and the constraint ``trained`` = 1, so that ``study.best_trial``,
  ``export`` and the summary never take it for a result, while its budgets' constraints stay as
  they are. The base sampler sees these trials with their score as value (``_ScoreView``), so
  TPE learns from the score. Stage 1 holds the lowest-numbered trials until ``screen`` distinct
  feasible candidates (canonical forms) are scored; infeasible proposals are recorded, never
  scored, and do not count.
- ``"train"``: trial ``B + r`` (``B``: the first trial of stage 2) trains the candidate of rank
  ``r + 1`` (user attribute ``screen_rank``; ``screened_trial`` is the screen trial it comes
  from), with the constraint ``trained`` = 0. Its value is the validation accuracy, reported
  after every epoch so the study's pruner can stop it (PRUNED).
- ``"surplus"``: a trial started when every rank was taken (a second worker's last trial), or
  the heartbeat's retry of a screen trial whose worker died (the next trials screened other
  candidates in its place). It ends PRUNED at once, with no parameters.

Storage is the only state, as in the cell-by-cell search. A trial's stage follows from the
trials numbered below it: it screens when fewer than ``screen`` candidates are scored there even
if every running one succeeds, trains when ``screen`` are scored, and otherwise waits. So a
trial of stage 2 starts only when stage 1 is settled, every worker ranks the same screened
trials, and ``random`` (seeded per trial number) screens the same candidates however many
workers share the study. A rank whose trial failed (its worker died and the heartbeat failed
it) is taken over by a trial that has no rank of its own; a rank is given up after
``recovery.MAX_FAILURES`` failures. The search ends by itself once every rank is trained or
pruned.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.constraint_list import LIST_KEY, NAMED_PREFIX
from optuna_spikenas.interrupts import stop_optimize
from optuna_spikenas.recovery import WORKER_KEY, attempts_settled, fail_stale_trials, mark_worker
from optuna_spikenas.storage import beat_while_sampling
from optuna_spikenas.study_binding import FINGERPRINT_ATTR

_logger = logging.getLogger(__name__)

STAGE_ATTR = "stage"
SCREEN, TRAIN, SURPLUS = "screen", "train", "surplus"
RANK_ATTR = "screen_rank"  # 1: the best score
SCREENED_ATTR = "screened_trial"
TRAINED_CONSTRAINT = "trained"
PARAMS_KEY = "screen:params"


def _is_retry(trial: FrozenTrial) -> bool:
    return "failed_trial" in trial.system_attrs


def counted_screen(trial: FrozenTrial) -> bool:
    """A counted screen: COMPLETE, within every budget, not a retry."""
    attrs = trial.user_attrs
    return (
        trial.state == TrialState.COMPLETE
        and attrs.get(STAGE_ATTR) == SCREEN
        and attrs.get("feasible") is True
        and "score" in attrs
        and not _is_retry(trial)
    )


def _score(trial: FrozenTrial) -> float:
    value = trial.user_attrs.get("score")
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else -math.inf


@dataclass(frozen=True)
class ScreenState:
    """What the trials in storage say about stage 2."""

    boundary: int | None  # the first trial of stage 2 (None: stage 1 is not over)
    ranked: tuple[FrozenTrial, ...]  # the screened trials to train, best score first
    attempts: tuple[tuple[FrozenTrial, ...], ...]  # per rank, the trials that trained it

    @property
    def complete(self) -> bool:
        return self.boundary is not None and all(attempts_settled(a) for a in self.attempts)


def _claiming(trial: FrozenTrial) -> bool:
    """True while ``trial`` runs and has not claimed its stage or rank yet."""
    attrs = trial.user_attrs
    return (
        trial.state == TrialState.RUNNING
        and RANK_ATTR not in attrs
        and attrs.get(STAGE_ATTR) in (None, TRAIN)
    )


def ranked_screens(trials: Sequence[FrozenTrial], boundary: int, top: int) -> list[FrozenTrial]:
    """The ``top`` best-scoring distinct screened candidates below ``boundary``: one trial per
    canonical form (the first), by score, ties to the lower trial number."""
    first: dict[str, FrozenTrial] = {}
    for t in trials:
        if t.number < boundary and counted_screen(t):
            first.setdefault(str(t.user_attrs.get("canonical")), t)
    return sorted(first.values(), key=lambda t: (-_score(t), t.number))[:top]


class ScreenThenTrainSampler(BaseSampler):
    """Screen ``screen`` candidates with the training-free score, then train the ``train_top``
    best (see the module's docstring). Use it with ``SpikeNASObjective`` of a config with
    ``[search] screen`` (the objective reads each trial's stage) in a study of its own.

    Args:
        screen: Distinct feasible candidates to score.
        train_top: How many of the best-scoring ones to train.
        base: The sampler proposing stage 1's candidates; None: uniform random over the
            space, seeded per trial number with ``seed`` (workers screen the same candidates).
        seed: The seed of that random proposer.
        poll_seconds: How often a waiting trial looks at the storage again.
    """

    def __init__(
        self,
        screen: int,
        train_top: int,
        base: BaseSampler | None = None,
        seed: int = 0,
        poll_seconds: float = 0.5,
    ) -> None:
        if not 1 <= train_top <= screen:
            raise ValueError(f"need 1 <= train_top <= screen, got {train_top} and {screen}")
        self.screen = screen
        self.train_top = train_top
        self.base = base
        self.seed = seed
        self.poll_seconds = poll_seconds
        self._random: dict[int, RandomSampler] = {}  # trial id -> its own seeded proposer
        self._claims: dict[int, dict[str, Any]] = {}  # trial id -> params of its rank
        self._stages: dict[int, str] = {}  # trial id -> stage, for this process's trials

    # --- what the storage says -------------------------------------------------------------

    def state(self, study: Study, trials: Sequence[FrozenTrial] | None = None) -> ScreenState:
        if trials is None:
            trials = study.get_trials(deepcopy=False)
        train = [t for t in trials if t.user_attrs.get(STAGE_ATTR) == TRAIN]
        firsts = [t.number for t in train if not _is_retry(t)]
        if not firsts:
            return ScreenState(None, (), ())
        boundary = min(firsts)
        ranked = ranked_screens(trials, boundary, self.train_top)
        attempts: list[list[FrozenTrial]] = [[] for _ in ranked]
        for t in train:
            rank = t.user_attrs.get(RANK_ATTR)
            if isinstance(rank, int) and 1 <= rank <= len(ranked):
                attempts[rank - 1].append(t)
        return ScreenState(boundary, tuple(ranked), tuple(tuple(a) for a in attempts))

    def is_complete(self, study: Study) -> bool:
        """True when every rank has been trained (or pruned, or given up)."""
        return self.state(study).complete

    def result(self, study: Study) -> FrozenTrial | None:
        """The trained trial with the best validation accuracy (None before any)."""
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(STAGE_ATTR) == TRAIN and t.value is not None
        ]
        done = [t for t in done if math.isfinite(t.value or 0.0)]
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def foreign_trials(self, study: Study) -> list[int]:
        """Finished trials without a stage: this search needs a study of its own."""
        return [
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and STAGE_ATTR not in t.user_attrs
        ]

    def _decide(self, study: Study, trial: FrozenTrial) -> str | None:
        """This trial's stage from the trials numbered below it; None: wait."""
        trials = study.get_trials(deepcopy=False)
        lower = [t for t in trials if t.number < trial.number and not _is_retry(t)]
        scored = {str(t.user_attrs.get("canonical")) for t in lower if counted_screen(t)}
        if len(scored) >= self.screen:
            return TRAIN
        pending = 0
        for t in lower:
            if t.state != TrialState.RUNNING:
                continue
            attrs = t.user_attrs
            stage = attrs.get(STAGE_ATTR)
            if stage is None or (
                stage == SCREEN
                and attrs.get("feasible") is not False
                and attrs.get("canonical") not in scored
            ):
                pending += 1
        if len(scored) + pending < self.screen:
            return SCREEN
        return None

    def _rank(self, study: Study, trial: FrozenTrial) -> tuple[str, FrozenTrial | None, int]:
        """A stage-2 trial's rank (1-based) and the screened trial it trains; waits while no
        rank is free and not all are settled (then: SURPLUS)."""
        while True:
            trials = study.get_trials(deepcopy=False)
            state = self.state(study, trials)
            assert state.boundary is not None  # this trial itself is marked TRAIN
            natural = trial.number - state.boundary
            if natural < len(state.ranked) and not state.attempts[natural]:
                return TRAIN, state.ranked[natural], natural + 1
            by_number = {t.number: t for t in trials}
            for r, tried in enumerate(state.attempts):
                if r == natural or attempts_settled(tried):
                    continue
                if any(t.state == TrialState.RUNNING for t in tried):
                    continue  # trained right now (a WAITING retry is not: it may never run)
                if not tried:  # unclaimed: its own trial may still be about to claim it
                    owner = by_number.get(state.boundary + r)
                    if owner is None or owner.number > trial.number or _claiming(owner):
                        continue
                return TRAIN, state.ranked[r], r + 1
            if state.complete or not state.ranked:
                return SURPLUS, None, 0
            beat_while_sampling(study, trial._trial_id)
            fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    def _wait_for_twin(self, study: Study, trial: FrozenTrial) -> None:
        rank = trial.user_attrs.get(RANK_ATTR)
        while any(
            t.number != trial.number
            and t.state == TrialState.RUNNING
            and not _is_retry(t)
            and t.user_attrs.get(STAGE_ATTR) == TRAIN
            and t.user_attrs.get(RANK_ATTR) == rank
            for t in study.get_trials(deepcopy=False)
        ):
            beat_while_sampling(study, trial._trial_id)
            fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    # --- Optuna's sampler interface ----------------------------------------------------------

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        study = _whole(study)
        beat_while_sampling(study, trial._trial_id)
        mark_worker(study, trial._trial_id, trial.system_attrs.get(WORKER_KEY))
        storage = study._storage
        if _is_retry(trial):  # Optuna's retry of a trial whose worker died
            stage = trial.user_attrs.get(STAGE_ATTR)
            if stage != TRAIN:  # a screen trial was replaced by the next ones: do not redo it
                stage = SURPLUS
                _set_user_attr(study, trial, STAGE_ATTR, stage)
            self._stages[trial._trial_id] = stage
            self._claims[trial._trial_id] = dict(trial.params)
            if stage == TRAIN:  # wait for a trial that took the rank over: reuse its accuracy
                self._wait_for_twin(study, trial)
            return
        if "fixed_params" in trial.system_attrs or self.foreign_trials(study):
            raise ValueError(
                "ScreenThenTrainSampler needs a study of its own, and proposes every candidate "
                "itself: do not enqueue trials or mix samplers in its study"
            )
        announced = False
        while (stage := self._decide(study, trial)) is None:
            if not announced:
                _logger.info("trial %d waits for the screen to finish", trial.number)
                announced = True
            beat_while_sampling(study, trial._trial_id)
            fail_stale_trials(study)
            time.sleep(self.poll_seconds)
        _set_user_attr(study, trial, STAGE_ATTR, stage)
        if stage == TRAIN:
            stage, screened, rank = self._rank(study, trial)
            if screened is None:
                _set_user_attr(study, trial, STAGE_ATTR, stage)
            else:
                _set_user_attr(study, trial, RANK_ATTR, rank)
                _set_user_attr(study, trial, SCREENED_ATTR, screened.number)
                _set_user_attr(study, trial, "score", _score(screened))
                storage.set_trial_system_attr(trial._trial_id, PARAMS_KEY, screened.params)
                self._claims[trial._trial_id] = dict(screened.params)
        self._stages[trial._trial_id] = stage
        if stage == SCREEN and self.base is not None:
            self.base.before_trial(_ScoreView.of(study), trial)

    def _stage(self, study: Study, trial: FrozenTrial) -> str | None:
        stage = self._stages.get(trial._trial_id)
        if stage is None:  # not started by this process
            stage = study._storage.get_trial(trial._trial_id).user_attrs.get(STAGE_ATTR)
        return stage

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        study = _whole(study)
        if self.base is None or self._stage(study, trial) != SCREEN:
            return {}
        return self.base.infer_relative_search_space(_ScoreView.of(study), trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        study = _whole(study)
        if self.base is None or not search_space or self._stage(study, trial) != SCREEN:
            return {}
        return self.base.sample_relative(_ScoreView.of(study), trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        study = _whole(study)
        if self._stage(study, trial) == SCREEN:
            if self.base is not None:
                return self.base.sample_independent(
                    _ScoreView.of(study), trial, param_name, param_distribution
                )
            proposer = self._random.get(trial._trial_id)
            if proposer is None:
                proposer = self._random[trial._trial_id] = RandomSampler(
                    seed=_trial_seed(self.seed, trial.number)
                )
            return proposer.sample_independent(study, trial, param_name, param_distribution)
        params = self._claims.get(trial._trial_id)
        if params is None:  # claimed by another process: read the claim
            attrs = study._storage.get_trial_system_attrs(trial._trial_id)
            params = self._claims[trial._trial_id] = dict(attrs.get(PARAMS_KEY, {}))
        if param_name in params:
            return params[param_name]
        return RandomSampler(seed=_trial_seed(self.seed, trial.number)).sample_independent(
            study, trial, param_name, param_distribution
        )

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        study = _whole(study)
        stage = self._stages.pop(trial._trial_id, None)
        self._claims.pop(trial._trial_id, None)
        self._random.pop(trial._trial_id, None)
        if stage == SCREEN and self.base is not None:
            self.base.after_trial(_ScoreView.of(study), trial, state, values)
        if stage == SURPLUS:
            stop_optimize(study)
            return
        if stage != TRAIN:
            return
        # Optuna calls this before it stores the trial's result: count it as stored.
        finishing = copy.copy(trial)
        finishing.state = state
        trials = [
            finishing if t.number == trial.number else t for t in study.get_trials(deepcopy=False)
        ]
        if self.state(study, trials).complete:
            stop_optimize(study)


class _ScoreView(Study):
    """The study as the base sampler should see it in stage 1: only the screen trials, each
    with its training-free score as its value and without the ``trained`` constraint (so TPE
    learns from the score, not from the -inf every screen trial holds)."""

    @classmethod
    def of(cls, study: Study) -> _ScoreView:
        view = cls.__new__(cls)
        view.__dict__.update(study.__dict__)
        return view

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Any = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = super()._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        return [
            _as_scored(t, deepcopy)
            for t in trials
            if t.user_attrs.get(STAGE_ATTR) == SCREEN and not _is_retry(t)
        ]


def _as_scored(trial: FrozenTrial, deep: bool) -> FrozenTrial:
    view = copy.deepcopy(trial) if deep else copy.copy(trial)
    # without ``trained``, and without the constraints' list for the dashboard, which repeats it
    hidden = {f"{NAMED_PREFIX}{TRAINED_CONSTRAINT}", LIST_KEY}
    if not hidden.isdisjoint(trial.system_attrs):
        view.system_attrs = {k: v for k, v in trial.system_attrs.items() if k not in hidden}
    if trial.state == TrialState.COMPLETE and trial.user_attrs.get("feasible"):
        view.value = _score(trial)
    return view


def _whole(study: Study) -> Study:
    """The whole study: with ``HyperbandPruner`` Optuna hands samplers a study filtered to the
    trial's bracket (``optuna.pruners._filter_study``), in which the screen looks incomplete."""
    inner = getattr(study, "_study", None)
    return inner if isinstance(inner, Study) else study


def _set_user_attr(study: Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Write a user attribute of a trial in ``before_trial``, to storage and to the trial as
    the objective's ``optuna.Trial`` holds it (Optuna passes its cached record)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)
    trial.user_attrs[key] = value


def _trial_seed(seed: int, number: int) -> int:
    digest = hashlib.sha256(f"{seed}|screen trial {number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def find_trained_duplicate(
    study: optuna.Study, canonical_key: str, fingerprint: str, own_number: int
) -> FrozenTrial | None:
    """A completed stage-2 trial of ``study`` that trained this canonical form under the same
    value-defining settings (its accuracy is reused; a screen trial's score never is)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = t.user_attrs
        if (
            t.number != own_number
            and attrs.get(STAGE_ATTR) == TRAIN
            and attrs.get("canonical") == canonical_key
            and attrs.get(FINGERPRINT_ATTR) == fingerprint
        ):
            return t
    return None
