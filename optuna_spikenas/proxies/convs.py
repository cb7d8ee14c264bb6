"""The conv-count baseline: the number of conv edges that reach the cell output, summed over
the network's cells.

A conv edge counts when it lies on a path from the cell input to the cell output (the pruned
cell's conv1x1 and conv3x3 edges); with shared cells each cell counts again. Counted from the
architecture alone. On SNASNet's skeleton this count ranks trained cells about as well as SAHD
(issue 17), so it is the baseline a spike-pattern proxy has to beat.
"""

from __future__ import annotations

from optuna_spikenas.macros import Macro
from optuna_spikenas.space import CONV_OPS, Architecture


def convs_score(arch: Architecture, macro: Macro) -> float:
    """Conv edges on an input-to-output path, over all cells of ``arch``."""
    return float(
        sum(1 for cell in arch.cells for _, _, code in cell.pruned().edges() if code in CONV_OPS)
    )
