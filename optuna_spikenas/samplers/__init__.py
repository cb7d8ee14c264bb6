"""Samplers that implement the papers' search algorithms on Optuna, and every sampler by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna

from optuna_spikenas.config import ConfigError
from optuna_spikenas.sampler_catalog import SAMPLER_CATALOG, SAMPLERS
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.evolution import AUTOSNN_SEARCH_SPACE, EvolutionarySampler
from optuna_spikenas.space import Architecture, SearchSpace

__all__ = ["CellByCellSampler", "EvolutionarySampler", "make_sampler", "sampler_settings"]


def make_sampler(
    name: str,
    seed: int,
    *,
    space: SearchSpace | None = None,
    ops: Sequence[str] = ("skip", "conv3x3"),
    fits_budget: Callable[[Architecture], bool] | None = None,
) -> optuna.samplers.BaseSampler:
    """Optuna's samplers with their settings named, not left to Optuna's defaults, and ours.

    ``space`` is the SNASNet cell space searched (None: AutoSNN's five blocks, for
    ``evolution``); the cell-by-cell search also takes its pruned op set ``ops`` and the study's
    budget check ``fits_budget`` (analytic, e.g. ``SpikeNASObjective.fits_budget``).
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
        if space is None:
            return EvolutionarySampler(AUTOSNN_SEARCH_SPACE, seed=seed)
        return EvolutionarySampler.for_cell_space(space, seed=seed)
    if name == "cellbycell":
        if space is None:
            raise ConfigError("sampler 'cellbycell' grows SNASNet cells: give it the cell space")
        return CellByCellSampler(
            ops=ops, max_cells=space.max_cells, width=space.widths[0], fits_budget=fits_budget
        )
    raise ConfigError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def sampler_settings(name: str) -> str:
    """The settings :func:`make_sampler` gives ``name``, in words (for reports)."""
    info = SAMPLER_CATALOG.get(name)
    return name if info is None else info.settings
