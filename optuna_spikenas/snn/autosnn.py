"""AutoSNN's networks (Na et al., ICML 2022): five searched blocks in a fixed macro network.

The space, the macro and the parameter count are data in ``autosnn_space.py``. Read this file
top to bottom: the blocks, then the two networks: ``AutoSNNNetwork`` (one architecture) and
``SuperNetwork`` (all 5^5 = 3,125 of them sharing weights), with ``path_state_dict`` /
``SuperNetwork.extract`` linking the two.

Layout of ``autosnn-16`` (C = width = 16), for an image of size S:
    stem     conv3x3(in -> C) + BN            (once per image, or per event frame) -> PLIF
    block1   B(C -> C)                        at S
    maxpool 2
    block2   B(C -> 2C),  block3 B(2C -> 2C)  at S/2
    maxpool 2
    block4   B(2C -> 4C), block5 B(4C -> 4C)  at S/4
    maxpool 2
    head     flatten (4C * (S/8)^2) -> linear(-> voters * classes, no bias) -> PLIF -> voting
The network runs T timesteps; its output is the firing rate of each class's voters, averaged over
the voters and the timesteps, in [0, 1]. No global pooling. Static images ``[B, C, H, W]`` are
direct-encoded (the same stem output at every step); event frames ``[B, T, C, H, W]`` feed frame t
at step t (``network.encode_steps``).

Each B is one of:
    skip    identity; where the channels change (block2, block4): conv1x1 + BN + PLIF
    SCB_kK  conv(K) + BN -> PLIF -> conv(K) + BN -> PLIF         (first conv maps in -> out)
    SRB_kK  conv(K) + BN -> PLIF -> conv(K) + BN (+ shortcut) -> PLIF, the shortcut being the
            block input, or conv1x1 + BN of it where the channels change (no neuron of its own)
This channel-change rule is AutoSNN's own; with it the paper's CIFAR10 architecture
``SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5`` has 417,626 parameters at C = 16 on 3x32x32 / 10 classes
(417,616 weights and BN affines + one learnable leak ``w`` per PLIF layer, which we count).

Neurons are SpikingJelly PLIF nodes (``AutoSNNPLIF``: tau0 = 2, threshold 1, hard reset to 0,
detached reset, ATan surrogate); call ``functional.reset_net`` after each batch. The networks run
either one timestep at a time through every layer (single-step), or each layer over all T
timesteps at once (multi-step, ``[T, B, ...]`` tensors, see ``multistep.py``): AutoSNN has no
backward edges, so both compute the same outputs and spikes (tested); ``step_mode`` picks. Its
``"auto"`` is measured for these networks: multi-step on a GPU only, since on the CPU AutoSNN's
blocks train 31 % slower multi-step (SNASNet's cells train faster multi-step: ``network.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from optuna_spikenas.autosnn_space import (
    BLOCKS,
    POOL_AFTER,
    AutoSNNArchitecture,
    AutoSNNMacro,
    check_block,
)
from optuna_spikenas.snn.cell import conv_bn
from optuna_spikenas.snn.lean_neuron import Charge, LeanForward
from optuna_spikenas.snn.multistep import check_step_mode, per_image, run_steps, set_multi_step
from optuna_spikenas.snn.network import encode_sequence, encode_steps

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import neuron, surrogate  # noqa: E402

__all__ = [
    "AutoSNNNetwork",
    "AutoSNNPLIF",
    "SkipBlock",
    "SpikingConvBlock",
    "SuperNetwork",
    "build_autosnn",
    "make_block",
    "path_name",
    "path_state_dict",
    "plif",
]

# --------------------------------------------------------------------------------------------
# Blocks

PLIF_INIT_TAU = 2.0

#: How a block applies one of its modules: ``module(x)`` for one timestep, ``run_steps`` for all.
Apply = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)  # type: ignore[no-any-return]


class AutoSNNPLIF(LeanForward, neuron.ParametricLIFNode):
    """SpikingJelly's ``ParametricLIFNode`` with AutoSNN's settings: learnable leak ``1 / tau =
    sigmoid(w)`` (tau0 = 2), decaying input, threshold 1, hard reset to 0 (detached), ATan.

    Where no gradient is taken on the CPU (evaluating paths, scoring) it runs ``LeanForward``'s
    path with SpikingJelly's CPU charge, ``h = v + (x - v) * sigmoid(w)`` (the same operations, in
    an order that rounds alike, the leak read once per call): spikes and potentials bit-for-bit
    SpikingJelly's (tested). With gradients, or on a GPU, SpikingJelly's implementation runs
    unchanged.
    """

    def __init__(self) -> None:
        super().__init__(
            init_tau=PLIF_INIT_TAU, detach_reset=True, surrogate_function=surrogate.ATan()
        )

    def _lean(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or self.w.requires_grad))
            and not self.store_v_seq
            and self._neuron_precision is None
        )

    def _charger(self) -> Charge:
        decay = self.w.detach().float().sigmoid()  # 1 / tau, a 0-dim tensor as in SpikingJelly

        def charge(x: torch.Tensor, v: torch.Tensor | float) -> torch.Tensor:
            return torch.sub(x, v).mul_(decay).add_(v)  # v + (x - v) * decay, rounded alike

        return charge


def plif() -> AutoSNNPLIF:
    """AutoSNN's neuron (see ``AutoSNNPLIF``)."""
    return AutoSNNPLIF()


