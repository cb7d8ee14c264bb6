"""Optuna plugin for spiking neural network architecture search."""

__version__ = "0.1.0"
