"""The parameter-count baseline: a bigger network scores higher.

Counted analytically from the pruned cells and the macro (``hardware/memory.py``), exactly the
number of weights the built network has. Any proxy that costs a forward pass must beat this.
"""

from __future__ import annotations

from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import Macro
from optuna_spikenas.space import Architecture


def params_score(arch: Architecture, macro: Macro) -> float:
    """The number of weights (and BatchNorm parameters) of ``arch``'s network."""
    return float(memory_report(arch, macro).parameters)
