"""Spike counts and a synaptic-operation energy estimate, measured on any network of the project.

``ActivityCounter`` is a context manager that hooks every SpikingJelly neuron, conv and linear
layer of a network while the caller runs it (a scoring pass, an evaluation, ...), so counting
costs no extra forward pass:

* **spikes**: the sum of every neuron's output over all timesteps, per neuron layer (named as
  in ``network.named_modules()``), plus the sum of every max-pooled spike map (a ``MaxPool2d``
  whose input is binary), divided by the images the network was given: spikes per image,
  AutoSNN's measure (its ``SpikingMaxPool2d`` counts the pooled maps). ``neuron_spikes`` leaves
  the pooled maps out.
* **synaptic operations** (SynOps, accumulates): a conv or linear layer whose input is binary
  (spikes) does one accumulate per input spike and per synapse it drives: ``Cout * kh * kw /
  (stride_h * stride_w)`` for a conv (border positions where the kernel hangs over the padding
  are counted as well, a slight overestimate), ``out_features`` for a linear. A layer with real
  valued input (the stem's image, pooled spikes) does ``output elements * Cin * kh * kw``
  multiply-accumulates (MACs) instead.
* **energy** (SPEC section 3's digital convention, Horowitz 45 nm): ``SynOps * E_AC + MACs *
  E_MAC`` with 0.9 / 4.6 pJ at 32-bit weights and 0.03 / 0.23 pJ at 8 bits or fewer.

This is the convention SNN papers quote for digital neuromorphic hardware; the in-memory
computing chip's energy is ``hardware/imc.py``'s.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from types import TracebackType

import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import functional, neuron  # noqa: E402

# pJ per operation (Horowitz, ISSCC 2014, 45 nm), as SNN papers quote them.
ENERGY_PJ = {
    "fp32": {"ac": 0.9, "mac": 4.6},
    "int8": {"ac": 0.03, "mac": 0.23},
}


def energy_kind(weight_bits: int) -> str:
    """Which row of ``ENERGY_PJ`` a bit width uses: int8 up to 8 bits, fp32 above."""
    return "int8" if weight_bits <= 8 else "fp32"


@dataclass(frozen=True)
class Activity:
    """What a network did per image, averaged over the images it was run on."""

    images: int
    spikes_by_layer: dict[str, float]  # neuron layers
    synops: float
    macs: float
    pooled_spikes_by_layer: dict[str, float] = field(default_factory=dict)  # max-pools of spikes

    @property
    def neuron_spikes(self) -> float:
        """Spikes emitted by the neuron layers."""
        return sum(self.spikes_by_layer.values())

    @property
    def spikes(self) -> float:
        """AutoSNN's count: the neurons' spikes and the max-pooled spike maps."""
        return self.neuron_spikes + sum(self.pooled_spikes_by_layer.values())

    def energy_uj(self, weight_bits: int = 32) -> float:
        """Digital SynOp energy per image, in µJ."""
        cost = ENERGY_PJ[energy_kind(weight_bits)]
        return (self.synops * cost["ac"] + self.macs * cost["mac"]) / 1e6

    def as_user_attrs(self, weight_bits: int = 32) -> dict[str, object]:
        """JSON-safe trial attributes, one number each: spikes, SynOps and MACs per image, the
        SynOp energy. The per-layer counts are :meth:`by_layer` (a trial's artifact)."""
        return {
            "spikes_per_image": self.spikes,
            "neuron_spikes_per_image": self.neuron_spikes,
            "synops_per_image": round(self.synops, 1),
            "macs_per_image": round(self.macs, 1),
            "synops_energy_uj": round(self.energy_uj(weight_bits), 6),
            "synops_energy_convention": f"Horowitz 45 nm, {energy_kind(weight_bits)}",
        }

    def by_layer(self) -> dict[str, dict[str, float]]:
        """Spikes per image of each neuron layer and (when any) of each max-pooled spike map."""
        layers = {"spikes_by_layer": {k: round(v, 3) for k, v in self.spikes_by_layer.items()}}
        if self.pooled_spikes_by_layer:
            pooled = {k: round(v, 3) for k, v in self.pooled_spikes_by_layer.items()}
            layers["pooled_spikes_by_layer"] = pooled
        return layers

    def layer_csv(self) -> str:
        """:meth:`by_layer` as CSV (``layer,kind,spikes_per_image,share``; share: percent of
        :attr:`spikes`), network order, a row per layer."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("layer", "kind", "spikes_per_image", "share"))
        for kind, counts in (
            ("neurons", self.spikes_by_layer),
            ("max-pooled spikes", self.pooled_spikes_by_layer),
        ):
            for name, spikes in counts.items():
                share = 100 * spikes / self.spikes if self.spikes else 0.0
                writer.writerow((name, kind, f"{spikes:.3f}", f"{share:.1f}"))
        return text.getvalue()


def _is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


class ActivityCounter:
    """Count spikes, SynOps and MACs of ``network`` while it runs inside the ``with`` block.

    Every call of ``network`` itself counts its batch's images; a neuron's output of shape
    ``[B, ...]`` (single step) or ``[T, B, ...]`` (multi-step) is summed whole.
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.images = 0
        self.spikes: dict[str, float] = {}
        self.pooled: dict[str, float] = {}
        self.synops = 0.0
        self.macs = 0.0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> ActivityCounter:
        self._handles.append(self.network.register_forward_pre_hook(self._count_images))
        for name, module in self.network.named_modules():
            if isinstance(module, neuron.BaseNode):
                self.spikes[name] = 0.0
                self._handles.append(module.register_forward_hook(self._spike_hook(name)))
            elif isinstance(module, nn.MaxPool2d):
                self._handles.append(module.register_forward_hook(self._pool_hook(name)))
            elif isinstance(module, nn.Conv2d | nn.Linear):
                self._handles.append(module.register_forward_hook(self._synapse_hook))
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

    def _count_images(self, module: nn.Module, inputs: tuple) -> None:
        self.images += int(inputs[0].shape[0])

    def _spike_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.spikes[name] += float(output.detach().sum())

        return hook

    def _pool_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if _is_binary(inputs[0]):  # a pooled spike map; pooled real values are not spikes
                self.pooled[name] = self.pooled.get(name, 0.0) + float(output.detach().sum())

        return hook

    def _synapse_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0].detach()
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            fan_out = module.out_channels * kernel / (module.stride[0] * module.stride[1])
            fan_in = module.in_channels // module.groups * kernel
        else:
            assert isinstance(module, nn.Linear)
            fan_out, fan_in = float(module.out_features), module.in_features
        if _is_binary(x):
            self.synops += float(x.sum()) * fan_out
        else:
            self.macs += float(output.numel()) * fan_in

    def result(self) -> Activity:
        if self.images == 0:
            raise ValueError("the network was not run inside the ActivityCounter block")
        n = self.images
        return Activity(
            images=n,
            spikes_by_layer={k: v / n for k, v in self.spikes.items()},
            synops=self.synops / n,
            macs=self.macs / n,
            pooled_spikes_by_layer={k: v / n for k, v in self.pooled.items()},
        )


def measure_activity(network: nn.Module, images: torch.Tensor) -> Activity:
    """Run ``network`` once on ``images`` in eval mode without gradients and count its activity.
    Neuron states are reset before and after, and the train/eval mode is restored."""
    was_training = network.training
    network.eval()
    functional.reset_net(network)
    try:
        with torch.no_grad(), ActivityCounter(network) as counter:
            network(images)
    finally:
        functional.reset_net(network)
        network.train(was_training)
    return counter.result()
