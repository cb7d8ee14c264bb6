"""AutoSNN's search space (Na et al., ICML 2022) as data, without torch: five block positions,
the macro around them, and the parameter count of an architecture from shapes alone.

``snn/autosnn.py`` builds the networks (one architecture, and the weight-sharing super-network)
and draws the macro's layout; configs, budgets and samplers need only this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import optuna

from optuna_spikenas.space import SpaceError

# --------------------------------------------------------------------------------------------
# The space

BLOCKS: tuple[str, ...] = ("skip", "SCB_k3", "SCB_k5", "SRB_k3", "SRB_k5")
POSITIONS = 5
PARAM_NAMES: tuple[str, ...] = tuple(f"block{i}" for i in range(1, POSITIONS + 1))
PAPER_CIFAR10_ARCH = "SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5"  # found on CIFAR10 with lambda = -0.08

_BY_LOWER = {b.lower(): b for b in BLOCKS}


def check_block(token: object, position: int | None = None) -> str:
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
        canonical = tuple(check_block(b, i) for i, b in enumerate(blocks, start=1))
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
# Parameter count, from shapes only


def _conv_bn_params(cin: int, cout: int, kernel: int) -> int:
    return cin * cout * kernel * kernel + 2 * cout  # bias-free conv + BN weight and bias


def block_parameters(name: str, cin: int, cout: int) -> int:
    """Parameters of one block, one per PLIF layer (its leak ``w``) included."""
    name = check_block(name)
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
