"""SNASNet's operations and cell as SpikingJelly modules.

A network calls a cell once per timestep (``forward``), or, for a cell without backward edges,
once for all timesteps (``forward_steps``, ``[T, B, ...]``: see ``multistep.py``). Node values
are real-valued sums; every conv op owns a LIF neuron that it applies to its input (pre-
activation); the neurons of the ops fed by one node are twins (``lean_neuron.py``): where no
gradient is taken, the first of them to run in a step computes for all. Backward edges write
into a buffer that is added to their target node at the next timestep, so the cell is a
``MemoryModule`` whose state ``functional.reset_net`` clears together with the neurons'. As in
SNASNet's cell, every op runs at every step: a node with no value yet (fed only through a
backward edge, at the first step) is a zero tensor, and the sums are taken in SNASNet's order,
so outputs agree with its cell exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from optuna_spikenas.snn.lean_neuron import Charge, LeanForward, share_input
from optuna_spikenas.snn.multistep import run_steps
from optuna_spikenas.space import AVGPOOL3X3, CONV1X1, CONV3X3, NUM_NODES, SKIP, Cell

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import base, neuron, surrogate  # noqa: E402

LIF_TAU = 4.0 / 3.0
LIF_THRESHOLD = 1.0


class SNASNetLIF(LeanForward, neuron.LIFNode):
    """SpikingJelly's ``LIFNode`` with SNASNet's settings: tau 4/3, threshold 1, decaying input,
    hard reset to 0 (detached), ATan surrogate.

    Where no gradient is taken (scoring, evaluation) it runs ``LeanForward``'s path with
    SpikingJelly's charge for ``v_reset = 0``, ``h = v + (x - v) / tau`` (the same operations in
    the same order): spikes and potentials bit-for-bit SpikingJelly's (tested). With gradients,
    SpikingJelly's implementation runs unchanged.
    """

    def __init__(self) -> None:
        super().__init__(
            tau=LIF_TAU,
            v_threshold=LIF_THRESHOLD,
            v_reset=0.0,
            detach_reset=True,
            surrogate_function=surrogate.ATan(),
        )

    def _lean(self, x: torch.Tensor) -> bool:
        return not (torch.is_grad_enabled() and x.requires_grad) and not self.store_v_seq

    def _charger(self) -> Charge:
        tau = self.tau

        def charge(x: torch.Tensor, v: torch.Tensor | float) -> torch.Tensor:
            return torch.sub(x, v).div_(tau).add_(v)  # v + (x - v) / tau, SpikingJelly's order

        return charge


def lif() -> SNASNetLIF:
    """SNASNet's neuron (see ``SNASNetLIF``)."""
    return SNASNetLIF()


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> list:
    """A bias-free convolution followed by batch norm (as a list, to splice into Sequentials)."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels)]


def make_op(code: int, channels: int) -> nn.Module:
    """The module of one edge; ``zero`` edges are never built."""
    if code == SKIP:
        return nn.Identity()
    if code == CONV1X1:
        return nn.Sequential(lif(), *conv_bn(channels, channels, 1))
    if code == CONV3X3:
        return nn.Sequential(lif(), *conv_bn(channels, channels, 3))
    if code == AVGPOOL3X3:
        return nn.AvgPool2d(3, stride=1, padding=1)
    raise ValueError(f"op code {code} has no module (zero edges are not built)")


class SpikingCell(base.MemoryModule):
    """One SNASNet cell over ``channels`` channels, built from the cell's pruned form."""

    feedback: list[torch.Tensor] | None  # a SpikingJelly memory (reset with the network)

    def __init__(self, cell: Cell, channels: int) -> None:
        super().__init__()
        self.cell = cell.pruned()
        self.edge_list = [(src, dst) for src, dst, _ in self.cell.edges()]
        self.ops = nn.ModuleDict(
            {f"{src}{dst}": make_op(code, channels) for src, dst, code in self.cell.edges()}
        )
        # The neurons of the conv ops fed by one node always see that node's value from the
        # same state: twins, computed once per step where no gradient is taken.
        for src in range(NUM_NODES):
            share_input(
                [
                    op[0]
                    for (s, _), op in zip(self.edge_list, self.ops.values(), strict=True)
                    if s == src and isinstance(op, nn.Sequential) and isinstance(op[0], LeanForward)
                ]
            )
        # Backward edges' outputs of the previous step, per target node (None before step 1).
        self.register_memory("feedback", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One timestep: ``x [B, C, H, W]``."""
        return self._nodes(x, lambda op, value: op(value))

    def forward_steps(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All timesteps at once, ``x_seq [T, B, C, H, W]``; only for a cell without backward
        edges (its nodes at step t depend on nothing of step t - 1 but its neurons' states)."""
        if self.cell.has_backward_edges:
            raise RuntimeError("a cell with backward edges runs one timestep at a time")
        return self._nodes(x_seq, run_steps)

    def _nodes(self, x: torch.Tensor, apply: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        # Ops fed by a node that has no value yet run on zeros: their neurons are called (and
        # counted by the score) on silent input, and a trained op's BN bias reaches its target
        # from the first step on, as in SNASNet.
        zero = torch.zeros_like(x)
        previous = self.feedback  # None at the first step and in forward-only cells
        nodes: list[torch.Tensor] = []
        for j in range(NUM_NODES):
            value = x if j == 0 else zero
            for src, dst in self.edge_list:
                if dst == j and src < j:
                    value = value + apply(self.ops[f"{src}{dst}"], nodes[src])
            nodes.append(value if previous is None else value + previous[j])
        if self.cell.has_backward_edges:
            feedback = [zero] * NUM_NODES
            for src, dst in self.edge_list:
                if src > dst:
                    feedback[dst] = feedback[dst] + apply(self.ops[f"{src}{dst}"], nodes[src])
            self.feedback = feedback
        return nodes[NUM_NODES - 1]
