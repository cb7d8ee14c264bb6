"""Samplers that implement the papers' search algorithms on Optuna."""

from optuna_spikenas.samplers.cellbycell import CellByCellSampler

__all__ = ["CellByCellSampler"]
