"""Macro networks around searched cells: SNASNet's (CIFAR10, CIFAR100, TinyImageNet) and ``light``.

Read top to bottom: a ``Macro`` (``macros.py``, where the layout of stem, cells, reductions and
head is drawn) says how cells are stacked and what the head is; ``SpikingNetwork`` runs it for T
timesteps and averages the output over time. Static images ``[B, C, H, W]`` are direct-encoded
(the stem's output is fed identically at every step); event frames ``[B, T, C, H, W]`` feed frame
t, through the stem, at step t (see ``encode_steps``).

A network without backward edges can also run multi-step (``multistep.py``: each layer over all
T steps at once, the same arithmetic with T times fewer calls; ``step_mode`` says when); one with
backward edges runs one timestep at a time, since a step's nodes need the previous step's node
values.
"""

from __future__ import annotations

import hashlib
import logging

import torch
from torch import nn

from optuna_spikenas.macros import Macro
from optuna_spikenas.snn.cell import SpikingCell, conv_bn, lif
from optuna_spikenas.snn.multistep import check_step_mode, run_steps, set_multi_step
from optuna_spikenas.space import Architecture

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import layer  # noqa: E402


def encode_steps(stem: nn.Module, images: torch.Tensor, timesteps: int) -> list[torch.Tensor]:
    """The stem's output for each of the ``timesteps`` steps.

    Static images ``[B, C, H, W]`` are direct-encoded: the stem runs once and the same output is
    fed at every step. Event frames ``[B, T, C, H, W]`` (``T == timesteps``) feed frame t, through
    the stem, at step t.
    """
    if images.dim() != 5:
        return [stem(images)] * timesteps
    if images.shape[1] != timesteps:
        raise ValueError(
            f"event frames [B, T, C, H, W] have T = {images.shape[1]} but the network runs "
            f"{timesteps} timesteps; give it as many frames as timesteps"
        )
    return [stem(images[:, t]) for t in range(timesteps)]


