"""SAHD: the sparsity-aware Hamming-distance training-free score of SNASNet.

Kim et al., "Neural Architecture Search for Spiking Neural Networks", ECCV 2022.

An untrained network is fed one batch of ``B`` images. At every LIF layer and every timestep
the binary spike map is flattened to ``x ∈ {0,1}^(B×N)`` and turned into a ``B×B`` kernel:

* ``r_i = mean(x_i)``, the firing rate of sample ``i``;
* ``d_H(i,j) = Σ_n [x_in ≠ x_jn]``, the Hamming distance between samples ``i`` and ``j``;
* ``E[d_H(i,j)] = N·(r_i(1−r_j) + (1−r_i)·r_j)``, its expectation for independent units
  firing at those rates;
* ``K_layer(i,j) = N − 0.5·d_H(i,j) / (E[d_H(i,j)] + 1e−3)``.

The layer kernels are averaged over all (LIF layer, timestep) pairs,
``K = Σ K_layer / count``, and the score is ``log|det K|``. Higher is better: samples whose
spike patterns are well separated give a well-conditioned ``K``. The reference repeats this on
a few batches (2 by default) with the same initialisation and averages the scores.

The paper's ablation, the plain Hamming-distance kernel, is ``K_layer(i,j) = N − d_H(i,j)``.

Edge case: if no neuron ever fires, every ``K_layer`` is the constant matrix ``N·11ᵀ`` (rank
one), so for ``B ≥ 2`` the score is ``-inf``: the worst possible value, never NaN.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

import torch
from torch import nn

# spikingjelly's import probes for Triton and logs a warning on CPU-only builds of torch.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional, neuron  # noqa: E402

__all__ = [
    "Kernel",
    "SpikeKernelRecorder",
    "hamming_kernel",
    "hamming_score",
    "log_abs_det",
    "sahd_kernel",
    "kernel_score",
    "sahd_score",
    "scoring_mode",
]

Kernel = Callable[[torch.Tensor], torch.Tensor]
"""A layer's spikes ``[B, ...]`` to a float64 ``B x B`` kernel."""

_EPS = 1e-3
# Sums of 0/1 products are exact in float32 while they stay below 2**24.
_FLOAT32_EXACT_LIMIT = 2**24


