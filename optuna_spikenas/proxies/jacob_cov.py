"""Jacobian covariance: the first zero-cost proxy of "Neural Architecture Search without
Training" (Mellor, Turner, Storkey and Crowley, arXiv:2006.04647v1, 2020), over spikes.

Per batch of ``B`` images: the gradient of the summed class scores with respect to each input
image, ``J_i = ∂(Σ_b Σ_c y_bc) / ∂x_i`` flattened to a row of ``J [B, D]`` (one backward pass;
an SNN's spikes pass gradients through their surrogate, the ATan of SNASNet's neurons), then

    Σ = corrcoef(J)                     (B x B correlations between the rows)
    λ = eigenvalues of Σ
    score = −Σ_i [ log(λ_i + k) + 1 / (λ_i + k) ],   k = 1e−5

Higher is better: an untrained network whose input gradients are less correlated across images
tells the images apart better. The score is averaged over the scoring batches, like SAHD.

Unlike the Hamming kernels it reads gradients, not spike patterns, so it is a proxy of another
family over the same untrained network. Differences from the paper's code, where it matters:
eigenvalues of the symmetric ``Σ`` with ``eigvalsh`` (real, same values as ``eig``) clipped at 0
against rounding, and ``-inf`` when an image's gradient is constant (its correlation undefined).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas.score import scoring_mode  # noqa: E402

K = 1e-5


def jacob_cov_score(network: nn.Module, batches: Sequence[torch.Tensor]) -> float:
    """The Jacobian-covariance score of the untrained ``network``, averaged over ``batches``
    (BatchNorm on batch statistics; the network is left as it was, as ``scoring_mode`` says)."""
    if len(batches) == 0:
        raise ValueError("batches must not be empty")
    scores: list[float] = []
    with scoring_mode(network):
        for images in batches:
            functional.reset_net(network)
            inputs = images.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                (gradient,) = torch.autograd.grad(network(inputs).sum(), inputs)
            functional.reset_net(network)
            scores.append(jacobian_covariance_score(gradient.reshape(len(gradient), -1)))
    return sum(scores) / len(scores)


def jacobian_covariance_score(jacobians: torch.Tensor) -> float:
    """``−Σ [log(λ + k) + 1/(λ + k)]`` over the eigenvalues ``λ`` of the row correlations of
    ``jacobians [B, D]``; ``-inf`` when a row is constant or not finite."""
    rows = jacobians.detach().to(torch.float64)
    centred = rows - rows.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1)
    if not torch.isfinite(rows).all() or bool((norms == 0).any()):
        return -math.inf
    unit = centred / norms[:, None]
    eigenvalues = torch.linalg.eigvalsh(unit @ unit.T).clamp(min=0.0)
    return float(-(torch.log(eigenvalues + K) + 1.0 / (eigenvalues + K)).sum())
