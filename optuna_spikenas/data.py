"""Datasets for architecture search: loading, stratified splitting and normalisation.

Two datasets are known (see :data:`DATASET_NAMES`):

* ``"animal-mnist"``: 10,000 greyscale 28x28 animal drawings in 10 classes (1,000 each),
  shipped with this package as ``data_files/animal_mnist.npz`` (MIT licence, see
  ``data_files/ANIMAL_MNIST_LICENSE``). Its sha256 is checked before every first load.
* ``"digits"``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), a tiny
  dataset for tests and quick runs.
* ``"npz"``: your own images from a ``.npz`` file at ``path`` with arrays ``images`` (uint8,
  ``[N, H, W]`` or ``[N, H, W, C]``, square) and ``labels`` (integers ``0 .. classes - 1``).

Every dataset is split into train/val/test per class (stratified) with a seeded numpy
Generator, and normalised with the train split's per-channel mean and standard deviation.
Pickle is never loaded here: ``np.load`` is always called with ``allow_pickle=False``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ANIMAL_MNIST_CLASSES",
    "ANIMAL_MNIST_SHA256",
    "DATASET_NAMES",
    "Dataset",
    "DatasetError",
    "Split",
    "batch_for_scoring",
    "load_dataset",
]

DATASET_NAMES: tuple[str, ...] = ("animal-mnist", "digits", "npz")

#: sha256 of ``data_files/animal_mnist.npz`` as produced by ``scripts/vendor_animal_mnist.py``.
ANIMAL_MNIST_SHA256 = "c582d0c3c518d14a58601cce93eeb73011e98c2ec03f6384db6d08eeb7139ab4"

#: Class names of animal-mnist, indexed by label.
ANIMAL_MNIST_CLASSES: tuple[str, ...] = (
    "Bear",
    "Bird",
    "Cat",
    "Cow",
    "Dog",
    "Elephant",
    "Giraffe",
    "Horse",
    "Sheep",
    "Zebra",
)

# Private so that tests can point the loader at another (e.g. corrupted) copy.
_ANIMAL_MNIST_PATH = Path(__file__).resolve().parent / "data_files" / "animal_mnist.npz"

_REINSTALL_HINT = (
    "the optuna-spikenas installation is damaged; reinstall it "
    "(pip install --force-reinstall optuna-spikenas)"
)


class DatasetError(ValueError):
    """One clear line for the user: what is missing/wrong and what to do."""


@dataclass(frozen=True)
class Split:
    """One part (train, val or test) of a dataset.

    Attributes:
        images: float32 ``[N, C, H, W]``, normalised with the train split's per-channel
            mean and standard deviation.
        labels: int64 ``[N]`` class indices.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A dataset split into train/val/test, ready for training or scoring.

    Attributes:
        name: One of :data:`DATASET_NAMES`.
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
        in_channels: Image channels ``C``.
        image_size: Height and width of the (square) images.
        train, val, test: Disjoint splits covering every example exactly once.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    train: Split
    val: Split
    test: Split


def load_dataset(
    name: str,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    path: str | Path | None = None,
) -> Dataset:
    """Load a dataset, split it per class and normalise it.

    Args:
        name: One of :data:`DATASET_NAMES`.
        seed: Seed of the split; the same seed always gives the same split.
        val_fraction: Share of each class put in the validation split, in ``(0, 0.5)``.
        test_fraction: Share of each class put in the test split, in ``(0, 0.5)``.
        path: The file of the ``npz`` dataset (ignored by the built-in datasets).

    Returns:
        The :class:`Dataset`, with images normalised by the train split's per-channel
        mean and standard deviation.

    Raises:
        DatasetError: Unknown name, invalid fractions or seed, or a missing or damaged
            data file.
    """
    images, labels, max_value = _load_raw(name, path)
    train_idx, val_idx, test_idx = _split_indices(labels, seed, val_fraction, test_fraction)

    # uint8 -> [N, C, H, W] float in [0, 1]; statistics in float64 for accuracy.
    channels_first = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    scaled = channels_first.astype(np.float64) / max_value
    train = scaled[train_idx]
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    if np.any(std <= 0.0):
        raise DatasetError(f"dataset {name!r} has a constant channel in its train split")
    normalised = ((scaled - mean) / std).astype(np.float32)

    def make_split(idx: np.ndarray) -> Split:
        return Split(
            images=torch.from_numpy(np.ascontiguousarray(normalised[idx])),
            labels=torch.from_numpy(labels[idx].astype(np.int64)),
        )

    return Dataset(
        name=name,
        num_classes=int(labels.max()) + 1,
        in_channels=int(normalised.shape[1]),
        image_size=int(normalised.shape[2]),
        train=make_split(train_idx),
        val=make_split(val_idx),
        test=make_split(test_idx),
    )


