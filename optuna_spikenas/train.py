"""Short supervised training of one architecture (SNASNet's recipe, scaled down).

Read top to bottom: ``TrainSettings`` says how long and how fast to train, ``cosine_lr`` is the
learning-rate schedule, ``evaluate`` measures accuracy on a split, ``train_epoch`` runs one epoch
(the building block of ``train_network`` and of the resumable ``final_training``),
``train_network`` trains a built network and ``train_architecture`` builds one first;
``training_state`` / ``restore_training_state`` capture and restore everything a run needs to
continue bit-exactly (weights, optimizer, generators, the global RNG).

The recipe (Kim et al. 2022, SNASNet): cross-entropy on the network's output (which already
averages over timesteps and voting groups), ``functional.reset_net`` after every batch, SGD with
momentum 0.9, and a cosine learning rate from ``lr`` down to ``min_lr`` over all steps of the run
(here updated every step, not every epoch). ``loss = "mse-rates"`` is AutoSNN's loss instead: the
mean squared error between the output firing rates and one-hot labels (as ``supernet.py``).

Determinism: the shuffling uses its own ``torch.Generator`` seeded with ``seed``, and the global
RNG (used by the ``snasnet`` head's dropout) is seeded with ``seed`` inside
``torch.random.fork_rng``, so the caller's RNG state is untouched and, on the CPU, the same seed
always gives the same weights and accuracies.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from optuna_spikenas.config import OPTIMIZERS, TrainConfig
from optuna_spikenas.data import Dataset, Split
from optuna_spikenas.macros import Macro
from optuna_spikenas.quantize import quantize_weights
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import functional  # noqa: E402

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "Augment",
    "EpochCallback",
    "BatchBar",
    "TrainResult",
    "TrainSettings",
    "batch_loss",
    "build_trainable",
    "cosine_lr",
    "epoch_batches",
    "evaluate",
    "make_optimizer",
    "restore_training_state",
    "seeded_rng",
    "train_architecture",
    "train_epoch",
    "train_network",
    "training_state",
]

LOSSES: tuple[str, ...] = ("cross-entropy", "mse-rates")  # SNASNet's; AutoSNN's

#: ``on_epoch(epoch_index, val_accuracy, train_loss)``, called after every epoch; whatever it
#: raises (e.g. ``optuna.TrialPruned``) stops training and propagates to the caller.
EpochCallback = Callable[[int, float, float], None]

#: ``augment(images)``: a training batch's images (on the CPU), transformed; same shape.
Augment = Callable[[torch.Tensor], torch.Tensor]

#: ``progress(batch_indices)``: wraps the batch loop of an epoch (e.g. a ``tqdm`` bar).
BatchBar = Callable[[range], Iterable[int]]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainSettings:
    """How to train. Defaults: SNASNet's SGD recipe, for two epochs."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.1  # SNASNet: SGD lr 0.1, momentum 0.9, cosine annealing to 0.001 over the run
    momentum: float = 0.9  # SGD only
    min_lr: float = 0.001
    weight_decay: float = 0.0
    optimizer: str = "sgd"  # "sgd" | "adam" (adam: lr as given, same cosine schedule, no momentum)
    max_train_batches: int | None = None  # cap per epoch, for quick runs
    timesteps: int = 5
    weight_bits: int = 32  # < 32: k-bit weights (quantize.py) in training and evaluation
    loss: str = "cross-entropy"  # or "mse-rates": AutoSNN's MSE between firing rates and one-hot

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "timesteps"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        cap = self.max_train_batches
        if cap is not None and (not _is_int(cap) or cap < 1):
            raise ValueError(f"max_train_batches must be None or a positive integer, got {cap!r}")
        if not _is_int(self.weight_bits) or self.weight_bits < 1:
            raise ValueError(f"weight_bits must be a positive integer, got {self.weight_bits!r}")
        if self.optimizer not in OPTIMIZERS:
            known = ", ".join(repr(o) for o in OPTIMIZERS)
            raise ValueError(f"optimizer must be one of {known}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            known = ", ".join(repr(name) for name in LOSSES)
            raise ValueError(f"loss must be one of {known}, got {self.loss!r}")
        if not _is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not _is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be between 0 and lr ({self.lr}), got {self.min_lr!r}")
        if not _is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not _is_real(self.weight_decay) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay!r}")


