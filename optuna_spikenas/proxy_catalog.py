"""The training-free proxies a study can score with (``[score] kind``), without torch.

The registry of proxies: a new one is its kernel function (a layer's spikes ``[B, units]`` to a
``B x B`` kernel, written in ``score.py`` or a module of its own) and one line here naming it.
``score.py`` looks the kernel up from here; the config accepts exactly these names.
"""

from __future__ import annotations

PROXIES: dict[str, str] = {
    "sahd": "optuna_spikenas.score:sahd_kernel",  # SNASNet's sparsity-aware Hamming distance
    "hamming": "optuna_spikenas.score:hamming_kernel",  # plain Hamming similarity (ablation)
}
"""Each proxy's kernel, as ``module:function``."""

SCORE_KINDS: tuple[str, ...] = tuple(PROXIES)
