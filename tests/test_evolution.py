"""AutoSNN's evolutionary sampler: operators, generations, no duplicates, storage-only state."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter

import optuna
import pytest
from optuna.study import StudyDirection

from optuna_spikenas.autosnn_space import BLOCKS
from optuna_spikenas.samplers.evolution import (
    AUTOSNN_SEARCH_SPACE,
    CROSSOVER,
    EXHAUSTED,
    FALLBACK,
    GENERATION_KEY,
    IDLE,
    MUTATION,
    ORIGIN_KEY,
    PARAMS_KEY,
    PARENTS_KEY,
    RANDOM,
    EvolutionarySampler,
    cell_search_space,
    fittest_trial,
)
from optuna_spikenas.samplers.result_mark import RESULT_ATTR
from optuna_spikenas.space import OPS, SearchSpace, architecture_params, suggest_architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)
TARGET = ("SRB_k5", "skip", "SCB_k5", "SRB_k3", "SCB_k3")
NAMES = tuple(AUTOSNN_SEARCH_SPACE)
Done = optuna.trial.TrialState


def matches(trial: optuna.Trial) -> float:
    """Toy fitness: how many blocks equal a hidden target (5 = found)."""
    blocks = [trial.suggest_categorical(name, BLOCKS) for name in NAMES]
    return float(sum(b == t for b, t in zip(blocks, TARGET, strict=True)))


def run(sampler: EvolutionarySampler, objective=matches, direction="maximize", **kw):
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.optimize(objective, **kw)
    return study


def genome(trial) -> tuple:
    return tuple(trial.params[name] for name in NAMES)


def history(study) -> list[tuple]:
    """What a run did, trial by trial (for comparing runs)."""
    keys = (GENERATION_KEY, ORIGIN_KEY, PARENTS_KEY)
    return [
        (t.number, t.state, t.params, t.values, *(t.system_attrs.get(k) for k in keys))
        for t in study.trials
    ]


@pytest.fixture(scope="module")
def autosnn_run():
    """AutoSNN's full setting: 20 generations of 20, top 10 parents, mutation 0.2."""
    sampler = EvolutionarySampler(seed=1)
    return sampler, run(sampler)


# --- a full run on the AutoSNN space ----------------------------------------------------------


def test_autosnn_space_is_five_blocks_of_five():
    assert NAMES == ("block1", "block2", "block3", "block4", "block5")
    assert all(choices == BLOCKS for choices in AUTOSNN_SEARCH_SPACE.values())
    assert EvolutionarySampler().size == 3125