def _binary_gram(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Flatten ``spikes [B, ...]`` to ``x ∈ {0,1}^(B×N)`` (``x = spikes > 0``).

    Returns ``(G, s, N)`` with ``G = x xᵀ`` (float64 ``[B,B]``: the number of units where both
    samples spike) and ``s`` the float64 row sums (spike counts per sample).
    """
    if spikes.dim() < 2:
        raise ValueError(
            f"spikes must have shape [B, ...] with at least 2 dims, got {spikes.shape}"
        )
    flat = spikes.detach().reshape(spikes.shape[0], -1)
    n_units = flat.shape[1]
    if n_units == 0:
        raise ValueError("spikes have no units (N = 0)")
    # The matmul runs in float32 where that is exact, float64 otherwise.
    mm_dtype = torch.float32 if n_units < _FLOAT32_EXACT_LIMIT else torch.float64
    x = (flat > 0).to(mm_dtype)
    gram = (x @ x.T).to(torch.float64)
    row_sums = x.sum(dim=1, dtype=torch.float64)
    return gram, row_sums, n_units


def _hamming_distances(spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``d_H(i,j) = s_i + s_j − 2·(x xᵀ)_ij`` with one matmul. Returns ``(d_H, s, N)``."""
    gram, row_sums, n_units = _binary_gram(spikes)
    d_h = row_sums[:, None] + row_sums[None, :] - 2.0 * gram
    return d_h, row_sums, n_units


def sahd_kernel(spikes: torch.Tensor) -> torch.Tensor:
    """Sparsity-aware Hamming kernel of one spike map.

    ``spikes`` has shape ``[B, ...]`` (any float or bool dtype; a value ``> 0`` is a spike) and
    is flattened to ``x ∈ {0,1}^(B×N)``. With ``s_i = Σ_n x_in`` and ``r_i = s_i / N``::

        d_H(i,j)    = s_i + s_j − 2·(x xᵀ)_ij
        E[d_H(i,j)] = N·(r_i·(1 − r_j) + (1 − r_i)·r_j)
        K(i,j)      = N − 0.5·d_H(i,j) / (E[d_H(i,j)] + 1e−3)

    Returns the float64 ``[B, B]`` kernel on the device of ``spikes``.
    """
    d_h, row_sums, n_units = _hamming_distances(spikes)
    rate = row_sums / n_units
    r_i, r_j = rate[:, None], rate[None, :]
    expected = n_units * (r_i * (1.0 - r_j) + (1.0 - r_i) * r_j)
    return n_units - 0.5 * d_h / (expected + _EPS)


def hamming_kernel(spikes: torch.Tensor) -> torch.Tensor:
    """Plain Hamming kernel of one spike map (the paper's ablation).

    ``spikes [B, ...]`` flattened to ``x ∈ {0,1}^(B×N)`` (``> 0`` is a spike)::

        K(i,j) = N − d_H(i,j),   d_H(i,j) = s_i + s_j − 2·(x xᵀ)_ij

    i.e. the number of units on which samples ``i`` and ``j`` agree. Returns float64 ``[B, B]``.
    """
    d_h, _, n_units = _hamming_distances(spikes)
    return n_units - d_h


def log_abs_det(kernel: torch.Tensor) -> float:
    """``log|det K|`` (``slogdet``'s ``logabsdet``, computed in float64) as a Python float.

    ``-inf`` for a singular ``K`` (e.g. a network that never fires); NaN only if ``K`` holds
    NaN.
    """
    if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square matrix, got shape {tuple(kernel.shape)}")
    _, logabsdet = torch.linalg.slogdet(kernel.detach().to(torch.float64))
    return float(logabsdet)


class SpikeKernelRecorder:
    """Context manager accumulating spike kernels from every spikingjelly neuron of a module.

    On entry a forward hook is registered on each ``spikingjelly.activation_based.neuron.BaseNode``
    (LIFNode, IFNode, ...) inside ``module``. Each call of a single-step neuron is one
    (layer, timestep) pair: its output spikes ``[B, ...]`` give ``K_layer = kernel(spikes)``
    (:func:`sahd_kernel` by default, or :func:`hamming_kernel`), added to ``kernel_sum``, and
    ``count`` goes up by one. A multi-step neuron (``step_mode == "m"``,
    output ``[T, B, ...]``) contributes its ``T`` timesteps as ``T`` pairs. The hooks are
    removed on exit; ``mean_kernel()`` is ``kernel_sum / count``.
    """

    def __init__(self, module: nn.Module, kernel: Kernel = sahd_kernel) -> None:
        self.kernel = kernel
        self.module = module
        self.kernel_sum: torch.Tensor | None = None
        self.count = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _add(self, spikes: torch.Tensor) -> None:
        kernel = self.kernel(spikes)
        self.kernel_sum = kernel if self.kernel_sum is None else self.kernel_sum + kernel
        self.count += 1

    def _hook(self, node: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        spikes = output[0] if isinstance(output, tuple) else output
        if not isinstance(spikes, torch.Tensor):
            raise TypeError(f"{type(node).__name__} returned {type(spikes).__name__}, not a tensor")
        if getattr(node, "step_mode", "s") == "m":
            for step in spikes:
                self._add(step)
        else:
            self._add(spikes)

    def __enter__(self) -> SpikeKernelRecorder:
        for sub in self.module.modules():
            if isinstance(sub, neuron.BaseNode):
                self._handles.append(sub.register_forward_hook(self._hook))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def mean_kernel(self) -> torch.Tensor:
        """``K = Σ K_layer / count`` over all recorded (layer, timestep) pairs."""
        if self.kernel_sum is None or self.count == 0:
            raise ValueError("network has no spiking neurons")
        return self.kernel_sum / self.count


def sahd_score(network: nn.Module, batches: Sequence[torch.Tensor]) -> float:
    """SNASNet's training-free SAHD score (:func:`kernel_score` with :func:`sahd_kernel`)."""
    return kernel_score(network, batches, sahd_kernel)


def hamming_score(network: nn.Module, batches: Sequence[torch.Tensor]) -> float:
    """The plain Hamming-kernel score, SNASNet's ablation (:func:`hamming_kernel`); with binary
    spikes this is NASWOT's score (Mellor et al., ICML 2021) over spike maps."""
    return kernel_score(network, batches, hamming_kernel)


def kernel_score(network: nn.Module, batches: Sequence[torch.Tensor], kernel: Kernel) -> float:
    """A training-free score: ``mean over batches of log|det(Σ K_layer / count)|``, the layer
    kernels ``K_layer = kernel(spikes)`` (:func:`sahd_kernel`: SNASNet's SAHD,
    :func:`hamming_kernel`: plain Hamming similarity).

    ``network(images [B, C, H, W])`` must run all its timesteps internally (single-step neurons
    called once per timestep) and return ``[B, classes]``; ``batches`` are already on the
    network's device. For each batch the network state is reset with
    ``spikingjelly.activation_based.functional.reset_net`` before and after, BatchNorm uses
    batch statistics (``network.train()``), no gradients are taken, and every neuron call adds
    one kernel (see :class:`SpikeKernelRecorder`). Higher is better; ``-inf`` when ``K`` is
    singular (e.g. nothing fires).

    Scoring has no lasting side effects: the training/eval mode, buffers (BatchNorm running
    statistics) and neuron states are restored afterwards.

    Raises ``ValueError`` if ``batches`` is empty or no spiking neuron was called.
    """
    if len(batches) == 0:
        raise ValueError("batches must not be empty")
    scores: list[float] = []
    with scoring_mode(network), torch.no_grad():
        for images in batches:
            functional.reset_net(network)
            try:
                with SpikeKernelRecorder(network, kernel) as recorder:
                    network(images)
            finally:
                functional.reset_net(network)
            # mean_kernel raises ValueError("network has no spiking neurons") if count == 0.
            scores.append(log_abs_det(recorder.mean_kernel()))
    return sum(scores) / len(scores)


@contextlib.contextmanager
def scoring_mode(network: nn.Module) -> Iterator[None]:
    """Training mode (BatchNorm on batch statistics, as SNASNet scores) for the block, then the
    network exactly as it was: its mode, its buffers (BatchNorm running statistics) and its
    neurons' states (``reset_net``)."""
    was_training = network.training
    saved_buffers = [(buf, buf.detach().clone()) for buf in network.buffers()]
    try:
        network.train()
        yield
    finally:
        functional.reset_net(network)
        with torch.no_grad():
            for buf, value in saved_buffers:
                buf.copy_(value)
        network.train(was_training)