class SkipBlock(nn.Module):
    """``skip``: the identity, or conv1x1 + BN + PLIF where the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(*conv_bn(in_channels, out_channels, 1), plif())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One timestep: ``x [B, C, H, W]``."""
        return x if self.project is None else self.project(x)

    def forward_steps(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All timesteps at once: ``x_seq [T, B, C, H, W]``."""
        return x_seq if self.project is None else run_steps(self.project, x_seq)


class SpikingConvBlock(nn.Module):
    """``SCB_kK`` (``residual=False``) and ``SRB_kK`` (``residual=True``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*conv_bn(in_channels, out_channels, kernel))
        self.neuron1 = plif()
        self.conv2 = nn.Sequential(*conv_bn(out_channels, out_channels, kernel))
        self.neuron2 = plif()
        self.residual = residual
        self.shortcut: nn.Module | None = None
        if residual and in_channels != out_channels:
            self.shortcut = nn.Sequential(*conv_bn(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One timestep: ``x [B, C, H, W]``."""
        return self._block(x, _call)

    def forward_steps(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All timesteps at once: ``x_seq [T, B, C, H, W]``."""
        return self._block(x_seq, run_steps)

    def _block(self, x: torch.Tensor, apply: Apply) -> torch.Tensor:
        out = apply(self.conv2, apply(self.neuron1, apply(self.conv1, x)))
        if self.residual:
            out = out + (x if self.shortcut is None else apply(self.shortcut, x))
        return apply(self.neuron2, out)


def make_block(name: str, in_channels: int, out_channels: int) -> nn.Module:
    name = check_block(name)
    if name == "skip":
        return SkipBlock(in_channels, out_channels)
    kind, kernel = name.split("_k")
    return SpikingConvBlock(in_channels, out_channels, int(kernel), residual=kind == "SRB")


# --------------------------------------------------------------------------------------------
# Networks


class _AutoSNNBase(nn.Module):
    """Stem, max-pools and voting head shared by the single network and the super-network.

    ``step_mode`` says how the timesteps run (the outputs are the same, tested):
    ``"single"`` one timestep at a time through the whole network; ``"multi"`` each layer over
    all timesteps at once; ``"auto"`` (default) multi-step on a GPU and single-step on the CPU,
    where these blocks measured slower multi-step (README, "Where a trial's time goes")."""

    def __init__(self, macro: AutoSNNMacro, step_mode: str = "auto") -> None:
        super().__init__()
        self.macro = macro
        self.timesteps = macro.timesteps
        self.stem = nn.Sequential(*conv_bn(macro.in_channels, macro.width, 3))
        self.stem_neuron = plif()
        self.pool = nn.MaxPool2d(2)
        outputs = macro.voters_per_class * macro.num_classes
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(macro.head_features(), outputs, False))
        self.head_neuron = plif()
        self.step_mode = "auto"
        self.set_step_mode(step_mode)
        self._neurons_multi_step = False  # the step mode the neurons are in now

    def set_step_mode(self, step_mode: str) -> None:
        """``"single"``, ``"multi"`` or ``"auto"`` (see the class)."""
        check_step_mode(step_mode)
        self.step_mode = step_mode

    def runs_multi_step(self, device: torch.device) -> bool:
        """Whether ``forward`` runs all timesteps of each layer at once on ``device``."""
        if self.step_mode == "auto":
            return device.type == "cuda"
        return self.step_mode == "multi"

    def _run(self, images: torch.Tensor, blocks: list[nn.Module]) -> torch.Tensor:
        multi_step = self.runs_multi_step(images.device)
        if multi_step != self._neurons_multi_step:
            set_multi_step(self, multi_step)
            self._neurons_multi_step = multi_step
        if multi_step:
            return self._run_steps(images, blocks)
        total: torch.Tensor | None = None
        for encoded in encode_steps(self.stem, images, self.timesteps):
            x = self.stem_neuron(encoded)
            for i, block in enumerate(blocks):
                x = block(x)
                if i in POOL_AFTER:
                    x = self.pool(x)
            spikes = self.head_neuron(self.head(x))
            rates = spikes.view(spikes.shape[0], -1, self.macro.voters_per_class).mean(2)
            total = rates if total is None else total + rates
        assert total is not None  # at least one timestep
        return total / self.timesteps

    def _run_steps(self, images: torch.Tensor, blocks: list[nn.Module]) -> torch.Tensor:
        """``_run`` layer by layer, each over all timesteps (``[T, B, ...]``)."""
        x_seq = self.stem_neuron(encode_sequence(self.stem, images, self.timesteps))
        for i, block in enumerate(blocks):
            x_seq = run_steps(block, x_seq)
            if i in POOL_AFTER:
                x_seq = per_image(self.pool, x_seq)
        spikes = self.head_neuron(run_steps(self.head, x_seq))
        rates = spikes.view(*spikes.shape[:2], -1, self.macro.voters_per_class).mean(3)
        return rates.sum(0) / self.timesteps


class AutoSNNNetwork(_AutoSNNBase):
    """One architecture: ``forward(images)`` returns firing rates ``[B, classes]`` for static
    images ``[B, C, H, W]`` or event frames ``[B, T, C, H, W]``."""

    def __init__(
        self, arch: AutoSNNArchitecture, macro: AutoSNNMacro, step_mode: str = "auto"
    ) -> None:
        super().__init__(macro, step_mode)
        self.arch = arch
        self.blocks = nn.ModuleList(
            make_block(name, cin, cout)
            for name, (cin, cout) in zip(arch.blocks, macro.channels(), strict=True)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images, list(self.blocks))


def build_autosnn(
    arch: AutoSNNArchitecture,
    macro: AutoSNNMacro,
    seed: int | None = None,
    step_mode: str = "auto",
) -> AutoSNNNetwork:
    """Build the network of ``arch``; with ``seed`` its initial weights depend on nothing else."""
    if seed is None:
        return AutoSNNNetwork(arch, macro, step_mode)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoSNNNetwork(arch, macro, step_mode)


class SuperNetwork(_AutoSNNBase):
    """All five blocks at every position (``choices[i][block]``), sharing stem and head;
    ``forward(images, arch)`` runs the path of ``arch`` only."""

    def __init__(self, macro: AutoSNNMacro, step_mode: str = "auto") -> None:
        super().__init__(macro, step_mode)
        self.choices = nn.ModuleList(
            nn.ModuleDict({name: make_block(name, cin, cout) for name in BLOCKS})
            for cin, cout in macro.channels()
        )

    def forward(self, images: torch.Tensor, arch: AutoSNNArchitecture) -> torch.Tensor:
        path: list[nn.Module] = [
            self.choices[i][name]  # type: ignore[index]  # a ModuleList of ModuleDicts
            for i, name in enumerate(arch.blocks)
        ]
        return self._run(images, path)

    def extract(self, arch: AutoSNNArchitecture) -> AutoSNNNetwork:
        """A standalone network of ``arch`` with copies of this path's weights and BN stats (and
        this network's step mode)."""
        network = AutoSNNNetwork(arch, self.macro, self.step_mode)
        network.load_state_dict(path_state_dict(self, arch))
        network.train(self.training)
        return network


def path_name(name: str, arch: AutoSNNArchitecture) -> str | None:
    """The name in an ``AutoSNNNetwork`` of ``arch`` of the super-network's parameter, buffer or
    module ``name`` (``choices.1.SRB_k5.conv1.0.weight`` -> ``blocks.1.conv1.0.weight``), or
    ``None`` if it belongs to a block off the path."""
    if name != "choices" and not name.startswith("choices."):
        return name
    parts = name.split(".")
    if len(parts) < 3:  # the containers themselves
        return None
    _, position, block, *rest = parts
    if arch.blocks[int(position)] != block:
        return None
    return ".".join(["blocks", position, *rest])


def path_state_dict(supernet: SuperNetwork, arch: AutoSNNArchitecture) -> dict:
    """The state dict that an ``AutoSNNNetwork`` of ``arch`` loads to compute exactly what the
    super-network computes along that path."""
    state = {}
    for key, value in supernet.state_dict().items():
        mapped = path_name(key, arch)
        if mapped is not None:
            state[mapped] = value.detach().clone()
    return state
