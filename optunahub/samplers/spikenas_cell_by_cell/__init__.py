"""SpikeNAS's cell-by-cell, memory-aware search, from the installed ``optuna-spikenas`` package.

This folder holds no algorithm code: it re-exports the sampler and what a search with it needs.
``SpikeNASObjective`` (the package's training-free objective) imports PyTorch, so it is
imported only when asked for.
"""

from __future__ import annotations

from typing import Any

from optuna_spikenas.config import config_from_dict, load_config
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.space import (
    OPS,
    Architecture,
    Cell,
    SearchSpace,
    architecture_params,
    distinct_cells,
    suggest_architecture,
)

__all__ = [
    "OPS",
    "Architecture",
    "Cell",
    "CellByCellSampler",
    "SearchSpace",
    "SpikeNASObjective",
    "architecture_params",
    "config_from_dict",
    "distinct_cells",
    "load_config",
    "suggest_architecture",
]


def __getattr__(name: str) -> Any:
    if name == "SpikeNASObjective":
        from optuna_spikenas.objective import SpikeNASObjective

        return SpikeNASObjective
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
