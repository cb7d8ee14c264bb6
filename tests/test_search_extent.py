"""How far a sampler's search got in a study: run its course, or cut short by the budget."""

from __future__ import annotations

import math

import optuna
import pytest

from optuna_spikenas.sampler_catalog import TPE_STARTUP_TRIALS
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.evolution import GENERATION_KEY, EvolutionarySampler
from optuna_spikenas.search_extent import NSGA2_GENERATION_KEY, search_extent
from optuna_spikenas.space import (
    CONV3X3,
    Architecture,
    SearchSpace,
    distinct_cells,
    suggest_architecture,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = SearchSpace(num_cells=(2,), widths=(4,), shared_cell=False)


def conv_count(arch) -> int:
    return sum(cell.pruned().count_ops().get(CONV3X3, 0) for cell in arch.cells)


def optimize(sampler, n_trials: int | None, space: SearchSpace = SPACE) -> optuna.Study:
    """A toy search: the score is the number of conv3x3 edges (no network is built)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: float(conv_count(suggest_architecture(t, space))), n_trials=n_trials)
    return study


def generations_run(study: optuna.Study, key: str) -> int:
    return len({t.system_attrs[key] for t in study.trials})


@pytest.mark.parametrize("population, n_trials", [(20, 16), (8, 8), (8, 24), (2, 3)])
def test_nsga2_with_fewer_than_two_generations_is_cut_short(population, n_trials):
    sampler = make_sampler("nsga2", 0, population_size=population)
    study = optimize(sampler, n_trials)
    # one trial at a time: each generation is full before the next one starts
    generations = math.ceil(n_trials / population)
    assert generations_run(study, NSGA2_GENERATION_KEY) == generations
    extent = search_extent(sampler, study)
    assert extent.cut_short == (generations < 2)
    assert extent.detail.startswith(f"{generations} generation")


@pytest.mark.parametrize("n_trials", [4, TPE_STARTUP_TRIALS, TPE_STARTUP_TRIALS + 3])
def test_tpe_on_its_start_up_trials_only_is_cut_short(n_trials):
    sampler = make_sampler("tpe", 0)
    extent = search_extent(sampler, optimize(sampler, n_trials))
    assert extent.cut_short == (n_trials <= TPE_STARTUP_TRIALS)
    if extent.cut_short:
        assert extent.detail == f"{n_trials} of its 10 random start-up trials only"
    else:
        assert extent.detail == f"10 random start-up + {n_trials - 10} TPE trials"


def test_random_search_is_always_itself():
    sampler = make_sampler("random", 0)
    extent = search_extent(sampler, optimize(sampler, 2))
    assert not extent.cut_short and extent.detail == "random search"


def test_cellbycell_cut_before_its_phase_is_scored_says_how_far_it_got():
    def fits(arch) -> bool:
        return conv_count(arch) <= 4

    # independently: the distinct cells whose two-cell network fits
    cells = distinct_cells(("skip", "conv3x3"))
    candidates = sum(conv_count(Architecture((c, c), 4)) <= 4 for c in cells)
    assert 3 < candidates < 39

    def sampler() -> CellByCellSampler:
        return CellByCellSampler(ops=("skip", "conv3x3"), max_cells=2, width=4, fits_budget=fits)

    cut = sampler()
    extent = search_extent(cut, optimize(cut, candidates - 2, cut.space))
    assert extent.cut_short
    assert extent.detail == f"phase 2: {candidates - 2} of {candidates} candidates scored"
    whole = sampler()
    study = optimize(whole, None, whole.space)  # stops by itself
    assert len(study.trials) == candidates
    extent = search_extent(whole, study)
    assert not extent.cut_short and extent.detail == "1 phase, every candidate scored"


def test_evolution_short_of_its_generations_is_cut_short():
    def sampler() -> EvolutionarySampler:
        return EvolutionarySampler.for_cell_space(
            SPACE, population_size=4, num_parents=2, generations=3, seed=0
        )

    short = sampler()
    study = optimize(short, 6)
    assert generations_run(study, GENERATION_KEY) == 2
    extent = search_extent(short, study)
    assert extent.cut_short and extent.detail == "2 of 3 generations"
    whole = sampler()
    study = optimize(whole, None)  # stops by itself after 3 generations
    assert len(study.trials) == 12
    extent = search_extent(whole, study)
    assert not extent.cut_short and extent.detail == "3 of 3 generations"
