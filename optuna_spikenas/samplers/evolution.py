"""AutoSNN's evolutionary search (Na et al., ICML 2022) as an Optuna sampler.

Storage is the only state: each trial records its generation, origin, parents and candidate in
system attrs, and a proposal's randomness comes from (seed, trial number), so a seeded single
worker is deterministic, also when interrupted and resumed, and workers sharing a study
cooperate. A worker claims a place and a candidate by writing them, then reading the storage
back; on a clash with another worker (a generation over-full, a candidate claimed twice) it
withdraws and tries again: of two clashing claims the later one always sees the clash. The
search's result, its fittest candidate, is marked as ``result_mark`` says and read from the
trials alone by :func:`fittest_trial`.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import TrialPruned
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.autosnn_space import BLOCKS, PARAM_NAMES
from optuna_spikenas.interrupts import stop_optimize
from optuna_spikenas.recovery import WORKER_KEY, mark_worker
from optuna_spikenas.samplers.result_mark import mark_result
from optuna_spikenas.space import (
    BACKWARD,
    EDGES,
    FORWARD,
    OPS,
    SearchSpace,
    direction_param,
    edge_param,
)
from optuna_spikenas.storage import beat_while_sampling

Choice = str | int | float | bool | None
Genome = tuple[int, ...]  # the index of each parameter's choice, in search-space order

AUTOSNN_SEARCH_SPACE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: BLOCKS for name in PARAM_NAMES}
)
"""AutoSNN's macro space: five searched blocks, each one of five (5^5 = 3,125 candidates)."""

GENERATION_KEY = "evolution:generation"
ORIGIN_KEY = "evolution:origin"
PARENTS_KEY = "evolution:parents"
PARAMS_KEY = "evolution:params"
RANDOM, MUTATION, CROSSOVER, FALLBACK = "random", "mutation", "crossover", "fallback"
ENQUEUED = "enqueued"  # a trial with fixed params (enqueue_trial): takes a place
IDLE, EXHAUSTED = "idle", "exhausted"  # no place or no candidate left: pruned, the worker stops


def cell_search_space(space: SearchSpace) -> dict[str, tuple[Choice, ...]]:
    """The parameters ``suggest_architecture(trial, space)`` suggests, with their choices, in
    its order (every cell up to ``space.max_cells``)."""
    params: dict[str, tuple[Choice, ...]] = {}
    if len(space.num_cells) > 1:
        params["num_cells"] = tuple(space.num_cells)
    if len(space.widths) > 1:
        params["width"] = tuple(space.widths)
    for cell in range(1, 2 if space.shared_cell else space.max_cells + 1):
        for edge in EDGES:
            params[edge_param(cell, edge)] = OPS
            if space.backward:
                params[direction_param(cell, edge)] = (FORWARD, BACKWARD)
    return params


class Proposal(NamedTuple):
    generation: int | None
    origin: str
    parents: tuple[int, ...] = ()
    genome: Genome | None = None