def batch_for_scoring(split: Split, batch_size: int, seed: int) -> torch.Tensor:
    """Draw a seeded random batch of images, without replacement.

    The training-free scorer uses this so that every candidate architecture is scored on
    the same images.

    Args:
        split: The split to draw from.
        batch_size: Number of images, between 1 and ``len(split)``.
        seed: Seed of the draw; the same seed always gives the same batch.

    Returns:
        float32 ``[batch_size, C, H, W]`` images.

    Raises:
        DatasetError: ``batch_size`` is not between 1 and ``len(split)``.
    """
    n = len(split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DatasetError(f"batch size must be a positive integer, got {batch_size!r}")
    if batch_size > n:
        raise DatasetError(
            f"batch size {batch_size} is larger than the split ({n} images); "
            f"the largest allowed is {n}"
        )
    _check_seed(seed)
    idx = np.random.default_rng(seed).choice(n, size=batch_size, replace=False)
    return split.images[torch.from_numpy(idx)]


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")


def _split_indices(
    labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split of ``range(len(labels))`` into sorted train/val/test indices.

    Each class contributes ``round(n_c * val_fraction)`` examples to val and
    ``round(n_c * test_fraction)`` to test, the rest to train, chosen by a
    ``numpy.random.default_rng(seed)`` permutation. The three arrays are disjoint and
    together cover every index exactly once.
    """
    for what, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(fraction, int | float) or not 0.0 < fraction < 0.5:
            raise DatasetError(f"{what} must be strictly between 0 and 0.5, got {fraction!r}")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}"
        )
    _check_seed(seed)

    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(len(members) * val_fraction))
        n_test = int(round(len(members) * test_fraction))
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val : n_val + n_test])
        parts[0].append(members[n_val + n_test :])
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    for split_name, idx in (("train", train), ("val", val), ("test", test)):
        if idx.size == 0:
            raise DatasetError(
                f"the {split_name} split would be empty; choose larger or smaller fractions"
            )
    return train, val, test


def _load_raw(name: str, path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(images uint8 [N, H, W(, C)], labels [N], max pixel value)`` for ``name``.

    The arrays are cached per process and read-only: copy before modifying.
    """
    if name == "animal-mnist":
        images, labels = _read_animal_mnist(_ANIMAL_MNIST_PATH, ANIMAL_MNIST_SHA256)
        return images, labels, 255.0
    if name == "digits":
        images, labels = _read_digits()
        return images, labels, 16.0
    if name == "npz":
        if path is None:
            raise DatasetError("dataset 'npz' needs a path: set [dataset] path = 'FILE.npz'")
        images, labels = _read_user_npz(Path(path))
        return images, labels, 255.0
    known = ", ".join(repr(n) for n in DATASET_NAMES)
    raise DatasetError(f"unknown dataset {name!r}; known datasets are {known}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _read_animal_mnist(path: Path, expected_sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """Verify and decode the animal-mnist npz (cached per path and expected hash)."""
    if not path.is_file():
        raise DatasetError(f"animal-mnist data file {path} is missing: {_REINSTALL_HINT}")
    actual = _sha256(path)
    if actual != expected_sha256:
        raise DatasetError(
            f"animal-mnist data file {path} has sha256 {actual}, expected {expected_sha256}: "
            f"{_REINSTALL_HINT}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = np.asarray(npz["images"])
            labels = np.asarray(npz["labels"])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(
            f"animal-mnist data file {path} is unreadable: {_REINSTALL_HINT}"
        ) from exc
    if (
        images.dtype != np.uint8
        or labels.dtype != np.uint8
        or images.ndim != 3
        or images.shape[1] != images.shape[2]
        or labels.shape != images.shape[:1]
    ):
        raise DatasetError(
            f"animal-mnist data file {path} has unexpected contents: {_REINSTALL_HINT}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=1)
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's 8x8 digits as uint8 arrays (cached)."""
    from sklearn.datasets import load_digits  # deferred: importing scikit-learn is slow

    bunch = load_digits()
    images = np.asarray(bunch.images).astype(np.uint8)
    labels = np.asarray(bunch.target).astype(np.uint8)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _read_user_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a user's ``.npz`` dataset (never unpickled)."""
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = np.asarray(npz["images"])
            labels = np.asarray(npz["labels"])
    except KeyError:
        raise DatasetError(f"dataset file {path} needs arrays 'images' and 'labels'") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"dataset file {path} is not a readable .npz file: {exc}") from None
    square = images.ndim in (3, 4) and images.shape[1] == images.shape[2]
    if images.dtype != np.uint8 or not square or (images.ndim == 4 and images.shape[3] > 4):
        raise DatasetError(
            f"dataset file {path}: 'images' must be uint8 [N, H, W] or [N, H, W, C] with H == W, "
            f"got {images.dtype} {list(images.shape)}"
        )
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"dataset file {path}: 'labels' must be N integers, one per image")
    if labels.min() < 0:
        raise DatasetError(f"dataset file {path}: labels must be 0 .. classes - 1")
    return images, labels
