"""Operation analysis (SpikeNAS step 1): which operations can leave the cell space?

Modules: ``sampling`` (step 1), ``evidence`` (steps 4-5, the rule), ``analysis`` (the whole
procedure), ``figures`` (table, figure, JSON).

Putra & Shafique (SpikeNAS, 2024) measured each operation's effect on accuracy and found that
removing ``zero``, ``conv1x1`` and ``avgpool3x3`` from SNASNet's cells does not change accuracy
significantly, so SpikeNAS searches {skip, conv3x3} only. This module repeats the analysis with
the training-free score instead of (or, optionally, next to) training.

Procedure, for the full op set F and for every op o (the set F \\ {o}):

1. **Sample** ``n`` distinct valid architectures of the config's space (macro, num_cells,
   widths, shared cell, backward edges, SNASNet validity) whose edges use only ops of the set
   (:func:`sample_architectures`). Each draw picks every edge uniformly among the set's choices
   (``zero``, or a non-zero op with, in backward spaces, a direction), so every cell of the set
   is equally likely; a draw that is invalid or whose canonical form was already drawn is
   rejected. When the set has fewer than ``n`` distinct architectures, all of them are taken.
2. **Skip** candidates over the config's memory budget (never built, never scored, counted).
3. **Score** the rest with the objective's training-free score. Identical architectures (same
   canonical key) across sets are scored once.
4. **Summarise** the finite scores x_1..x_m of the set: mean, median, 90th percentile (linear
   interpolation), max, and the top-quartile mean ``T(x)``, the mean of the ``k = ceil(m / 4)``
   largest scores. A score of ``-inf`` (singular kernel: a network that never fires) is counted
   as ``non_finite`` and left out of the statistics.
5. **Compare** with the full set: ``Δ = T(x_set) − T(x_full)``, with a seeded percentile
   bootstrap 95 % interval: ``B`` times, resample each set with replacement (independently, at
   its own size), take ``Δ* = T(x*_set) − T(x*_full)``; the interval is the 2.5 % and 97.5 %
   quantiles of the ``Δ*``. (Sets share some architectures; resampling them independently ignores
   that positive correlation, which makes the interval wider, i.e. conservative.)
6. Optionally (``train_settings``) **short-train** the 3 best-scored architectures of each set
   and take their mean validation accuracy.

**Proposal rule.** An op o is *removable* when removing it does not lower the top-quartile mean
score: the bootstrap interval of Δ includes 0 or lies above it (its upper end is ``>= 0``), and,
when accuracy was measured, the mean accuracy without o is at most 1 point (percentage point)
below the full set's. The proposed op set is the ops that are not removable. A set that leaves
fewer than 32 distinct valid cells has nothing to search (``{conv3x3}`` alone is one cell), so
then the removable ops are added back, the one whose removal lowers the top-quartile mean most
first, until 32 cells are reached. The proposed set is then sampled and scored like the others
and compared with SpikeNAS's {skip, conv3x3}.
"""

from __future__ import annotations

from optuna_spikenas.op_analysis.analysis import OpAnalysis, OpSetResult, analyze_ops
from optuna_spikenas.op_analysis.evidence import (
    RULE,
    SPIKENAS_OPS,
    RemovalEvidence,
    ScoreStats,
    bootstrap_difference,
    is_removable,
    propose_ops,
    score_stats,
    top_quartile_mean,
)
from optuna_spikenas.op_analysis.figures import format_table, op_analysis_figure, write_outputs
from optuna_spikenas.op_analysis.sampling import count_architectures, sample_architectures

__all__ = [
    "SPIKENAS_OPS",
    "RULE",
    "OpAnalysis",
    "OpSetResult",
    "RemovalEvidence",
    "ScoreStats",
    "analyze_ops",
    "bootstrap_difference",
    "count_architectures",
    "format_table",
    "is_removable",
    "op_analysis_figure",
    "propose_ops",
    "sample_architectures",
    "score_stats",
    "top_quartile_mean",
    "write_outputs",
]
