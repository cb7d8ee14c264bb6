"""Sizes no run can use, refused in one line before anything is allocated.

A config or a hand-edited architecture file can ask for a network that no machine holds (a width
of a million channels: 10^13 weights) or a run that never ends (a billion timesteps). Each check
here returns the reason as text, or None, so that the config and the architecture file can each
raise their own error with it. Parameters are counted analytically (``hardware/memory.py``), so
the largest network of a search is priced without building it.
"""

from __future__ import annotations

import os

from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import Macro
from optuna_spikenas.space import CONV3X3, EDGES, NUM_NODES, ZERO, Architecture, Cell

MAX_TIMESTEPS = 10_000
"""The most timesteps a network may run: the papers use 5-100; 10,000 already makes one trial of
the smallest network take minutes, and beyond it a run only looks hung."""
MAX_CELLS = 64
"""The most cells a network may have: the papers use 2-4 (SNASNet, SpikeNAS) and 5 block
positions (AutoSNN); a typo such as 10^9 would otherwise be allocated, as the network's
description, before any other check could refuse it."""
MAX_THREADS = 1024
"""PyTorch's thread pool above this fails in ways it blames on whatever runs next."""
MAX_HEARTBEAT_SECONDS = 3600
"""A dead worker's trial is retried after two missed beats: longer than an hour per beat is a
typo (and Python's timers overflow near 10^11 s)."""
BYTES_PER_PARAMETER = 16
"""Training holds each weight four times at 32 bits: the weight, its gradient, the optimizer's
momentum and a copy for k-bit quantization."""


def physical_memory() -> int | None:
    """Bytes of memory this machine has, or None where the system cannot tell."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def widest_architecture(num_cells: int, width: int) -> Architecture:
    """The network with the most weights a cell space allows: every forward edge a 3x3 conv."""
    matrix = [[ZERO] * NUM_NODES for _ in range(NUM_NODES)]
    for i, j in EDGES:
        matrix[i][j] = CONV3X3
    cell = Cell(tuple(tuple(row) for row in matrix))
    return Architecture((cell,) * num_cells, width)


def too_many_cells(num_cells: int, what: str) -> str | None:
    """Why ``num_cells`` cells is more than any run can use, or None."""
    if num_cells <= MAX_CELLS:
        return None
    return f"{what}: {num_cells:,} cells is more than the {MAX_CELLS} any network here may have"


def too_many_parameters(arch: Architecture, macro: Macro, what: str) -> str | None:
    """Why ``arch`` in ``macro`` cannot be trained on this machine, or None when it fits."""
    return parameters_beyond_memory(memory_report(arch, macro).parameters, what)


def parameters_beyond_memory(parameters: int, what: str) -> str | None:
    """Why a network of ``parameters`` weights cannot be trained here, or None when it fits."""
    memory = physical_memory()
    needed = parameters * BYTES_PER_PARAMETER
    if memory is None or needed <= memory:
        return None
    return (
        f"{what}: the network has {parameters:.3g} parameters, about {needed / 1e9:,.0f} GB to "
        f"train, more than this machine's {memory / 1e9:,.1f} GB of memory"
    )


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a one-line message, cut to ``limit`` characters (a 2 MB string given
    by mistake is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def too_many_timesteps(timesteps: int, what: str) -> str | None:
    if timesteps > MAX_TIMESTEPS:
        return f"{what} must be at most {MAX_TIMESTEPS:,}, got {timesteps:,}"
    return None