def test_stops_by_itself_after_all_generations_without_duplicates(autosnn_run):
    sampler, study = autosnn_run
    trials = study.trials
    assert len(trials) == 20 * 20 and all(t.state == Done.COMPLETE for t in trials)
    assert len({genome(t) for t in trials}) == len(trials)
    assert [len(sampler.population(study, g)) for g in range(20)] == [20] * 20
    assert [t.system_attrs[GENERATION_KEY] for t in trials] == [n // 20 for n in range(400)]
    assert all(t.system_attrs[PARAMS_KEY] == t.params for t in trials)
    assert sampler.is_complete(study)


def test_first_pool_is_twenty_distinct_random_candidates(autosnn_run):
    sampler, study = autosnn_run
    pool = sampler.population(study, 0)
    assert len({genome(t) for t in pool}) == 20
    assert {t.system_attrs[ORIGIN_KEY] for t in pool} == {RANDOM}
    assert all(t.system_attrs[PARENTS_KEY] == [] for t in pool)


def test_later_trials_are_bred_from_the_top_ten_of_earlier_generations(autosnn_run):
    sampler, study = autosnn_run
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    origins = Counter()
    for g in range(1, 20):
        earlier = [t for t in trials if t.system_attrs[GENERATION_KEY] < g]
        tenth_best = sorted((t.value for t in earlier), reverse=True)[9]
        for child in sampler.population(study, g):
            origin = child.system_attrs[ORIGIN_KEY]
            origins[origin] += 1
            parents = [by_number[n] for n in child.system_attrs[PARENTS_KEY]]
            for parent in parents:  # in the top 10 (ties allowed) of generations < g
                assert parent.system_attrs[GENERATION_KEY] < g and parent.value >= tenth_best
            kid = genome(child)
            if origin == MUTATION:
                assert len(parents) == 1
                assert any(a != b for a, b in zip(kid, genome(parents[0]), strict=True))
            elif origin == CROSSOVER:
                first, second = map(genome, parents)
                assert parents[0].number != parents[1].number
                assert any(kid == first[:cut] + second[cut:] for cut in range(1, 5))
            else:  # no unseen offspring in max_attempts draws: a random unseen candidate
                assert origin == FALLBACK and parents == []
    assert origins[MUTATION] == 19 * 10  # AutoSNN's 10 mutants a generation
    assert origins[CROSSOVER] >= 19 * 2  # crossovers of converged parents often repeat
    assert sum(origins.values()) == 19 * 20


def test_population_gets_fitter_and_the_best_never_gets_worse(autosnn_run):
    sampler, study = autosnn_run
    parent_means = []
    for g in range(1, 21):
        top = sampler.parents(study, g)
        assert len(top) == 10
        parent_means.append(sum(t.value for t in top) / 10)
    assert parent_means == sorted(parent_means)  # top 10 so far: never worse
    assert parent_means[-1] > parent_means[0] + 1
    first = sum(t.value for t in sampler.population(study, 0)) / 20
    fifth = sum(t.value for t in sampler.population(study, 5)) / 20
    assert fifth > first + 1
    assert sampler.best_trials(study, 1)[0].value == 5.0


def test_mutation_changes_each_position_with_probability_mutation_prob():
    sampler = EvolutionarySampler(seed=0)
    rng = random.Random(0)
    parent = (0, 1, 2, 3, 4)
    changed = Counter()
    new_values = Counter()
    n = 4000
    for _ in range(n):
        child = sampler.mutate(parent, rng)
        for k, (a, b) in enumerate(zip(parent, child, strict=True)):
            if a != b:
                changed[k] += 1
                new_values[k, b] += 1
    for k in range(5):
        assert abs(changed[k] / n - 0.2) < 0.03  # sd ~0.006
        others = [new_values[k, v] for v in range(5) if v != parent[k]]
        assert new_values[k, parent[k]] == 0 and min(others) > changed[k] / 4 * 0.7


def test_crossover_is_prefix_of_one_and_suffix_of_the_other():
    sampler = EvolutionarySampler()
    rng = random.Random(0)
    cuts = Counter()
    for _ in range(500):
        child = sampler.crossover((0, 0, 0, 0, 0), (1, 1, 1, 1, 1), rng)
        cut = child.index(1)
        assert child == (0,) * cut + (1,) * (5 - cut)
        cuts[cut] += 1
    assert sorted(cuts) == [1, 2, 3, 4]


def test_evolution_finds_the_target_far_faster_than_random_search():
    def trials_to_target(sampler, budget=200):
        def stop_at_target(study, trial):
            if trial.value == 5.0:
                study.stop()

        study = run(sampler, n_trials=budget, callbacks=[stop_at_target])
        hits = [t.number for t in study.trials if t.value == 5.0]
        return hits[0] + 1 if hits else None

    evolution = [trials_to_target(EvolutionarySampler(seed=s)) for s in range(5)]
    randomly = [trials_to_target(optuna.samplers.RandomSampler(seed=s)) for s in range(5)]
    assert all(n is not None and n <= 150 for n in evolution), evolution
    assert sum(n is not None for n in randomly) <= 2, randomly  # each hits with p ~ 0.06


# --- determinism and storage-only state --------------------------------------------------------

SMALL = dict(population_size=6, num_parents=3, generations=5)


def test_same_seed_same_trials_and_a_resumed_run_continues_identically():
    whole = history(run(EvolutionarySampler(seed=3, **SMALL)))
    assert len(whole) == 30
    assert history(run(EvolutionarySampler(seed=3, **SMALL))) == whole
    assert history(run(EvolutionarySampler(seed=4, **SMALL))) != whole
    study = run(EvolutionarySampler(seed=3, **SMALL), n_trials=13)
    study.sampler = EvolutionarySampler(seed=3, **SMALL)  # a restarted worker
    study.optimize(matches)
    assert history(study) == whole


def test_one_sampler_interleaving_two_studies_gives_each_the_uninterrupted_run():
    whole = history(run(EvolutionarySampler(seed=5, **SMALL)))
    sampler = EvolutionarySampler(seed=5, **SMALL)
    studies = [optuna.create_study(direction="maximize", sampler=sampler) for _ in range(2)]
    for _ in range(30):
        for study in studies:
            study.optimize(matches, n_trials=1)
    assert history(studies[0]) == history(studies[1]) == whole


def test_minimize_breeds_from_the_lowest_values():
    sampler = EvolutionarySampler(seed=0, **SMALL)
    study = run(sampler, objective=lambda t: -matches(t), direction="minimize")
    trials = study.get_trials(deepcopy=False)
    for g in range(1, 5):
        earlier = sorted(t.value for t in trials if t.system_attrs[GENERATION_KEY] < g)
        assert [t.value for t in sampler.parents(study, g)] == earlier[:3]
    assert sampler.best_trials(study, 1)[0].value == min(t.value for t in study.trials)


# --- the SNASNet cell space, -inf and failures ------------------------------------------------


def test_cell_space_names_are_the_ones_suggest_architecture_asks_for():
    assert cell_search_space(SearchSpace()) == {
        f"cell1_edge{i}{j}": OPS for i, j in ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    }
    space = SearchSpace(num_cells=(2, 3), widths=(8, 16), shared_cell=False, backward=True)
    names = cell_search_space(space)
    assert len(names) == 2 + 3 * 12 and names["num_cells"] == (2, 3)
    study = optuna.create_study()
    trial = study.ask({"num_cells": optuna.distributions.CategoricalDistribution((2, 3))})
    while trial.params["num_cells"] != 3:
        trial = study.ask({"num_cells": optuna.distributions.CategoricalDistribution((2, 3))})
    arch = suggest_architecture(trial, space)
    assert set(trial.params) == set(names) == set(architecture_params(arch, space))


def test_cell_space_search_with_invalid_cells_scored_minus_infinity():
    space = SearchSpace()
    sampler = EvolutionarySampler.for_cell_space(
        space, seed=0, population_size=10, num_parents=5, generations=4
    )

    def objective(trial):
        arch = suggest_architecture(trial, space)
        if not arch.is_valid():
            return -math.inf
        return float(sum(code == 3 for _, _, code in arch.cells[0].edges()))  # conv3x3 edges

    study = run(sampler, objective)
    trials = study.trials
    assert len(trials) == 40 and all(t.state == Done.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 40
    infeasible = {t.number for t in trials if t.value == -math.inf}
    assert infeasible  # about a third of random cells have no input-output path
    for g in range(1, 4):
        assert not infeasible & {t.number for t in sampler.parents(study, g)}
    assert sampler.best_trials(study, 1)[0].value >= 4


def test_trials_that_leave_cells_unused_still_breed():
    space = SearchSpace(num_cells=(2, 3), shared_cell=False)
    sampler = EvolutionarySampler.for_cell_space(
        space, seed=0, population_size=8, num_parents=4, generations=3
    )

    def prefers_two_cells(trial):  # a 2-cell network never suggests cell 3's edges
        arch = suggest_architecture(trial, space)
        return float(arch.num_cells == 2) + sum(c.is_valid() for c in arch.cells) / 10

    study = run(sampler, prefers_two_cells)
    assert len(study.trials) == 24
    claims = [tuple(t.system_attrs[PARAMS_KEY].values()) for t in study.trials]
    assert len(set(claims)) == 24 and all(len(c) == 1 + 3 * 6 for c in claims)
    parents = sampler.parents(study, 2)
    assert len(parents) == 4 and all(t.params["num_cells"] == 2 for t in parents)
    assert all("cell3_edge01" not in t.params for t in parents)


def test_a_failed_trial_is_replaced_and_never_proposed_again():
    sampler = EvolutionarySampler(seed=0, **SMALL)

    def flaky(trial):
        value = matches(trial)
        if trial.number in (2, 9):
            raise RuntimeError("worker lost")
        return value

    study = run(sampler, flaky, catch=(RuntimeError,))
    failed = [t for t in study.trials if t.state == Done.FAIL]
    assert [t.number for t in failed] == [2, 9] and len(study.trials) == 32
    assert [len(sampler.population(study, g)) for g in range(5)] == [6] * 5
    assert len({genome(t) for t in study.trials}) == 32


def test_exhausted_space_stops_the_study():
    space = {"a": (0, 1), "b": ("x", "y")}  # 4 candidates, 3 x 20 places
    sampler = EvolutionarySampler(space, population_size=3, seed=0, max_attempts=1)

    def objective(trial):
        picked = [trial.suggest_categorical(name, choices) for name, choices in space.items()]
        return float(picked.count(1) + picked.count("y"))

    study = run(sampler, objective)
    assert len(study.trials) == 4  # stopped when the last candidate finished
    assert len({tuple(t.params.values()) for t in study.trials}) == 4
    study.optimize(objective)  # nothing left: one pruned trial, then it stops
    assert len(study.trials) == 5 and study.trials[-1].state == Done.PRUNED
    assert study.trials[-1].system_attrs[ORIGIN_KEY] == EXHAUSTED


def test_enqueued_trial_takes_a_place_and_is_not_proposed_again():
    sampler = EvolutionarySampler(seed=0, **SMALL)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(dict(zip(NAMES, TARGET, strict=True)))
    study.optimize(matches)
    assert study.trials[0].value == 5.0 and study.trials[0].system_attrs[GENERATION_KEY] == 0
    assert len(study.trials) == 30 and len({genome(t) for t in study.trials}) == 30


def test_multi_objective_is_refused():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=EvolutionarySampler())
    with pytest.raises(ValueError, match="single-objective"):
        study.optimize(lambda t: (matches(t), 0.0), n_trials=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(search_space={}),
        dict(search_space={"a": ()}),
        dict(search_space={"a": ("x", "x")}),
        dict(population_size=0),
        dict(num_parents=0),
        dict(generations=0),
        dict(mutation_prob=0.0),
        dict(mutation_prob=1.5),
        dict(num_mutants=21),
    ],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        EvolutionarySampler(**kwargs)


# --- several workers ----------------------------------------------------------------------------


def slow_matches(trial):
    value = matches(trial)
    time.sleep(0.002)  # let workers interleave
    return value


def check_parallel_run(sampler, study, workers):
    evaluated = [t for t in study.trials if t.system_attrs.get(GENERATION_KEY) is not None]
    assert len({genome(t) for t in evaluated}) == len(evaluated)
    sizes = [len(sampler.population(study, g)) for g in range(sampler.generations)]
    assert sizes == [sampler.population_size] * sampler.generations
    assert all(t.state == Done.COMPLETE for t in evaluated)
    idle = [t for t in study.trials if t not in evaluated]
    assert len(idle) <= workers  # a worker that finds no place left prunes once and stops
    assert all(t.state == Done.PRUNED and t.system_attrs[ORIGIN_KEY] == IDLE for t in idle)


def test_threads_sharing_one_in_memory_study():
    sampler = EvolutionarySampler(seed=0, population_size=8, num_parents=4, generations=5)
    study = run(sampler, slow_matches, n_jobs=4)
    check_parallel_run(sampler, study, 4)


class Racing(EvolutionarySampler):
    """The worst interleaving: two workers read the storage before either writes its claim,
    and both pick the same candidate (the first unseen one)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.barrier = threading.Barrier(2)
        self.raced: set[int] = set()
        self.clashes = 0

    def _random_unseen(self, seen, rng):
        return min(g for g in [(0,), (1,), (2,), (3,)] if g not in seen)

    def _record(self, study, trial, proposal):
        if trial.number not in self.raced:
            self.raced.add(trial.number)
            self.barrier.wait(timeout=10)
        super()._record(study, trial, proposal)

    def _clashes(self, study, trial, proposal):
        clash = super()._clashes(study, trial, proposal)
        self.clashes += clash
        return clash


def test_racing_claims_withdraw_instead_of_sharing_a_place_or_a_candidate():
    sampler = Racing(search_space={"a": (0, 1, 2, 3)}, population_size=1, generations=3, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    threads = [threading.Thread(target=study.ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sampler.clashes >= 1  # at least the later writer saw the clash and withdrew
    claims = [t.system_attrs for t in study.get_trials(deepcopy=False)]
    assert sorted(c[GENERATION_KEY] for c in claims) == [0, 1]
    assert sorted(c[PARAMS_KEY]["a"] for c in claims) == [0, 1]


def test_workers_with_their_own_study_objects_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'evolution.db'}"
    optuna.create_study(storage=url, study_name="s", direction="maximize")
    config = dict(population_size=4, num_parents=2, generations=3, seed=0)
    errors = []

    def worker():
        try:
            study = optuna.load_study(
                study_name="s", storage=url, sampler=EvolutionarySampler(**config)
            )
            study.optimize(slow_matches)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    study = optuna.load_study(study_name="s", storage=url)
    check_parallel_run(EvolutionarySampler(**config), study, 3)


# --- the search's result: marked on the trials and the study, read from the trials alone -------


def fittest_by_hand(trials):
    """The highest value among the search's complete trials, the earliest among equals."""
    searched = [t for t in trials if t.state == Done.COMPLETE and GENERATION_KEY in t.system_attrs]
    return max(searched, key=lambda t: (t.value, -t.number))


def test_each_trial_marks_the_fittest_so_far_and_the_study_the_result():
    sampler = EvolutionarySampler(seed=3, population_size=6, num_parents=3, generations=4)
    study = run(sampler)  # one worker: each trial ends after the ones numbered before it
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        so_far = fittest_by_hand([t for t in trials if t.number <= trial.number])
        assert trial.user_attrs[RESULT_ATTR] == so_far.number
    result = sampler.best_trials(study, 1)[0]
    assert result.number == fittest_by_hand(trials).number
    assert fittest_trial(trials, StudyDirection.MAXIMIZE).number == result.number
    assert study.user_attrs[RESULT_ATTR] == result.number


def test_minimizing_the_fittest_is_the_lowest():
    sampler = EvolutionarySampler(seed=2, population_size=4, num_parents=2, generations=2)
    study = run(sampler, direction="minimize")
    trials = study.get_trials(deepcopy=False)
    lowest = min((t for t in trials if t.state == Done.COMPLETE), key=lambda t: (t.value, t.number))
    assert fittest_trial(trials, StudyDirection.MINIMIZE).number == lowest.number
    assert study.user_attrs[RESULT_ATTR] == sampler.best_trials(study, 1)[0].number == lowest.number


def test_workers_sharing_a_study_mark_the_same_result():
    sampler = EvolutionarySampler(seed=0, population_size=8, num_parents=4, generations=5)
    study = run(sampler, slow_matches, n_jobs=4)
    trials = study.get_trials(deepcopy=False)
    result = sampler.best_trials(study, 1)[0]
    assert result.number == fittest_by_hand(trials).number
    assert fittest_trial(trials, StudyDirection.MAXIMIZE).number == result.number
    assert study.user_attrs[RESULT_ATTR] == result.number
    marks = {t.user_attrs[RESULT_ATTR] for t in trials}  # every trial names a fit candidate
    assert all(study.trials[n].value <= result.value for n in marks) and result.number in marks
