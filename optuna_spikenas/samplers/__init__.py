"""Samplers that implement the papers' search algorithms on Optuna, and every sampler by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna

from optuna_spikenas.config import Config, ConfigError
from optuna_spikenas.sampler_catalog import (
    NSGA2_POPULATION,
    SAMPLER_CATALOG,
    SAMPLERS,
    SCREEN_BASES,
    TPE_STARTUP_TRIALS,
)
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.evolution import AUTOSNN_SEARCH_SPACE, EvolutionarySampler
from optuna_spikenas.samplers.screen import ScreenThenTrainSampler
from optuna_spikenas.space import Architecture, SearchSpace

__all__ = [
    "CellByCellSampler",
    "EvolutionarySampler",
    "ScreenThenTrainSampler",
    "make_pruner",
    "make_sampler",
    "sampler_settings",
]


def make_sampler(
    name: str,
    seed: int,
    *,
    space: SearchSpace | None = None,
    ops: Sequence[str] = ("skip", "conv3x3"),
    fits_budget: Callable[[Architecture], bool] | None = None,
    screen: int | None = None,
    train_top: int = 5,
    population_size: int = NSGA2_POPULATION,
) -> optuna.samplers.BaseSampler:
    """Optuna's samplers with their settings named, not left to Optuna's defaults, and ours.

    ``space`` is the SNASNet cell space searched (None: AutoSNN's five blocks, for
    ``evolution``); the cell-by-cell search also takes its pruned op set ``ops`` and the study's
    budget check ``fits_budget`` (analytic, e.g. ``SpikeNASObjective.fits_budget``).
    With ``screen`` (``[search] screen``), ``name`` proposes the candidates of a
    :class:`ScreenThenTrainSampler` that then trains the ``train_top`` best; ``random`` is then
    seeded per trial number, so that any number of workers screens the same candidates.
    ``population_size`` is NSGA-II's (``compare`` makes it fit small budgets).
    """
    if screen is not None:
        if name not in SCREEN_BASES:
            raise ConfigError(
                f"[search] screen takes its candidates from {', '.join(SCREEN_BASES)}, not {name!r}"
            )
        base = None if name == "random" else make_sampler(name, seed, space=space)
        return ScreenThenTrainSampler(screen, train_top, base=base, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=TPE_STARTUP_TRIALS,
            multivariate=False,
            constant_liar=False,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=population_size, mutation_prob=None, crossover_prob=0.9
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


def make_pruner(config: Config) -> optuna.pruners.BasePruner:
    """The study's pruner of ``[search] pruner``, on the per-epoch validation accuracy (steps:
    epochs 0 .. [train] epochs - 1)."""
    name, epochs = config.search.pruner, max(config.train.epochs, 1)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3, min_early_stopping_rate=0
        )
    return optuna.pruners.NopPruner()


def sampler_settings(name: str) -> str:
    """The settings :func:`make_sampler` gives ``name``, in words (for reports)."""
    info = SAMPLER_CATALOG.get(name)
    return name if info is None else info.settings
