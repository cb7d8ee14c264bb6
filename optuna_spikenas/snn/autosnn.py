"""AutoSNN's search space (Na et al., ICML 2022): five searched blocks in a fixed macro network.

Read top to bottom: the space (``BLOCKS``, ``AutoSNNArchitecture``, ``suggest_autosnn``), the
macro (``AutoSNNMacro``, ``AUTOSNN_MACROS``), the blocks, the parameter count, then the two
networks: ``AutoSNNNetwork`` (one architecture) and ``SuperNetwork`` (all 5^5 = 3,125 of them
sharing weights), with ``path_state_dict`` / ``SuperNetwork.extract`` linking the two.

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

Neurons are SpikingJelly single-step PLIF nodes (tau0 = 2, threshold 1, hard reset to 0, detached
reset, ATan surrogate) called once per timestep; call ``functional.reset_net`` after each batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

import optuna
import torch
from torch import nn

from optuna_spikenas.snn.cell import conv_bn
from optuna_spikenas.snn.network import encode_steps
from optuna_spikenas.space import SpaceError

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import neuron, surrogate  # noqa: E402

__all__ = [
    "AUTOSNN_MACROS",
    "BLOCKS",
    "PAPER_CIFAR10_ARCH",
    "PARAM_NAMES",
    "POSITIONS",
    "AutoSNNArchitecture",
    "AutoSNNMacro",
    "AutoSNNNetwork",
    "SkipBlock",
    "SpikingConvBlock",
    "SuperNetwork",
    "autosnn_parameters",
    "block_parameters",
    "build_autosnn",
    "get_autosnn_macro",
    "make_block",
    "path_name",
    "path_state_dict",
    "plif",
    "suggest_autosnn",
]

# --------------------------------------------------------------------------------------------
# The space

BLOCKS: tuple[str, ...] = ("skip", "SCB_k3", "SCB_k5", "SRB_k3", "SRB_k5")
POSITIONS = 5
PARAM_NAMES: tuple[str, ...] = tuple(f"block{i}" for i in range(1, POSITIONS + 1))
PAPER_CIFAR10_ARCH = "SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5"  # found on CIFAR10 with lambda = -0.08

_BY_LOWER = {b.lower(): b for b in BLOCKS}


def _check_block(token: object, position: int | None = None) -> str:
    """The canonical spelling of block ``token`` (case-insensitive), or a ``SpaceError``."""
    block = _BY_LOWER.get(token.strip().lower()) if isinstance(token, str) else None
    if block is None:
        where = "" if position is None else f" at position {position}"
        raise SpaceError(f"unknown block {token!r}{where}; known blocks: {', '.join(BLOCKS)}")
    return block


@dataclass(frozen=True)
class AutoSNNArchitecture:
    """One block per searched position, e.g. ``SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5``."""

    blocks: tuple[str, ...]

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        if len(blocks) != POSITIONS:
            raise SpaceError(
                f"an AutoSNN architecture has {POSITIONS} blocks (one per position), "
                f"got {len(blocks)}"
            )
        canonical = tuple(_check_block(b, i) for i, b in enumerate(blocks, start=1))
        object.__setattr__(self, "blocks", canonical)

    @classmethod
    def parse(cls, text: str) -> AutoSNNArchitecture:
        """Parse blocks joined by commas (spaces allowed, block names case-insensitive)."""
        tokens = [t.strip() for t in str(text).split(",")]
        if len(tokens) != POSITIONS:
            raise SpaceError(
                f"an AutoSNN architecture has {POSITIONS} comma-separated blocks, got "
                f"{len(tokens)} in {text!r}; e.g. {PAPER_CIFAR10_ARCH!r}"
            )
        return cls(tuple(tokens))

    def __str__(self) -> str:
        return ",".join(self.blocks)

    def params(self) -> dict[str, str]:
        """The Optuna parameters that :func:`suggest_autosnn` turns into this architecture."""
        return dict(zip(PARAM_NAMES, self.blocks, strict=True))

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> AutoSNNArchitecture:
        missing = [name for name in PARAM_NAMES if name not in params]
        if missing:
            raise SpaceError(f"AutoSNN parameters lack {', '.join(missing)}")
        return cls(tuple(str(params[name]) for name in PARAM_NAMES))


def suggest_autosnn(trial: optuna.Trial) -> AutoSNNArchitecture:
    """Ask ``trial`` for one block per position (categorical ``block1`` .. ``block5``)."""
    return AutoSNNArchitecture(
        tuple(trial.suggest_categorical(name, BLOCKS) for name in PARAM_NAMES)
    )


# --------------------------------------------------------------------------------------------
# The macro

POOL_AFTER = (0, 2, 4)  # a 2x2 max-pool follows positions 1, 3 and 5


@dataclass(frozen=True)
class AutoSNNMacro:
    """AutoSNN's fixed network around the searched blocks. Defaults: ``AutoSNN_16`` on CIFAR10."""

    width: int = 16
    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    voters_per_class: int = 10
    timesteps: int = 8
    name: str = "autosnn-16"

    def __post_init__(self) -> None:
        for field in (
            "width",
            "in_channels",
            "image_size",
            "num_classes",
            "voters_per_class",
            "timesteps",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.image_size < 8:
            raise ValueError(
                f"{self.image_size}x{self.image_size} images are too small for macro "
                f"{self.name!r}: its three 2x2 max-pools need images of at least 8x8"
            )

    def for_data(self, in_channels: int, image_size: int, num_classes: int) -> AutoSNNMacro:
        return replace(
            self, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )

    def channels(self) -> list[tuple[int, int]]:
        """(in, out) channels of each searched position: C->C, C->2C, 2C->2C, 2C->4C, 4C->4C."""
        c = self.width
        return [(c, c), (c, 2 * c), (2 * c, 2 * c), (2 * c, 4 * c), (4 * c, 4 * c)]

    def sizes(self) -> tuple[list[int], int]:
        """Spatial size at each position, and after the last max-pool (the head's input)."""
        s = self.image_size
        return [s, s // 2, s // 2, s // 4, s // 4], s // 8

    def head_features(self) -> int:
        _, final = self.sizes()
        return 4 * self.width * final * final


# AutoSNN_16 is the searched macro; the paper also trains found architectures wider (up to 128).
AUTOSNN_MACROS: dict[str, AutoSNNMacro] = {
    f"autosnn-{c}": AutoSNNMacro(width=c, name=f"autosnn-{c}") for c in (16, 32, 64, 128)
}


def get_autosnn_macro(name: str) -> AutoSNNMacro:
    if name not in AUTOSNN_MACROS:
        raise ValueError(f"unknown AutoSNN macro {name!r}; known: {', '.join(AUTOSNN_MACROS)}")
    return AUTOSNN_MACROS[name]


# --------------------------------------------------------------------------------------------
# Blocks

PLIF_INIT_TAU = 2.0


def plif() -> neuron.ParametricLIFNode:
    """AutoSNN's neuron: learnable leak (tau0 = 2), threshold 1, detached hard reset, ATan."""
    return neuron.ParametricLIFNode(
        init_tau=PLIF_INIT_TAU, detach_reset=True, surrogate_function=surrogate.ATan()
    )


class SkipBlock(nn.Module):
    """``skip``: the identity, or conv1x1 + BN + PLIF where the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(*conv_bn(in_channels, out_channels, 1), plif())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.project is None else self.project(x)


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
        out = self.conv2(self.neuron1(self.conv1(x)))
        if self.residual:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.neuron2(out)


def make_block(name: str, in_channels: int, out_channels: int) -> nn.Module:
    name = _check_block(name)
    if name == "skip":
        return SkipBlock(in_channels, out_channels)
    kind, kernel = name.split("_k")
    return SpikingConvBlock(in_channels, out_channels, int(kernel), residual=kind == "SRB")


# --------------------------------------------------------------------------------------------
# Parameter count, from shapes only


def _conv_bn_params(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + 2 * cout  # bias-free conv + BN weight and bias


def block_parameters(name: str, cin: int, cout: int) -> int:
    """Parameters of one block, one per PLIF layer (its leak ``w``) included."""
    name = _check_block(name)
    if name == "skip":
        return 0 if cin == cout else _conv_bn_params(cin, cout, 1) + 1
    kind, kernel = name.split("_k")
    k = int(kernel)
    count = _conv_bn_params(cin, cout, k) + _conv_bn_params(cout, cout, k) + 2
    if kind == "SRB" and cin != cout:
        count += _conv_bn_params(cin, cout, 1)
    return count


def autosnn_parameters(arch: AutoSNNArchitecture, macro: AutoSNNMacro) -> int:
    """Trainable parameters of ``arch`` in ``macro``, PLIF leaks included (equals
    ``sum(p.numel() for p in build_autosnn(arch, macro).parameters())``)."""
    count = _conv_bn_params(macro.in_channels, macro.width, 3) + 1  # stem + its PLIF
    for name, (cin, cout) in zip(arch.blocks, macro.channels(), strict=True):
        count += block_parameters(name, cin, cout)
    return count + macro.head_features() * macro.voters_per_class * macro.num_classes + 1


# --------------------------------------------------------------------------------------------
# Networks


class _AutoSNNBase(nn.Module):
    """Stem, max-pools and voting head shared by the single network and the super-network."""

    def __init__(self, macro: AutoSNNMacro) -> None:
        super().__init__()
        self.macro = macro
        self.timesteps = macro.timesteps
        self.stem = nn.Sequential(*conv_bn(macro.in_channels, macro.width, 3))
        self.stem_neuron = plif()
        self.pool = nn.MaxPool2d(2)
        outputs = macro.voters_per_class * macro.num_classes
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(macro.head_features(), outputs, False))
        self.head_neuron = plif()

    def _run(self, images: torch.Tensor, blocks: list[nn.Module]) -> torch.Tensor:
        total: torch.Tensor | float = 0.0
        for encoded in encode_steps(self.stem, images, self.timesteps):
            x = self.stem_neuron(encoded)
            for i, block in enumerate(blocks):
                x = block(x)
                if i in POOL_AFTER:
                    x = self.pool(x)
            spikes = self.head_neuron(self.head(x))
            total = total + spikes.view(spikes.shape[0], -1, self.macro.voters_per_class).mean(2)
        return total / self.timesteps


class AutoSNNNetwork(_AutoSNNBase):
    """One architecture: ``forward(images)`` returns firing rates ``[B, classes]`` for static
    images ``[B, C, H, W]`` or event frames ``[B, T, C, H, W]``."""

    def __init__(self, arch: AutoSNNArchitecture, macro: AutoSNNMacro) -> None:
        super().__init__(macro)
        self.arch = arch
        self.blocks = nn.ModuleList(
            make_block(name, cin, cout)
            for name, (cin, cout) in zip(arch.blocks, macro.channels(), strict=True)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images, list(self.blocks))


def build_autosnn(
    arch: AutoSNNArchitecture, macro: AutoSNNMacro, seed: int | None = None
) -> AutoSNNNetwork:
    """Build the network of ``arch``; with ``seed`` its initial weights depend on nothing else."""
    if seed is None:
        return AutoSNNNetwork(arch, macro)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoSNNNetwork(arch, macro)


class SuperNetwork(_AutoSNNBase):
    """All five blocks at every position (``choices[i][block]``), sharing stem and head;
    ``forward(images, arch)`` runs the path of ``arch`` only."""

    def __init__(self, macro: AutoSNNMacro) -> None:
        super().__init__(macro)
        self.choices = nn.ModuleList(
            nn.ModuleDict({name: make_block(name, cin, cout) for name in BLOCKS})
            for cin, cout in macro.channels()
        )

    def forward(self, images: torch.Tensor, arch: AutoSNNArchitecture) -> torch.Tensor:
        path = [self.choices[i][name] for i, name in enumerate(arch.blocks)]
        return self._run(images, path)

    def extract(self, arch: AutoSNNArchitecture) -> AutoSNNNetwork:
        """A standalone network of ``arch`` with copies of this path's weights and BN stats."""
        network = AutoSNNNetwork(arch, self.macro)
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
