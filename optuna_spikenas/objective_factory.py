"""The objective of a config: AutoSNN's super-network fitness for AutoSNN macros, otherwise
the SpikeNAS/NeuroNAS score (and optional training)."""

from __future__ import annotations

from collections.abc import Callable

from optuna_spikenas.autosnn_objective import AutoSNNObjective
from optuna_spikenas.config import Config, require_config
from optuna_spikenas.objective import SpikeNASObjective


def make_objective(config: Config, log: Callable[[str], None] | None = None):
    """The objective of ``config``: AutoSNN's super-network fitness for AutoSNN macros,
    otherwise the SpikeNAS/NeuroNAS score (and optional training)."""
    if require_config(config, "make_objective").is_autosnn:
        return AutoSNNObjective(config, log=log)
    return SpikeNASObjective(config, log=log)
