"""AutoSNN's one-shot super-network: train it once, then score any path with the shared weights.

Read top to bottom: ``SuperNetSettings`` says how to train, ``split_for_search`` carves the
search's own train / held-out parts out of the dataset's train split, ``train_supernet`` trains
(one uniformly sampled path per step), ``load_or_train_supernet`` caches the result on disk,
``evaluate_path`` measures one architecture's accuracy and spikes on the held-out part, and
``fitness`` / ``reference_spikes`` turn those into AutoSNN's spike-aware score.

The recipe (Na et al. 2022): Adam (lr 1e-3), batch 96, loss MSE between the output firing rates
and one-hot labels, ``functional.reset_net`` after every batch, training images randomly cropped
and flipped where the dataset is trained with augmentation (CIFAR, TinyImageNet: its
``augmentation``); the paper trains 600 epochs, our CPU default is far shorter (``epochs``).
BatchNorm running statistics are shared by all paths, as every other weight, and paths are
evaluated in eval mode on the whole held-out part by default, unaugmented.

Spikes, as AutoSNN counts them for its fitness: every neuron's output and every max-pooled spike
map (its ``SpikingMaxPool2d`` counts the pooled map), all timesteps, per image
(``PathResult.spikes_per_image``); ``neuron_spikes_per_image`` counts the neurons only.

Determinism: the initial weights come from ``torch.manual_seed(seed)`` inside
``torch.random.fork_rng`` (the caller's RNG is untouched); shuffling and path sampling use their
own ``torch.Generator`` seeded with ``seed``, augmentation another seeded with ``seed + 1``. On
the CPU the same settings give the same weights.

Checkpoints: ``<dir>/supernet-<dataset>-<key>.pt``, where ``key`` hashes every setting that
changes the trained weights (all but ``eval_images``), the dataset's name and augmentation and a
sha256 of its training images and labels. The file is ``torch.save({"state_dict": ...,
"meta": json})``, written to a temporary file and renamed into place, and read back with
``weights_only=True``. A file that cannot be read or does not match raises
``SuperNetCheckpointError``, whose message says to delete it (the search then retrains): an
expensive checkpoint is never overwritten silently.

Resuming: while it trains, the super-network keeps ``<dir>/supernet-<dataset>-<key>.epoch.pt``,
rewritten atomically after every epoch with everything the next epoch needs (weights, Adam's
state, the shuffle/path and augmentation generators, torch's RNG: ``train.training_state``, as
final training keeps its own). A run with the same settings and data continues after the last
finished epoch and ends with exactly the weights of an uninterrupted run (on the CPU); the file
is removed once the trained super-network is saved. Ctrl-C or SIGTERM during training re-raises
the same kind of stop carrying one line that says what was kept (:func:`interrupted_after`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from optuna_spikenas.autosnn_space import (
    AUTOSNN_MACROS,
    BLOCKS,
    POSITIONS,
    AutoSNNArchitecture,
    AutoSNNMacro,
)
from optuna_spikenas.checkpoint import load_checkpoint, save_checkpoint, tensors_sha256
from optuna_spikenas.data import Dataset, Split, augment_batch
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.paths import unwritable_folder
from optuna_spikenas.snn.autosnn import SuperNetwork, path_name
from optuna_spikenas.spikes import Activity, ActivityCounter
from optuna_spikenas.train import restore_training_state, seeded_rng, training_state

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import functional  # noqa: E402

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_LAMBDA",
    "PathResult",
    "Log",
    "SuperNetCheckpointError",
    "SuperNetSettings",
    "checkpoint_path",
    "epochs_path",
    "evaluate_path",
    "fitness",
    "load_or_train_supernet",
    "reference_spikes",
    "sample_path",
    "split_for_search",
    "supernet_macro",
    "train_supernet",
]

CHECKPOINT_FORMAT = 1
_EPOCHS_KEYS = {"format", "meta", "epoch", "state"}
DEFAULT_LAMBDA = -0.08  # AutoSNN's spike exponent on CIFAR10

#: ``progress(line)``: one human-readable line (per epoch, or about the checkpoint).
Log = Callable[[str], None]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SuperNetSettings:
    """How to train and evaluate the super-network. Defaults: AutoSNN's recipe (T, batch, Adam
    lr, 80/20 split) at a CPU-sized width and length: on Animal-MNIST, one epoch at width 8 takes
    about 30 s on one CPU thread (benchmarks/autosnn_search.py), and after 3 epochs the best
    paths reach about 42 % held-out accuracy (chance 10 %). Width 16 (the paper's C) costs about
    3.5x more per epoch."""

    width: int = 8  # C: the stem's and first block's channels (the paper: 16)
    timesteps: int = 8
    epochs: int = 3  # the paper trains 600
    batch_size: int = 96
    lr: float = 1e-3  # Adam
    seed: int = 0
    train_fraction: float = 0.8  # of each class of dataset.train; the rest is held out
    max_train_batches: int | None = None  # cap per epoch, for quick runs
    # Held-out images per path evaluation; None: all of them, as AutoSNN (not part of the
    # checkpoint key).
    eval_images: int | None = None

    def __post_init__(self) -> None:
        for name in ("width", "timesteps", "epochs"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        cap = self.eval_images
        if cap is not None and (not _is_int(cap) or cap < 1):
            raise ValueError(f"eval_images must be None or a positive integer, got {cap!r}")
        if not _is_int(self.batch_size) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2, got {self.batch_size!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not _is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not _is_real(self.train_fraction) or not 0 < self.train_fraction < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction!r}")
        cap = self.max_train_batches
        if cap is not None and (not _is_int(cap) or cap < 1):
            raise ValueError(f"max_train_batches must be None or a positive integer, got {cap!r}")

    def training_key(self) -> dict[str, object]:
        """The settings that change the trained weights."""
        settings = asdict(self)
        del settings["eval_images"]
        return settings


class SuperNetCheckpointError(SpikeNASError):
    """A super-network checkpoint that cannot be used; the one-line message names the file."""


@dataclass(frozen=True)
class PathResult:
    """One path of the super-network on the held-out images."""

    accuracy: float  # in [0, 1]
    spikes_per_image: float  # AutoSNN's: neuron outputs and max-pooled spike maps, all timesteps
    activity: Activity

    @property
    def neuron_spikes_per_image(self) -> float:
        """Spikes of the neuron layers only (no max-pooled maps), all timesteps."""
        return self.activity.neuron_spikes


# --------------------------------------------------------------------------------------------
# Data and network


def split_for_search(dataset: Dataset, settings: SuperNetSettings) -> tuple[Split, Split]:
    """The search's train part and held-out part of ``dataset.train``: within each class, the
    first ``train_fraction`` of its images (in split order) and the rest. Per class, because our
    splits keep the source order, which is sorted by class for Animal-MNIST: a plain first 80 % /
    last 20 % would hold out only the last two classes. The held-out part is shuffled with
    ``settings.seed``; ``dataset.val`` and ``dataset.test`` are not used."""
    labels = dataset.train.labels
    train_idx, held_idx = [], []
    for cls in torch.unique(labels):
        members = torch.nonzero(labels == cls).flatten()
        k = int(round(len(members) * settings.train_fraction))
        train_idx.append(members[:k])
        held_idx.append(members[k:])
    held = torch.cat(held_idx)
    # Seeded order, so that the first ``eval_images`` held-out images are a random sample.
    held = held[torch.randperm(len(held), generator=torch.Generator().manual_seed(settings.seed))]
    parts = []
    for idx in (torch.sort(torch.cat(train_idx)).values, held):
        parts.append(Split(dataset.train.images[idx], dataset.train.labels[idx]))
    if len(parts[0]) < 2 or len(parts[1]) == 0:
        raise ValueError(
            f"the train split of {dataset.name!r} ({len(labels)} images) is too small to keep "
            f"{settings.train_fraction:.0%} for training and hold out the rest"
        )
    return parts[0], parts[1]


def supernet_macro(dataset: Dataset, settings: SuperNetSettings) -> AutoSNNMacro:
    """AutoSNN's macro at ``settings.width`` and ``settings.timesteps``, fitted to the data."""
    macro = replace(
        AUTOSNN_MACROS["autosnn-16"],
        width=settings.width,
        timesteps=settings.timesteps,
        name=f"autosnn-{settings.width}",
    )
    return macro.for_data(dataset.in_channels, dataset.image_size, dataset.num_classes)


def sample_path(generator: torch.Generator) -> AutoSNNArchitecture:
    """A uniformly random architecture (each position uniform over ``BLOCKS``)."""
    picks = torch.randint(len(BLOCKS), (POSITIONS,), generator=generator).tolist()
    return AutoSNNArchitecture(tuple(BLOCKS[i] for i in picks))


# --------------------------------------------------------------------------------------------
# Training


def train_supernet(
    dataset: Dataset,
    settings: SuperNetSettings,
    progress: Log | None = None,
    epochs_file: Path | None = None,
) -> SuperNetwork:
    """Train a super-network on the search's train part (:func:`split_for_search`), one
    uniformly sampled path per step, and call ``progress`` with one line per epoch. The
    network is returned in eval mode. With ``epochs_file`` (:func:`epochs_path`), training
    continues after the epochs saved there and saves every epoch it finishes there; a stop
    (Ctrl-C, SIGTERM) is re-raised saying what was kept (:func:`interrupted_after`)."""
    train, _ = split_for_search(dataset, settings)
    macro = supernet_macro(dataset, settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        supernet = SuperNetwork(macro)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=settings.lr)
    generators = {
        "shuffle": torch.Generator().manual_seed(settings.seed),  # and the sampled paths
        "augment": torch.Generator().manual_seed(settings.seed + 1),
    }
    done = 0  # finished epochs, saved in epochs_file when there is one
    with seeded_rng(settings.seed):  # the caller's RNG is left alone, a resumed one restored
        try:
            if epochs_file is not None and epochs_file.exists():
                done = _resume(epochs_file, dataset, settings, supernet, optimizer, generators)
                if progress is not None:
                    progress(
                        f"resuming super-network training after epoch {done} of "
                        f"{settings.epochs} from {epochs_file}"
                    )
            for epoch in range(done, settings.epochs):
                started = time.perf_counter()
                bar = functools.partial(
                    tqdm,  # a bar within the epoch: a CPU epoch takes minutes
                    desc=f"supernet epoch {epoch + 1}/{settings.epochs}",
                    leave=False,
                    disable=progress is None,
                    file=sys.stderr,
                )
                loss = _train_epoch(supernet, train, dataset, optimizer, generators, settings, bar)
                if epochs_file is not None:  # before the line: a stop after it loses nothing
                    state = training_state(supernet, optimizer, generators)
                    payload = {"format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "state": state}
                    save_checkpoint(epochs_file, {**payload, "meta": _meta(dataset, settings)})
                done = epoch + 1
                if progress is not None:
                    progress(
                        f"supernet epoch {epoch + 1}/{settings.epochs}: loss {loss:.4f}, "
                        f"{time.perf_counter() - started:.1f} s"
                    )
        except KeyboardInterrupt as stop:
            kept = interrupted_after(done, settings.epochs, epochs_file)
            raise type(stop)(kept).with_traceback(stop.__traceback__) from None
    supernet.eval()
    return supernet


def _train_epoch(
    supernet: SuperNetwork,
    train: Split,
    dataset: Dataset,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    settings: SuperNetSettings,
    bar: Callable[[range], Iterable[int]],
) -> float:
    """One epoch in a shuffled order, one uniformly sampled path per batch; the mean loss."""
    rng, augment_rng = generators["shuffle"], generators["augment"]
    full, rest = divmod(len(train), settings.batch_size)
    batches = full + (1 if rest > 1 else 0)  # a last batch of one image is dropped (BatchNorm)
    if settings.max_train_batches is not None:
        batches = min(batches, settings.max_train_batches)
    supernet.train()
    order = torch.randperm(len(train), generator=rng)
    loss_sum, seen = 0.0, 0
    for b in bar(range(batches)):
        idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
        target = F.one_hot(train.labels[idx], supernet.macro.num_classes).float()
        arch = sample_path(rng)
        images = augment_batch(train.images[idx], dataset.augmentation, augment_rng)
        try:
            loss = F.mse_loss(supernet(images, arch), target)
            optimizer.zero_grad(set_to_none=True)  # blocks off the path keep grad None
            loss.backward()
            optimizer.step()
        finally:
            functional.reset_net(supernet)
        loss_sum += float(loss.detach()) * len(idx)
        seen += len(idx)
    return loss_sum / seen


def interrupted_after(done: int, epochs: int, epochs_file: Path | None) -> str:
    """What a stop during super-network training kept, in one line."""
    if done and epochs_file is not None:
        return (
            f"super-network training stopped after epoch {done} of {epochs}: kept in "
            f"{epochs_file}; the next run with the same settings resumes there"
        )
    if epochs_file is not None and epochs_file.exists():  # stopped while reading it
        return (
            f"super-network training stopped before it resumed: {epochs_file} is kept; the "
            "next run with the same settings resumes there"
        )
    return (
        f"super-network training stopped in epoch {done + 1} of {epochs}: no epoch finished, "
        "nothing kept"
    )


def _resume(
    path: Path,
    dataset: Dataset,
    settings: SuperNetSettings,
    supernet: SuperNetwork,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> int:
    """Load the epochs saved at ``path`` into the run (inside ``seeded_rng``); their count."""

    def fail(reason: str) -> SuperNetCheckpointError:
        reason = " ".join(reason.split())[:200]
        return SuperNetCheckpointError(
            f"super-network epoch checkpoint {path} is unusable: it {reason}; delete it to "
            "start the training over"
        )

    payload = load_checkpoint(path, _EPOCHS_KEYS, fail, "super-network epoch")
    if payload["meta"] != _meta(dataset, settings):
        raise fail("was saved for other settings or data")
    epoch = payload["epoch"]
    if not _is_int(epoch) or not 1 <= epoch <= settings.epochs:
        raise fail(f"counts {epoch!r} epochs, not 1 .. {settings.epochs}")
    try:
        restore_training_state(payload["state"], supernet, optimizer, generators)
    except ValueError as err:
        raise fail(f"does not fit the network: {err}") from None
    return epoch


# --------------------------------------------------------------------------------------------
# Checkpoints


def _meta(dataset: Dataset, settings: SuperNetSettings) -> str:
    meta = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings.training_key(),
        "macro": asdict(supernet_macro(dataset, settings)),
        "dataset": dataset.name,
        "augmentation": dataset.augmentation,
        "train_sha256": tensors_sha256((dataset.train.images, dataset.train.labels)),
    }
    return json.dumps(meta, sort_keys=True)


def checkpoint_path(
    dataset: Dataset, settings: SuperNetSettings, checkpoint_dir: str | Path
) -> Path:
    """Where :func:`load_or_train_supernet` keeps the super-network of these settings."""
    key = hashlib.sha256(_meta(dataset, settings).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.name)
    return Path(checkpoint_dir) / f"supernet-{safe}-{key}.pt"


def epochs_path(checkpoint: Path) -> Path:
    """Where the super-network of ``checkpoint`` (:func:`checkpoint_path`) keeps its finished
    epochs while it trains."""
    return checkpoint.with_suffix(".epoch.pt")


def _load(path: Path, dataset: Dataset, settings: SuperNetSettings) -> SuperNetwork:
    def fail(reason: str) -> SuperNetCheckpointError:
        reason = " ".join(reason.split())[:200]
        return SuperNetCheckpointError(
            f"super-network checkpoint {path} is unusable: it {reason}; delete it to retrain"
        )

    payload = load_checkpoint(path, {"state_dict", "meta"}, fail, "super-network")
    if payload["meta"] != _meta(dataset, settings):
        raise fail("was saved for other settings or data")
    supernet = SuperNetwork(supernet_macro(dataset, settings))
    try:
        supernet.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise fail(f"does not fit ({type(exc).__name__}: {exc})") from exc
    return supernet.eval()


def load_or_train_supernet(
    dataset: Dataset,
    settings: SuperNetSettings,
    checkpoint_dir: str | Path,
    progress: Log | None = None,
) -> SuperNetwork:
    """The super-network of these settings and data: read from ``checkpoint_dir`` if it was
    trained before, else trained (:func:`train_supernet`, resuming after the epochs an
    interrupted run kept in :func:`epochs_path`) and saved there. Raises
    :class:`SuperNetCheckpointError` for an unusable checkpoint file."""
    path = checkpoint_path(dataset, settings, checkpoint_dir)
    problem = None if path.exists() else unwritable_folder(checkpoint_dir)
    if problem:  # found out before training, not when the trained network is to be saved
        raise SuperNetCheckpointError(f"[supernet] checkpoint_dir {checkpoint_dir}: {problem}")
    if path.exists():
        supernet = _load(path, dataset, settings)
        if progress is not None:
            progress(f"reusing super-network checkpoint {path}")
        return supernet
    epochs = epochs_path(path)
    supernet = train_supernet(dataset, settings, progress, epochs)
    state = {k: v.detach().clone() for k, v in supernet.state_dict().items()}
    payload = {"state_dict": state, "meta": _meta(dataset, settings)}
    save_checkpoint(path, payload)
    epochs.unlink(missing_ok=True)  # the trained network supersedes its epochs
    if progress is not None:
        progress(f"saved super-network checkpoint {path}")
    return supernet


# --------------------------------------------------------------------------------------------
# Evaluating paths and fitness


def evaluate_path(
    supernet: SuperNetwork,
    arch: AutoSNNArchitecture,
    heldout: Split,
    settings: SuperNetSettings,
) -> PathResult:
    """Accuracy and activity of ``arch`` with the super-network's shared weights on the held-out
    images (the first ``settings.eval_images`` of them when that is set): eval mode, no
    gradients, neuron states reset before and after every batch, the train/eval mode restored
    afterwards. ``activity`` names
    layers as in the standalone network (``blocks.3.neuron2``) and lists the path's only. Ties
    (e.g. a silent head) go to the first tied class, as ``argmax`` decides them."""
    n = len(heldout) if settings.eval_images is None else min(len(heldout), settings.eval_images)
    if n == 0:
        raise ValueError("cannot evaluate a path on an empty held-out split")
    was_training = supernet.training
    supernet.eval()
    correct = 0
    try:
        functional.reset_net(supernet)
        with torch.no_grad(), ActivityCounter(supernet) as counter:
            for start in range(0, n, settings.batch_size):
                stop = min(start + settings.batch_size, n)
                try:
                    rates = supernet(heldout.images[start:stop], arch)
                finally:
                    functional.reset_net(supernet)
                correct += int((rates.argmax(dim=1) == heldout.labels[start:stop]).sum())
    finally:
        supernet.train(was_training)
    raw = counter.result()

    def on_path(by_layer: dict[str, float]) -> dict[str, float]:
        named = {path_name(name, arch): spikes for name, spikes in by_layer.items()}
        return {name: spikes for name, spikes in named.items() if name is not None}

    activity = replace(
        raw,
        spikes_by_layer=on_path(raw.spikes_by_layer),
        pooled_spikes_by_layer=on_path(raw.pooled_spikes_by_layer),
    )
    return PathResult(correct / n, activity.spikes, activity)


def fitness(accuracy: float, spikes: float, s_ref: float, lam: float = DEFAULT_LAMBDA) -> float:
    """AutoSNN's fitness ``accuracy * (spikes / s_ref) ** lam``. A path with no spikes at all
    scores 0: it cannot signal a class (its argmax is a tie), and ``0 ** lam`` is infinite."""
    if not _is_real(s_ref) or s_ref <= 0:
        raise ValueError(f"s_ref must be a positive number of spikes per image, got {s_ref!r}")
    if not _is_real(spikes) or spikes < 0:
        raise ValueError(f"spikes must be a non-negative number, got {spikes!r}")
    if not _is_real(accuracy) or not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    if not _is_real(lam):
        raise ValueError(f"lam must be a finite number, got {lam!r}")
    if spikes == 0:
        return 0.0
    return accuracy * (spikes / s_ref) ** lam


def reference_spikes(
    supernet: SuperNetwork,
    heldout: Split,
    settings: SuperNetSettings,
    n_paths: int = 5,
    seed: int = 0,
) -> float:
    """The default ``s_ref``: the super-network's mean spikes per image over ``n_paths``
    uniformly sampled paths (seeded by ``seed``), each run as :func:`evaluate_path` runs it."""
    if not _is_int(n_paths) or n_paths < 1:
        raise ValueError(f"n_paths must be a positive integer, got {n_paths!r}")
    rng = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(n_paths):
        total += evaluate_path(supernet, sample_path(rng), heldout, settings).spikes_per_image
    mean = total / n_paths
    if mean <= 0:
        raise ValueError(
            f"the super-network emitted no spikes on {n_paths} sampled paths; "
            "train it longer or give the reference spike count explicitly"
        )
    return mean
