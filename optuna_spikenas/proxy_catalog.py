"""The training-free proxies a study can score with (``[score] kind``), without torch.

The registry of proxies. A new proxy is one module (``optuna_spikenas/proxies/``, or a kernel of
``score.py``'s Hamming family) and one line here. Two kinds of function:

* a network proxy, ``function(network, batches) -> float``: the objective builds the candidate's
  untrained network once per initialisation (``[score] inits``) and averages the values;
* an architecture proxy, ``function(arch, macro) -> float``: a count that needs no network and
  costs nothing (a naive baseline any network proxy must beat to be worth its forward pass).

Higher is better for every proxy. The config accepts exactly these names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Proxy:
    function: str
    """``module:function`` of the proxy."""
    uses_network: bool
    """True: ``function(network, batches)``; False: ``function(arch, macro)``."""
    about: str
    """One line for README, ``--help`` and reports."""

    def load(self) -> Callable[..., float]:
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


PROXIES: dict[str, Proxy] = {
    "sahd": Proxy("optuna_spikenas.score:sahd_score", True, "sparsity-aware Hamming (SNASNet)"),
    "hamming": Proxy("optuna_spikenas.score:hamming_score", True, "plain Hamming (the ablation)"),
    "jacob_cov": Proxy(
        "optuna_spikenas.proxies.jacob_cov:jacob_cov_score", True, "Jacobian covariance (NASWOT v1)"
    ),
    "params": Proxy("optuna_spikenas.proxies.params:params_score", False, "parameter count"),
    "convs": Proxy(
        "optuna_spikenas.proxies.convs:convs_score", False, "convs on a path to the out"
    ),
}
"""Each proxy of ``[score] kind``, by name."""

SCORE_KINDS: tuple[str, ...] = tuple(PROXIES)


def proxy_function(kind: str) -> Callable[..., Any]:
    """The function of proxy ``kind``."""
    if kind not in PROXIES:
        raise ValueError(f"kind must be one of {sorted(PROXIES)}, got {kind!r}")
    return PROXIES[kind].load()
