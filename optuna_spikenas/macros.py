"""Macros as data: how a network is put together around its searched cells, without torch.

SNASNet's three macros (CIFAR10, CIFAR100, TinyImageNet) and ``light``; ``snn/network.py``
builds them. The budgets' analytic models (``hardware/memory.py``, ``hardware/imc.py``) and the
config read them from here, so that checking a config never imports torch.

Layout, for cells 1..N with widths C, 2C, 4C, ...:
    stem conv3x3(in -> C, stride s) + BN          (no neuron; once, or once per event frame)
    cell 1 (C)
    [BN -> LIF -> conv3x3(C_k -> 2 C_k) -> BN -> avgpool 2  -> cell k+1 (2 C_k)]  for k < N
    head:
      "snasnet": BN -> LIF -> avgpool p -> dropout 0.5 -> linear(-> hidden, no bias) -> LIF
                 -> linear(hidden -> voters * classes) -> voting (mean over groups of voters)
      "gap":     BN -> LIF -> global average pool -> linear(-> classes)
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Macro:
    """How a network is put together around its cells. Defaults describe the dataset the macro
    was made for (used by ``describe``); a study's dataset overrides them."""

    name: str
    head: str  # one of HEADS
    width: int
    num_cells: int
    stem_stride: int = 1
    final_pool: int = 2
    hidden: int = 1024
    voters_per_class: int = 10
    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10

    def for_data(self, in_channels: int, image_size: int, num_classes: int) -> Macro:
        return replace(
            self, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )

    def feature_sizes(self, num_cells: int) -> tuple[list[int], int]:
        """Spatial size at each cell, and after the head's pooling (``snasnet`` head only)."""
        size = (self.image_size - 1) // self.stem_stride + 1  # conv3x3, padding 1
        sizes = [size]
        for _ in range(num_cells - 1):
            size //= 2
            sizes.append(size)
        final = size // self.final_pool if self.head == "snasnet" else 1
        if min(sizes) < 1 or final < 1:
            raise ValueError(
                f"{self.image_size}x{self.image_size} images are too small for {num_cells} cells "
                f"in macro {self.name!r}: each extra cell halves the image"
            )
        return sizes, final


HEADS = ("snasnet", "gap")

MACROS: dict[str, Macro] = {
    # SNASNet (Kim et al. 2022). CIFAR10 uses 10 voters per class, CIFAR100 5 (500 outputs);
    # the released CIFAR10 model was trained with final_pool 4.
    "snasnet-cifar10": Macro("snasnet-cifar10", "snasnet", width=256, num_cells=2),
    "snasnet-cifar100": Macro(
        "snasnet-cifar100", "snasnet", width=128, num_cells=2, voters_per_class=5, num_classes=100
    ),
    # TinyImageNet: stride-2 stem, a 4096-unit hidden layer, 1,000 outputs voted in groups of 5.
    "snasnet-tinyimagenet": Macro(
        "snasnet-tinyimagenet",
        "snasnet",
        width=128,
        num_cells=2,
        stem_stride=2,
        hidden=4096,
        voters_per_class=5,
        image_size=64,
        num_classes=200,
    ),
    # Small enough for budgets of about a million parameters: narrow cells, pooled head.
    "light": Macro("light", "gap", width=16, num_cells=2, in_channels=1, image_size=28),
}


def get_macro(name: str) -> Macro:
    if name not in MACROS:
        raise ValueError(f"unknown macro {name!r}; known: {', '.join(MACROS)}")
    return MACROS[name]
