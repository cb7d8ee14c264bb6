"""AutoSNN's evolutionary search, from the installed ``optuna-spikenas`` package.

This folder holds no algorithm code: it re-exports the sampler and what a search with it needs.
``AutoSNNObjective`` (the package's super-network fitness) imports PyTorch, so it is imported
only when asked for.
"""

from __future__ import annotations

from typing import Any

from optuna_spikenas.autosnn_space import (
    BLOCKS,
    PARAM_NAMES,
    AutoSNNArchitecture,
    suggest_autosnn,
)
from optuna_spikenas.config import config_from_dict, load_config
from optuna_spikenas.samplers.evolution import (
    AUTOSNN_SEARCH_SPACE,
    EvolutionarySampler,
    cell_search_space,
)
from optuna_spikenas.space import SearchSpace, suggest_architecture

__all__ = [
    "AUTOSNN_SEARCH_SPACE",
    "BLOCKS",
    "PARAM_NAMES",
    "AutoSNNArchitecture",
    "AutoSNNObjective",
    "EvolutionarySampler",
    "SearchSpace",
    "cell_search_space",
    "config_from_dict",
    "load_config",
    "suggest_architecture",
    "suggest_autosnn",
]


def __getattr__(name: str) -> Any:
    if name == "AutoSNNObjective":
        from optuna_spikenas.autosnn_objective import AutoSNNObjective

        return AutoSNNObjective
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
