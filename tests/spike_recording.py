"""Every neuron layer's spikes of a network pass, for tests that compare two networks."""

from __future__ import annotations

import logging

import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import neuron  # noqa: E402


class SpikeRecorder:
    """Every neuron layer's spikes, as ``[T, B, ...]`` per layer, whatever the step mode."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.spikes: dict[str, list[torch.Tensor]] = {}
        self.handles = [
            module.register_forward_hook(self.hook(name))
            for name, module in network.named_modules()
            if isinstance(module, neuron.BaseNode)
        ]

    def hook(self, name: str):
        def record(module, inputs, output):
            steps = output if module.step_mode == "m" else output.unsqueeze(0)
            self.spikes.setdefault(name, []).extend(s.detach().clone() for s in steps)

        return record

    def stacked(self) -> dict[str, torch.Tensor]:
        for handle in self.handles:
            handle.remove()
        return {name: torch.stack(steps) for name, steps in self.spikes.items()}
