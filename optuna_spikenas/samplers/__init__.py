"""Samplers that implement the papers' search algorithms on Optuna, and every sampler by name."""

from __future__ import annotations

import optuna

from optuna_spikenas.config import SAMPLERS, ConfigError
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.evolution import AUTOSNN_SEARCH_SPACE, EvolutionarySampler

__all__ = ["CellByCellSampler", "EvolutionarySampler", "make_sampler", "sampler_settings"]


def make_sampler(name: str, seed: int, objective=None) -> optuna.samplers.BaseSampler:
    """Optuna's samplers with their settings named, not left to Optuna's defaults, and ours.

    ``objective`` (a SpikeNAS or AutoSNN objective) tells our samplers the space and budget.
    """
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=10, multivariate=False, constant_liar=False
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=20, mutation_prob=None, crossover_prob=0.9
        )
    if name == "evolution":  # AutoSNN's evolution, on AutoSNN's blocks or SNASNet's cells
        if objective is None or objective.config.is_autosnn:
            return EvolutionarySampler(AUTOSNN_SEARCH_SPACE, seed=seed)
        return EvolutionarySampler.for_cell_space(objective.space, seed=seed)
    if name == "cellbycell":
        space = objective.space
        return CellByCellSampler(
            ops=objective.config.search.ops,
            max_cells=space.max_cells,
            width=space.widths[0],
            fits_budget=objective.fits_budget,
        )
    raise ConfigError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def sampler_settings(name: str) -> str:
    """The settings :func:`make_sampler` gives ``name``, in words (for reports)."""
    return {
        "random": "RandomSampler, uniform over the full op set",
        "tpe": "TPESampler(n_startup_trials=10, multivariate=False, constant_liar=False)",
        "nsga2": "NSGAIISampler(population_size=20, crossover_prob=0.9, mutation 1/params)",
        "evolution": "EvolutionarySampler (AutoSNN): population 20, 10 parents, 10 children "
        "by crossover + mutation, 20 generations",
        "cellbycell": "CellByCellSampler (SpikeNAS): pruned ops, one cell at a time under "
        "the budget",
    }.get(name, name)