def recipe_of(
    train: TrainConfig, *, epochs: int, timesteps: int, weight_bits: int
) -> TrainSettings:
    """The ``[train]`` recipe of a config as training settings (SNASNet's cells): the one
    conversion the objective's training and ``optuna-spikenas train`` share."""
    return TrainSettings(
        epochs=epochs,
        batch_size=train.batch_size,
        lr=train.lr,
        min_lr=train.min_lr,
        momentum=train.momentum,
        weight_decay=train.weight_decay,
        optimizer=train.optimizer,
        max_train_batches=train.max_train_batches,
        timesteps=timesteps,
        weight_bits=weight_bits,
    )


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainResult:
    """What a run measured, one entry per epoch."""

    val_accuracy: list[float]  # on dataset.val, after each epoch, in [0, 1]
    train_loss: list[float]  # mean loss (settings.loss) per training example, per epoch
    seconds: float  # wall-clock time of the whole run, evaluation included

    @property
    def final_val_accuracy(self) -> float:
        return self.val_accuracy[-1]


def cosine_lr(step: int, total_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``: ``lr`` at step 0, falling along
    half a cosine to ``min_lr`` at ``step == total_steps`` (one past the last step taken)."""
    if not _is_int(total_steps) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not _is_int(step) or not 0 <= step <= total_steps:
        raise ValueError(f"step must be an integer in [0, {total_steps}], got {step!r}")
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * step / total_steps))


def evaluate(
    network: nn.Module, split: Split, batch_size: int, device: str | torch.device = "cpu"
) -> float:
    """Accuracy (in [0, 1]) of ``network`` on ``split``: eval mode, no gradients, neuron states
    reset before the first batch and after every batch. The network's train/eval mode is
    restored afterwards; it must already be on ``device``."""
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(split) == 0:
        raise ValueError("cannot evaluate on an empty split")
    device = torch.device(device)
    was_training = network.training
    network.eval()
    correct = 0
    try:
        functional.reset_net(network)
        with torch.no_grad(), parametrize.cached():
            for start in range(0, len(split), batch_size):
                images = split.images[start : start + batch_size].to(device)
                labels = split.labels[start : start + batch_size].to(device)
                try:
                    correct += int((network(images).argmax(dim=1) == labels).sum())
                finally:
                    functional.reset_net(network)
    finally:
        network.train(was_training)
    return correct / len(split)


def epoch_batches(n: int, batch_size: int, cap: int | None) -> int:
    """Training batches per epoch; a final batch of one image is dropped (BatchNorm needs two)."""
    full, rest = divmod(n, batch_size)
    batches = full + (1 if rest > 1 else 0)
    return batches if cap is None else min(batches, cap)


def batch_loss(outputs: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The mean loss of a batch: ``"cross-entropy"`` on the outputs as logits, or
    ``"mse-rates"``, the squared error between the outputs (firing rates) and one-hot labels."""
    if kind == "cross-entropy":
        return F.cross_entropy(outputs, labels)
    if kind == "mse-rates":
        return F.mse_loss(outputs, F.one_hot(labels, outputs.shape[1]).to(outputs.dtype))
    raise ValueError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")


def make_optimizer(network: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """SGD with momentum or Adam over every parameter of ``network``, at ``settings.lr``."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            network.parameters(),
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.Adam(
        network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )


@contextmanager
def seeded_rng(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Inside the block the global RNG (dropout's: the CPU generator, and ``device``'s when it is
    a GPU) starts from ``seed``; the caller's RNG state is restored afterwards."""
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if on_cuda else [], device_type="cuda"):
        # Not torch.manual_seed: it would also reseed CUDA devices not forked.
        torch.random.default_generator.manual_seed(seed)
        if on_cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def train_epoch(
    network: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    *,
    order: torch.Tensor,
    first_step: int,
    total_steps: int,
    device: str | torch.device = "cpu",
    augment: Augment | None = None,
    progress: BatchBar | None = None,
) -> float:
    """One epoch of training in place on ``split`` in the order ``order`` (a permutation of its
    indices), steps ``first_step`` onwards of a cosine schedule over ``total_steps``; returns
    the mean loss per example. ``augment`` transforms each batch's images before the network
    sees them. Neuron states are reset after every batch."""
    device = torch.device(device)
    batches = epoch_batches(len(split), settings.batch_size, settings.max_train_batches)
    network.train()
    loss_sum, seen = torch.zeros((), device=device), 0  # summed on device: no syncs
    for b in range(batches) if progress is None else progress(range(batches)):
        idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
        images = split.images[idx]
        if augment is not None:
            images = augment(images)
        images, labels = images.to(device), split.labels[idx].to(device)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(first_step + b, total_steps, settings.lr, settings.min_lr)
        try:
            with parametrize.cached():  # quantize each weight once per step, not per call
                loss = batch_loss(network(images), labels, settings.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        finally:
            functional.reset_net(network)
        loss_sum += loss.detach() * len(idx)
        seen += len(idx)
    return float(loss_sum) / seen


def train_network(
    network: nn.Module,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``network`` in place on ``dataset.train``, evaluating on ``dataset.val`` after each
    epoch, and call ``on_epoch(epoch, val_accuracy, train_loss)`` then (its exceptions
    propagate). ``network.timesteps`` is the network's own; ``settings.timesteps`` is only used
    by :func:`train_architecture`. The network is moved to ``device`` and left in eval mode."""
    device = torch.device(device)
    train = dataset.train
    batches = epoch_batches(len(train), settings.batch_size, settings.max_train_batches)
    if batches == 0:
        raise ValueError(f"the train split of {dataset.name!r} has too few images to train on")
    network.to(device)
    optimizer = make_optimizer(network, settings)
    shuffle = torch.Generator().manual_seed(seed)
    val_accuracy: list[float] = []
    train_loss: list[float] = []
    started = time.perf_counter()
    with seeded_rng(seed, device):
        for epoch in range(settings.epochs):
            order = torch.randperm(len(train), generator=shuffle)
            loss = train_epoch(
                network,
                train,
                optimizer,
                settings,
                order=order,
                first_step=epoch * batches,
                total_steps=settings.epochs * batches,
                device=device,
            )
            val_accuracy.append(evaluate(network, dataset.val, settings.batch_size, device))
            train_loss.append(loss)
            if on_epoch is not None:
                on_epoch(epoch, val_accuracy[-1], train_loss[-1])
    network.eval()
    return TrainResult(val_accuracy, train_loss, time.perf_counter() - started)


def training_state(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: Mapping[str, torch.Generator],
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Everything a run needs to continue bit-exactly from here, as tensors and plain types (so
    ``torch.load(..., weights_only=True)`` reads it back): weights and buffers, optimizer state,
    the named generators' states and the global RNG's (dropout; also the GPU's on a GPU)."""
    device = torch.device(device)
    return {
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generators": {name: generator.get_state() for name, generator in generators.items()},
        "torch_rng": torch.random.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def restore_training_state(
    state: Mapping[str, Any],
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: Mapping[str, torch.Generator],
    device: str | torch.device = "cpu",
) -> None:
    """Put back a :func:`training_state` (inside :func:`seeded_rng`, so that the caller's global
    RNG is restored afterwards). Raises ValueError when it does not fit these objects."""
    device = torch.device(device)
    try:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name, generator in generators.items():
            generator.set_state(state["generators"][name])
        torch.random.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        message = " ".join(str(err).split())[:200]
        raise ValueError(f"the training state does not fit ({message})") from None


def build_trainable(
    arch: Architecture, macro: Macro, dataset: Dataset, settings: TrainSettings, *, seed: int
) -> nn.Module:
    """The network :func:`train_architecture` trains: ``arch`` in ``macro`` (initial weights from
    ``seed``), ``settings.timesteps`` steps, ``settings.weight_bits``-bit weights. ``macro`` must
    already be fitted to the dataset (``macro.for_data(...)``)."""
    shape = (macro.in_channels, macro.image_size, macro.num_classes)
    wanted = (dataset.in_channels, dataset.image_size, dataset.num_classes)
    if shape != wanted:
        raise ValueError(
            f"macro {macro.name!r} is set for {shape[0]}x{shape[1]}x{shape[1]} images in "
            f"{shape[2]} classes but dataset {dataset.name!r} has {wanted[0]}x{wanted[1]}x"
            f"{wanted[1]} images in {wanted[2]}; use macro.for_data{wanted}"
        )
    network = build_network(arch, macro, settings.timesteps, seed=seed)
    return quantize_weights(network, settings.weight_bits)


def train_architecture(
    arch: Architecture,
    macro: Macro,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """:func:`build_trainable`, then :func:`train_network` with the same ``seed``."""
    network = build_trainable(arch, macro, dataset, settings, seed=seed)
    return train_network(network, dataset, settings, seed=seed, device=device, on_epoch=on_epoch)
