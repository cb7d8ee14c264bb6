"""k-bit weights for training and evaluation (NeuroNAS: 8-bit weights; 4 and 16 as settings).

Every ``Conv2d`` and ``Linear`` weight of a network gets a ``torch.nn.utils.parametrize``
parametrization, so the module keeps float "shadow" weights (what the optimizer updates) and
every forward pass, in training and in evaluation, sees their k-bit version:

    scale = max |w|                       (per tensor, symmetric)
    u     = w / (2 scale) + 1/2           (in [0, 1])
    w_k   = scale (2 round((2^k - 1) u) / (2^k - 1) - 1)

The rounding is SpikingJelly's DoReFa quantizer ``quantize.k_bit_quantize``, whose gradient is
passed straight through; the affine maps around it have slope ``1/(2 scale)`` and ``2 scale``, so
``d w_k / d w = 1`` (a straight-through estimator). The scale is detached: it is a statistic of the
weights, not something to learn. BatchNorm parameters stay in float: on in-memory-computing
hardware they fold into the neurons' thresholds. The memory model (``hardware/memory.py``)
counts every parameter at the chosen width, BatchNorm included, which is the conservative reading.

``float_weights(network)`` switches the quantizers off for a block, to measure what quantization
costs in accuracy on the very same trained weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based.quantize import k_bit_quantize  # noqa: E402

FLOAT_BITS = 32
"""A bit width at or above which weights are left in float (no quantizer is attached)."""


class WeightQuantizer(nn.Module):
    """Symmetric per-tensor k-bit fake quantization with a straight-through gradient."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 0 < bits < FLOAT_BITS:
            raise ValueError(f"weight bits must be an integer in 1 .. {FLOAT_BITS - 1}: {bits!r}")
        self.bits = bits
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        scale = weight.detach().abs().max().clamp_min(torch.finfo(weight.dtype).tiny)
        unit = weight / (2 * scale) + 0.5
        return (2 * k_bit_quantize(unit, self.bits) - 1) * scale

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def quantize_weights(network: nn.Module, bits: int) -> nn.Module:
    """Attach a ``bits``-bit quantizer to every conv and linear weight of ``network`` (in place;
    returned for chaining). ``bits >= 32`` leaves the network in float."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"weight bits must be a positive integer, got {bits!r}")
    if bits >= FLOAT_BITS:
        return network
    for module in list(network.modules()):
        if isinstance(module, nn.Conv2d | nn.Linear) and not parametrize.is_parametrized(
            module, "weight"
        ):
            parametrize.register_parametrization(module, "weight", WeightQuantizer(bits))
    return network


def quantizers(network: nn.Module) -> list[WeightQuantizer]:
    return [m for m in network.modules() if isinstance(m, WeightQuantizer)]


def weight_bits(network: nn.Module) -> int:
    """The bit width the network's weights are quantized to (32: float)."""
    found = {q.bits for q in quantizers(network)}
    if len(found) > 1:
        raise ValueError(f"the network mixes weight bit widths {sorted(found)}")
    return found.pop() if found else FLOAT_BITS


@contextmanager
def float_weights(network: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the network computes with its float shadow weights."""
    switched = [q for q in quantizers(network) if q.enabled]
    for q in switched:
        q.enabled = False
    try:
        yield network
    finally:
        for q in switched:
            q.enabled = True


def k_bit_copy(network: nn.Module, bits: int) -> nn.Module:
    """A copy of ``network`` whose conv and linear weights are their ``bits``-bit values, as
    plain weights (no quantizer left: what a deployment reads, e.g. the NIR export).
    ``bits >= 32`` gives a plain copy."""
    import copy

    frozen = quantize_weights(copy.deepcopy(network), bits)
    for module in frozen.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return frozen
