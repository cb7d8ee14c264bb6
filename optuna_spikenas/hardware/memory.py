"""Analytic memory model: parameters and weight memory of an architecture, without a network.

Counts follow the layout in ``snn/network.py`` layer by layer (convs have no bias; every BN has a
weight and a bias; the head's last linear has a bias). Cells are counted in their pruned form,
which is what the network builds. Memory is parameters x weight bits (BN parameters included,
stored at the same width: the simplest reading of SpikeNAS's "parameters x bit width").
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_spikenas.macros import Macro
from optuna_spikenas.space import CONV1X1, CONV3X3, Architecture, Cell

KERNEL_AREA = {CONV1X1: 1, CONV3X3: 9}


def bn_params(channels: int) -> int:
    return 2 * channels


def cell_params(cell: Cell, channels: int) -> int:
    """Weights of one cell: each conv edge is a C x C kernel plus its BN."""
    total = 0
    for _, _, code in cell.pruned().edges():
        if code in KERNEL_AREA:
            total += KERNEL_AREA[code] * channels * channels + bn_params(channels)
    return total


@dataclass(frozen=True)
class MemoryReport:
    """Parameters per part of the network and the memory they take at ``weight_bits``."""

    stem: int
    cells: tuple[int, ...]
    reductions: int
    head: int
    weight_bits: int

    @property
    def parameters(self) -> int:
        return self.stem + sum(self.cells) + self.reductions + self.head

    @property
    def memory_bits(self) -> int:
        return self.parameters * self.weight_bits

    @property
    def memory_bytes(self) -> float:
        return self.memory_bits / 8

    def as_dict(self) -> dict[str, object]:
        return {
            "parameters": self.parameters,
            "weight_bits": self.weight_bits,
            "memory_bits": self.memory_bits,
            "memory_megabytes": round(self.memory_bytes / 1e6, 4),
            "parameters_by_part": {
                "stem": self.stem,
                "cells": list(self.cells),
                "reductions": self.reductions,
                "head": self.head,
            },
        }


def memory_report(arch: Architecture, macro: Macro, weight_bits: int = 32) -> MemoryReport:
    """Parameters and memory of ``arch`` in ``macro``, computed from shapes alone."""
    if weight_bits < 1:
        raise ValueError(f"weight_bits must be positive, got {weight_bits}")
    _, final = macro.feature_sizes(arch.num_cells)
    widths = [arch.width * 2**k for k in range(arch.num_cells)]
    stem = 9 * macro.in_channels * widths[0] + bn_params(widths[0])
    cells = tuple(cell_params(c, w) for c, w in zip(arch.cells, widths, strict=True))
    reductions = sum(
        bn_params(c_in) + 9 * c_in * c_out + bn_params(c_out)
        for c_in, c_out in zip(widths, widths[1:], strict=False)
    )
    last = widths[-1]
    if macro.head == "snasnet":
        outputs = macro.voters_per_class * macro.num_classes
        head = bn_params(last) + last * final * final * macro.hidden
        head += macro.hidden * outputs + outputs
    else:
        head = bn_params(last) + last * macro.num_classes + macro.num_classes
    return MemoryReport(stem, cells, reductions, head, weight_bits)