class EvolutionarySampler(BaseSampler):
    """AutoSNN's evolutionary architecture search as an Optuna sampler (single objective).

    Generation 0 is ``population_size`` random candidates; generation g >= 1 breeds from the
    ``num_parents`` best complete trials of generations < g (of what is complete, when g - 1
    still runs in other workers): ``num_mutants`` mutants (a uniform parent, each position
    changed with probability ``mutation_prob``), the rest single-point crossovers of two
    distinct parents. Positions are the parameters in ``search_space`` order. A candidate equal
    to any trial's (running, waiting, failed too) is redrawn, ``max_attempts`` times, then
    replaced by a random unseen one (origin ``"fallback"``). A trial joins the lowest generation
    with fewer than ``population_size`` trials that are not FAIL (a failed one is replaced). A
    worker finding no place or no candidate left prunes its trial and stops, as does the one
    finishing the last trial, so ``study.optimize(objective)`` ends by itself.

    The objective suggests each parameter with ``trial.suggest_categorical(name, choices)``;
    others come from a :class:`~optuna.samplers.RandomSampler`. The objective value is the
    fitness, ranked by the study's direction (-inf ranks last when maximizing). With
    ``for_cell_space`` and several ``num_cells`` the genome holds every cell up to the largest;
    a smaller network ignores the rest, so two candidates may build the same network.

    Example::

        sampler = EvolutionarySampler(AUTOSNN_SEARCH_SPACE, seed=0)  # AutoSNN's 20 x 20
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective)  # stops by itself after 20 generations
        best = sampler.best_trials(study, 1)[0]
        sampler = EvolutionarySampler.for_cell_space(SearchSpace(), generations=10)

    Args:
        search_space: Ordered parameter name -> categorical choices.
        population_size / num_parents / generations: As above (AutoSNN: 20 / 10 / 20).
        mutation_prob: Probability that a mutant's position changes (AutoSNN: 0.2).
        num_mutants: Mutants per generation (default: half of ``population_size``).
        seed: Seed of every proposal (with the trial number) and of the fallback sampler.
        max_attempts: Redraws of a seen candidate before a random unseen one is taken.
        retry_delay: Longest wait (seconds) before claiming again after a clash.
    """

    def __init__(
        self,
        search_space: Mapping[str, Sequence[Choice]] = AUTOSNN_SEARCH_SPACE,
        *,
        population_size: int = 20,
        num_parents: int = 10,
        mutation_prob: float = 0.2,
        generations: int = 20,
        num_mutants: int | None = None,
        seed: int | None = None,
        max_attempts: int = 100,
        retry_delay: float = 0.05,
    ) -> None:
        space = {str(name): tuple(choices) for name, choices in search_space.items()}
        if not space:
            raise ValueError("search_space needs at least one parameter")
        for name, choices in space.items():
            kinds = all(c is None or isinstance(c, str | int | float) for c in choices)
            if not choices or not kinds or len(set(choices)) != len(choices):
                raise ValueError(f"parameter {name!r} needs distinct choices, got {choices!r}")
        num_mutants = population_size // 2 if num_mutants is None else num_mutants
        counts = dict(population_size=population_size, num_parents=num_parents)
        for arg, value in dict(counts, generations=generations, max_attempts=max_attempts).items():
            if value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value}")
        if not 0 < mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in (0, 1], got {mutation_prob}")
        if not 0 <= num_mutants <= population_size:
            raise ValueError(f"num_mutants must be in [0, population_size], got {num_mutants}")
        if retry_delay < 0:
            raise ValueError(f"retry_delay must not be negative, got {retry_delay}")
        self.search_space: Mapping[str, tuple[Choice, ...]] = MappingProxyType(space)
        self.population_size, self.num_parents = population_size, num_parents
        self.mutation_prob, self.generations = mutation_prob, generations
        self.num_mutants, self.max_attempts = num_mutants, max_attempts
        self.retry_delay = retry_delay
        self.size = math.prod(len(choices) for choices in space.values())
        self._seed = random.SystemRandom().randrange(2**63) if seed is None else seed
        self._choices = tuple(space.values())
        self._index = {name: {c: i for i, c in enumerate(ch)} for name, ch in space.items()}
        self._distributions = {name: CategoricalDistribution(ch) for name, ch in space.items()}
        self._fallback = RandomSampler(seed)
        self._claims: dict[int, dict[str, Any]] = {}  # trial id -> the origin and params it wrote

    @classmethod
    def for_cell_space(cls, space: SearchSpace, **kwargs: Any) -> EvolutionarySampler:
        """A sampler over the parameters that ``suggest_architecture(trial, space)`` asks for."""
        return cls(cell_search_space(space), **kwargs)

    # --- genomes and the operators ---------------------------------------------------------

    def encode(self, params: Mapping[str, Any]) -> Genome | None:
        """The genome of ``params``, or None when they miss a parameter or leave the space."""
        try:
            return tuple([index[params[name]] for name, index in self._index.items()])
        except (KeyError, TypeError):
            return None

    def decode(self, genome: Genome) -> dict[str, Choice]:
        names = self.search_space
        return {n: c[i] for n, c, i in zip(names, self._choices, genome, strict=True)}

    def mutate(self, parent: Genome, rng: random.Random) -> Genome:
        """Each position changes with probability ``mutation_prob`` to a different choice."""
        child = list(parent)
        for k, (i, choices) in enumerate(zip(parent, self._choices, strict=True)):
            if len(choices) > 1 and rng.random() < self.mutation_prob:
                j = rng.randrange(len(choices) - 1)
                child[k] = j + 1 if j >= i else j
        return tuple(child)

    def crossover(self, first: Genome, second: Genome, rng: random.Random) -> Genome:
        """A cut point 1 .. n-1: the prefix of ``first`` and the suffix of ``second``."""
        cut = rng.randint(1, len(first) - 1)
        return first[:cut] + second[cut:]

    def _genome(self, trial: FrozenTrial) -> Genome | None:
        """A trial's candidate: its claim, else its fixed and suggested params."""
        claim, fixed = trial.system_attrs.get(PARAMS_KEY), trial.system_attrs.get("fixed_params")
        return self.encode(claim or {**(fixed or {}), **trial.params})

    def _known_genome(self, trial: FrozenTrial) -> Genome:
        """The candidate of a ranked trial (ranked trials are complete: they have one)."""
        genome = self._genome(trial)
        assert genome is not None, trial.number
        return genome

    def _random_unseen(self, seen: set[Genome], rng: random.Random) -> Genome:
        for _ in range(self.max_attempts):
            genome = tuple(rng.randrange(len(choices)) for choices in self._choices)
            if genome not in seen:
                return genome
        k = rng.randrange(self.size - len(seen))  # nearly exhausted: take the k-th unseen one
        every = itertools.product(*(range(len(choices)) for choices in self._choices))
        return next(itertools.islice((g for g in every if g not in seen), k, None))

    # --- what the storage says ---------------------------------------------------------------

    def _ranked(
        self, trials: Sequence[FrozenTrial], direction: StudyDirection, before: int | None = None
    ) -> list[FrozenTrial]:
        """Complete trials of generations < ``before`` (all if None), best first; ties go to
        the earlier trial."""
        limit = math.inf if before is None else before
        done = [t for t in trials if t.state == TrialState.COMPLETE and _generation(t) < limit]
        done = [t for t in done if self._genome(t) is not None]
        return sorted(done, key=_best_first(direction))

    def _members(self, trials: Sequence[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
        """Each generation's trials (any state but FAIL)."""
        members: dict[int, list[FrozenTrial]] = {}
        for t in trials:
            if t.state != TrialState.FAIL and _generation(t) < math.inf:
                members.setdefault(t.system_attrs[GENERATION_KEY], []).append(t)
        return members

    def _open_generation(self, members: Mapping[int, list[FrozenTrial]]) -> int | None:
        """The lowest generation with a free place (None when every place is taken)."""
        sizes = [len(members.get(g, ())) for g in range(self.generations)]
        return next((g for g, n in enumerate(sizes) if n < self.population_size), None)

    def _is_done(self, trials: Sequence[FrozenTrial]) -> bool:
        members = self._members(trials)
        sizes_ok = self._open_generation(members) is None
        return sizes_ok and all(t.state.is_finished() for m in members.values() for t in m)

    def _seen(self, trials: Sequence[FrozenTrial]) -> set[Genome]:
        return {g for t in trials if (g := self._genome(t)) is not None}

    def population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The trials (any state but FAIL) that make up ``generation``, by number."""
        return self._members(_all_trials(study)).get(generation, [])

    def best_trials(self, study: Study, k: int | None = None) -> list[FrozenTrial]:
        """The ``k`` (default ``num_parents``) best complete trials of the search, best first."""
        ranked = self._ranked(_all_trials(study), _direction(study))
        return ranked[: self.num_parents if k is None else k]

    def parents(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The trials ``generation`` breeds from: the best complete ones of earlier ones."""
        return self._ranked(_all_trials(study), _direction(study), generation)[: self.num_parents]

    def is_complete(self, study: Study) -> bool:
        """True when every generation has been evaluated."""
        return self._is_done(_all_trials(study))

    # --- proposing and claiming --------------------------------------------------------------

    def _propose(
        self, trials: Sequence[FrozenTrial], direction: StudyDirection, rng: random.Random
    ) -> Proposal:
        members = self._members(trials)
        generation = self._open_generation(members)
        if generation is None:
            return Proposal(None, IDLE)
        seen = self._seen(trials)
        if len(seen) >= self.size:
            return Proposal(None, EXHAUSTED)
        parents = self._ranked(trials, direction, generation)[: self.num_parents]
        if generation == 0 or not parents:
            origin = RANDOM if generation == 0 else FALLBACK
            return Proposal(generation, origin, (), self._random_unseen(seen, rng))
        origins = [t.system_attrs.get(ORIGIN_KEY) for t in members.get(generation, ())]
        crossing = origins.count(MUTATION) >= self.num_mutants and len(parents) > 1
        crossing = crossing and len(self._choices) > 1
        for _ in range(self.max_attempts):
            chosen: tuple[int, ...]
            if crossing:
                first, second = rng.sample(parents, 2)
                child = self.crossover(self._known_genome(first), self._known_genome(second), rng)
                chosen = (first.number, second.number)
            else:
                parent = rng.choice(parents)
                child, chosen = self.mutate(self._known_genome(parent), rng), (parent.number,)
            if child not in seen:
                return Proposal(generation, CROSSOVER if crossing else MUTATION, chosen, child)
        return Proposal(generation, FALLBACK, (), self._random_unseen(seen, rng))

    def _clashes(self, study: Study, trial: FrozenTrial, proposal: Proposal) -> bool:
        """True when, read back, the claim over-fills its generation or shares its candidate."""
        trials = _all_trials(study)
        generation = proposal.generation
        members = self._members(trials).get(generation, []) if generation is not None else []
        if generation is not None and len(members) > self.population_size:
            return True
        others = (t for t in trials if t.number != trial.number)
        return proposal.genome is not None and any(
            self._genome(t) == proposal.genome for t in others
        )

    def _record(self, study: Study, trial: FrozenTrial, proposal: Proposal) -> None:
        params = None if proposal.genome is None else self.decode(proposal.genome)
        storage, trial_id = study._storage, trial._trial_id
        storage.set_trial_system_attr(trial_id, ORIGIN_KEY, proposal.origin)
        storage.set_trial_system_attr(trial_id, PARENTS_KEY, list(proposal.parents))
        storage.set_trial_system_attr(trial_id, PARAMS_KEY, params)
        storage.set_trial_system_attr(trial_id, GENERATION_KEY, proposal.generation)
        self._claims[trial_id] = {ORIGIN_KEY: proposal.origin, PARAMS_KEY: params}

    # --- Optuna's sampler interface ----------------------------------------------------------

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        beat_while_sampling(study, trial._trial_id)  # first: the trial exists from now on
        self._claims.pop(trial._trial_id, None)  # a trial id of another storage's study
        mark_worker(study, trial._trial_id, trial.system_attrs.get(WORKER_KEY))
        if study._is_multi_objective() or ORIGIN_KEY in trial.system_attrs:
            return  # refused when it samples (the trial fails); or a retry keeping its claim
        rng = random.Random(f"evolution:{self._seed}:{trial.number}")
        while True:
            beat_while_sampling(study, trial._trial_id)
            trials = [t for t in _all_trials(study) if t.number != trial.number]
            if "fixed_params" in trial.system_attrs:
                proposal = Proposal(self._open_generation(self._members(trials)), ENQUEUED)
            else:
                proposal = self._propose(trials, study.direction, rng)
            self._record(study, trial, proposal)
            if not self._clashes(study, trial, proposal):
                break
            self._record(study, trial, Proposal(None, proposal.origin))  # withdraw, retry
            time.sleep(rng.uniform(0, self.retry_delay))
        if proposal.origin in (IDLE, EXHAUSTED):
            stop_optimize(study)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if study._is_multi_objective():
            raise ValueError(
                "EvolutionarySampler needs a single-objective study: the fitness it ranks "
                f"candidates by is one value, the study has {len(study.directions)} objectives"
            )
        return dict(self._distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # What before_trial wrote (no read), else one read: a retry keeps its claim.
        attrs = self._claims.get(trial._trial_id)
        if attrs is None:
            attrs = study._storage.get_trial_system_attrs(trial._trial_id)
        if attrs.get(ORIGIN_KEY) in (IDLE, EXHAUSTED):
            what = "search is complete" if attrs[ORIGIN_KEY] == IDLE else "space is exhausted"
            raise TrialPruned(f"the evolutionary {what}: nothing left to propose")
        params = attrs.get(PARAMS_KEY) or {}
        return {name: value for name, value in params.items() if name in search_space}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()  # proposals depend on (seed, trial number) only

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
        finishing.state, finishing.values = state, values
        trials = [finishing if t.number == trial.number else t for t in _all_trials(study)]
        done = self._is_done(trials) or len(self._seen(trials)) >= self.size
        if not study._is_multi_objective():  # refused (the trial failed): no result to mark
            mark_result(study, trial, fittest_trial(trials, study.direction), done)
        if done:
            stop_optimize(study)


def fittest_trial(trials: Sequence[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    """:meth:`EvolutionarySampler.best_trials` (its first) read from the trials alone, without
    the sampler (``export`` has none): the complete trial of the search (one that claimed a
    generation and a candidate) with the best value by ``direction``, the earlier among equals."""
    searched = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values
        and _generation(t) < math.inf
        and (t.system_attrs.get(PARAMS_KEY) or t.system_attrs.get("fixed_params"))
    ]
    return min(searched, key=_best_first(direction), default=None)


def _best_first(direction: StudyDirection) -> Callable[[FrozenTrial], tuple[float, int]]:
    """The sort key that puts the fittest trial first (the earlier one among equal values): the
    ranking of the search (``_ranked``) and of ``fittest_trial``."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    return lambda t: (sign * t.values[0], t.number)


def _all_trials(study: Study) -> list[FrozenTrial]:
    return study._storage.get_all_trials(study._study_id, deepcopy=False)


def _generation(trial: FrozenTrial) -> float:
    """The generation a trial has claimed, inf when none."""
    generation = trial.system_attrs.get(GENERATION_KEY)
    return math.inf if generation is None else generation


def _direction(study: Study) -> StudyDirection:
    if study._is_multi_objective():
        raise ValueError("EvolutionarySampler ranks the trials of single-objective studies only")
    return study.direction