def encode_sequence(stem: nn.Module, images: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``encode_steps`` as one ``[T, B, ...]`` tensor, for a multi-step network: a static
    image's stem output is computed once and repeated (a view, no copy); event frames go
    through the stem as ``T·B`` images (BatchNorm still per step, see ``run_steps``)."""
    if images.dim() != 5:
        encoded = stem(images)
        return encoded.unsqueeze(0).expand(timesteps, *encoded.shape)
    if images.shape[1] != timesteps:
        encode_steps(stem, images, timesteps)  # raises the per-step form's error
    return run_steps(stem, images.transpose(0, 1))


class SpikingNetwork(nn.Module):
    """A macro network for one architecture. ``forward`` runs all timesteps and returns the
    time-averaged class scores ``[B, classes]``; call ``functional.reset_net`` after each batch.

    ``step_mode`` says how the timesteps run (the outputs are the same, tested): ``"single"``
    one timestep at a time through the whole network; ``"multi"`` each layer over all timesteps
    at once (only without backward edges, see ``multistep.py``); ``"auto"`` (default) picks
    the faster as measured by ``benchmarks/step_modes.py``: multi-step for passes that take
    gradients (training: 7-26 % faster on the CPU) and on a GPU; on the CPU, a pass without
    gradients (scoring, evaluation) runs single-step (6-7 % faster at the quickstart's size).
    Weights and activations are kept channels-last (NHWC), which the CPU's convolutions run
    faster."""

    def __init__(
        self, arch: Architecture, macro: Macro, timesteps: int = 5, step_mode: str = "auto"
    ) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.macro = macro
        _, final = macro.feature_sizes(arch.num_cells)
        widths = [arch.width * 2**k for k in range(arch.num_cells)]
        self.stem = nn.Sequential(
            *conv_bn(macro.in_channels, widths[0], 3, stride=macro.stem_stride)
        )
        body: list[nn.Module] = [SpikingCell(arch.cells[0], widths[0])]
        for k in range(1, arch.num_cells):
            body += [
                nn.BatchNorm2d(widths[k - 1]),
                lif(),
                *conv_bn(widths[k - 1], widths[k], 3),
                nn.AvgPool2d(2),
                SpikingCell(arch.cells[k], widths[k]),
            ]
        self.body = nn.Sequential(*body)
        self.has_backward_edges = any(
            m.cell.has_backward_edges for m in body if isinstance(m, SpikingCell)
        )
        last = widths[-1]
        if macro.head == "snasnet":
            self.head = nn.Sequential(
                nn.BatchNorm2d(last),
                lif(),
                nn.AvgPool2d(macro.final_pool),
                nn.Flatten(),
                layer.Dropout(0.5),  # SpikingJelly's: one mask per sample for all T steps
                nn.Linear(last * final * final, macro.hidden, bias=False),
                lif(),
                nn.Linear(macro.hidden, macro.voters_per_class * macro.num_classes),
            )
            self.voters = macro.voters_per_class
        else:
            self.head = nn.Sequential(
                nn.BatchNorm2d(last),
                lif(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(last, macro.num_classes),
            )
            self.voters = 1
        self.reset_parameters()
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.step_mode = "auto"
        self.set_step_mode(step_mode)
        self._neurons_multi_step = False

    def set_step_mode(self, step_mode: str) -> None:
        """``"single"``, ``"multi"`` or ``"auto"`` (see the class)."""
        check_step_mode(step_mode)
        if step_mode == "multi" and self.has_backward_edges:
            raise ValueError("a network with backward edges runs one timestep at a time")
        self.step_mode = step_mode

    def runs_multi_step(self, device: torch.device, gradients: bool = True) -> bool:
        """Whether ``forward`` runs all timesteps of each layer at once on ``device``, in a
        pass that takes ``gradients`` or not."""
        if self.step_mode == "auto":
            faster = gradients or device.type != "cpu"
            return faster and not self.has_backward_edges
        return self.step_mode == "multi"

    def reset_parameters(self) -> None:
        """SNASNet's initialisation, drawn from the global random stream in module order."""
        for m in self.modules():
            init_module(m)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: static ``[B, C, H, W]`` or event frames ``[B, T, C, H, W]``."""
        multi_step = self.runs_multi_step(images.device, torch.is_grad_enabled())
        if multi_step != self._neurons_multi_step:
            set_multi_step(self, multi_step)
            self._neurons_multi_step = multi_step
        if images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        if multi_step:
            encoded = encode_sequence(self.stem, images, self.timesteps)
            out_seq = run_steps(self.head, run_steps(self.body, encoded))
            if self.voters > 1:
                out_seq = out_seq.view(*out_seq.shape[:2], -1, self.voters).mean(dim=3)
            return out_seq.mean(dim=0)
        total: torch.Tensor | None = None
        for encoded in encode_steps(self.stem, images, self.timesteps):
            out = self.head(self.body(encoded))
            if self.voters > 1:
                out = out.view(out.shape[0], -1, self.voters).mean(dim=2)
            total = out if total is None else total + out
        assert total is not None  # at least one timestep
        return total / self.timesteps


def init_module(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """SNASNet's initialisation of one module (Kaiming-uniform convs with a = 2, unit BN,
    N(0, 0.01) linears), drawn from ``generator`` (the global stream when None)."""
    # Drawn into a fresh (contiguous) tensor and copied: the values do not depend on the
    # weight's memory layout (channels-last).
    if isinstance(module, nn.Conv2d):
        with torch.no_grad():
            drawn = torch.empty(module.weight.shape, dtype=module.weight.dtype)
            module.weight.copy_(nn.init.kaiming_uniform_(drawn, a=2, generator=generator))
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.01, generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_network(
    arch: Architecture,
    macro: Macro,
    timesteps: int = 5,
    seed: int | None = None,
    step_mode: str = "auto",
) -> SpikingNetwork:
    """Build the network of ``arch``; with ``seed`` its initial weights depend on nothing else."""
    if seed is None:
        return SpikingNetwork(arch, macro, timesteps, step_mode)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SpikingNetwork(arch, macro, timesteps, step_mode)


def build_common_network(arch: Architecture, macro: Macro, timesteps: int, seed: int):
    """The network of ``arch`` with common random numbers: SNASNet's initialisation, each module
    drawn from a generator of its own, keyed by ``seed``, the module's name and its weight's
    shape. Networks built with one seed share the initial weights of every module they have in
    common (the same place, the same shape): the stem, the head, and any cell and edge op they
    agree on. Candidates compared this way differ only by what they do not share."""
    with torch.random.fork_rng(devices=[]):  # the construction's own draws are replaced
        network = SpikingNetwork(arch, macro, timesteps)
    for name, module in network.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            key = f"{seed}|{name}|{type(module).__name__}|{tuple(weight.shape)}"
            digest = hashlib.sha256(key.encode()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            init_module(module, generator)
    return network
