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
import weakref
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

import torch
from torch import nn

# spikingjelly's import probes for Triton and logs a warning on CPU-only builds of torch.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional, neuron  # noqa: E402

from optuna_spikenas import spike_counts  # noqa: E402
from optuna_spikenas.spike_counts import GramPart, SpikeCounts, count_spikes  # noqa: E402

__all__ = [
    "BATCHED_KERNELS",
    "Kernel",
    "SpikeCounts",
    "count_spikes",
    "hamming_kernels",
    "sahd_kernels",
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


def sahd_kernels(counts: SpikeCounts) -> torch.Tensor:
    """SNASNet's sparsity-aware Hamming kernel of each map, ``[M, B, B]``::

        r_i = s_i / N,  E[d_H(i,j)] = N·(r_i·(1 − r_j) + (1 − r_i)·r_j)
        K(i,j) = N − 0.5·d_H(i,j) / (E[d_H(i,j)] + 1e−3)
    """
    n = counts.units[:, None, None]
    rate = counts.row_sums / counts.units[:, None]
    r_i, r_j = rate[:, :, None], rate[:, None, :]
    expected = n * (r_i * (1.0 - r_j) + (1.0 - r_i) * r_j)
    return n - 0.5 * counts.hamming_distances() / (expected + _EPS)


def hamming_kernels(counts: SpikeCounts) -> torch.Tensor:
    """The plain Hamming kernel of each map, ``K(i,j) = N − d_H(i,j)``, ``[M, B, B]``."""
    return counts.units[:, None, None] - counts.hamming_distances()


def _one_map(spikes: torch.Tensor) -> SpikeCounts:
    if spikes.dim() < 2:
        raise ValueError(
            f"spikes must have shape [B, ...] with at least 2 dims, got {spikes.shape}"
        )
    return count_spikes(spikes.unsqueeze(0))


def sahd_kernel(spikes: torch.Tensor) -> torch.Tensor:
    """Sparsity-aware Hamming kernel of one spike map.

    ``spikes`` has shape ``[B, ...]`` (any float or bool dtype; a value ``> 0`` is a spike) and
    is flattened to ``x ∈ {0,1}^(B×N)``. With ``s_i = Σ_n x_in`` and ``r_i = s_i / N``::

        d_H(i,j)    = s_i + s_j − 2·(x xᵀ)_ij
        E[d_H(i,j)] = N·(r_i·(1 − r_j) + (1 − r_i)·r_j)
        K(i,j)      = N − 0.5·d_H(i,j) / (E[d_H(i,j)] + 1e−3)

    Returns the float64 ``[B, B]`` kernel on the device of ``spikes``.
    """
    return sahd_kernels(_one_map(spikes))[0]


def hamming_kernel(spikes: torch.Tensor) -> torch.Tensor:
    """Plain Hamming kernel of one spike map (the paper's ablation).

    ``spikes [B, ...]`` flattened to ``x ∈ {0,1}^(B×N)`` (``> 0`` is a spike)::

        K(i,j) = N − d_H(i,j),   d_H(i,j) = s_i + s_j − 2·(x xᵀ)_ij

    i.e. the number of units on which samples ``i`` and ``j`` agree. Returns float64 ``[B, B]``.
    """
    return hamming_kernels(_one_map(spikes))[0]


BATCHED_KERNELS: dict[Kernel, Callable[[SpikeCounts], torch.Tensor]] = {
    sahd_kernel: sahd_kernels,
    hamming_kernel: hamming_kernels,
}
"""The batched form of each built-in kernel: the recorder counts spikes as they come (one
matmul per neuron call, all its timesteps at once) and computes every kernel in one go."""


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
    (LIFNode, IFNode, ...) inside ``module``. Each timestep of each neuron call is one
    (layer, timestep) pair: a single-step neuron's output ``[B, ...]`` is one, a multi-step
    neuron's (``step_mode == "m"``, output ``[T, B, ...]``) is ``T``. Each pair's kernel
    ``K_layer = kernel(spikes)`` (:func:`sahd_kernel` by default, or :func:`hamming_kernel`) is
    added to ``kernel_sum`` and ``count`` goes up by one; ``mean_kernel()`` is
    ``kernel_sum / count``. The hooks are removed on exit.

    For the built-in kernels (``BATCHED_KERNELS``) a call only counts spikes (one batched
    matmul over its timesteps; none for an output tensor already counted in the pass, as twin
    neurons return, see ``snn/lean_neuron.py``) and the kernels are computed together when
    ``kernel_sum`` is first read; any other kernel is called once per pair as the spikes come.
    """

    def __init__(self, module: nn.Module, kernel: Kernel = sahd_kernel) -> None:
        self.kernel = kernel
        self.module = module
        self.count = 0
        self._batched = BATCHED_KERNELS.get(kernel)
        self._pending: list[GramPart] = []
        # Outputs seen in this pass (twin neurons return one tensor), while they are alive.
        self._seen: dict[int, tuple[weakref.ref[torch.Tensor], GramPart]] = {}
        self._sum: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def kernel_sum(self) -> torch.Tensor | None:
        """``Σ K_layer`` over the pairs recorded so far (None before the first)."""
        if self._pending:
            assert self._batched is not None
            total = self._batched(GramPart.combine(self._pending)).sum(dim=0)
            self._sum = total if self._sum is None else self._sum + total
            self._pending.clear()
        return self._sum

    def _add(self, spikes: torch.Tensor, steps: torch.Tensor, binary: bool) -> None:
        """Record the maps ``steps [S, B, ...]`` of the neuron output ``spikes`` (``binary``:
        exact 0.0 / 1.0 spikes). An output already recorded (the same tensor, returned by twin
        neurons) counts again without a second matmul."""
        self.count += steps.shape[0]
        if self._batched is None:
            for one in steps:
                kernel = self.kernel(one)
                self._sum = kernel if self._sum is None else self._sum + kernel
            return
        key = id(spikes)
        seen = self._seen.get(key)
        if seen is not None and seen[0]() is spikes:
            self._pending.append(seen[1])
            return
        part = spike_counts.spike_grams(steps, binary)
        self._seen[key] = (weakref.ref(spikes, self._forget(key)), part)
        self._pending.append(part)

    def _forget(self, key: int) -> Callable[[object], None]:
        """A weak reference's callback: the output ``key`` is gone, so is its entry."""

        def forget(_: object) -> None:
            self._seen.pop(key, None)

        return forget

    def _hook_of(self, node: nn.Module) -> Callable[[nn.Module, tuple, object], None]:
        # A neuron whose surrogate fires in its forward (SpikingJelly's default) emits exact
        # 0.0 / 1.0 spikes, used as they are.
        binary = bool(getattr(getattr(node, "surrogate_function", None), "spiking", False))

        def hook(node: nn.Module, inputs: tuple, output: object) -> None:
            spikes = output[0] if isinstance(output, tuple) else output
            if not isinstance(spikes, torch.Tensor):
                kind = type(spikes).__name__
                raise TypeError(f"{type(node).__name__} returned {kind}, not a tensor")
            multi_step = getattr(node, "step_mode", "s") == "m"
            self._add(spikes, spikes if multi_step else spikes.unsqueeze(0), binary)

        return hook

    def __enter__(self) -> SpikeKernelRecorder:
        for sub in self.module.modules():
            if isinstance(sub, neuron.BaseNode):
                self._handles.append(sub.register_forward_hook(self._hook_of(sub)))
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
        total = self.kernel_sum
        if total is None or self.count == 0:
            raise ValueError("network has no spiking neurons")
        return total / self.count


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
    network exactly as it was: each module's mode, the buffers (BatchNorm running statistics)
    and the neurons' states (``reset_net``).

    BatchNorm layers normalise by batch statistics without updating their running statistics
    inside the block (``track_running_stats`` off: the same outputs, buffers untouched); any
    other buffer is saved and restored."""
    modules = list(network.modules())
    modes = [m.training for m in modules]
    norms = [
        m
        for m in modules
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    untouched = {id(buf) for m in norms for buf in m.buffers(recurse=False)}
    saved_buffers = [
        (buf, buf.detach().clone()) for buf in network.buffers() if id(buf) not in untouched
    ]
    try:
        for m, mode in zip(modules, modes, strict=True):
            if not mode:
                m.training = True
        for m in norms:
            m.track_running_stats = False
        yield
    finally:
        for m in norms:
            m.track_running_stats = True
        functional.reset_net(network)
        with torch.no_grad():
            for buf, value in saved_buffers:
                buf.copy_(value)
        for m, mode in zip(modules, modes, strict=True):
            if m.training != mode:
                m.training = mode
