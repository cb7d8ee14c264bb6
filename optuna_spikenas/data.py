"""Datasets for architecture search: loading, stratified splitting, normalisation, augmentation.

The known datasets (see :data:`DATASET_NAMES`):

* ``"animal-mnist"``: 10,000 greyscale 28x28 animal drawings in 10 classes (1,000 each),
  shipped with this package as ``data_files/animal_mnist.npz`` (MIT licence, see
  ``data_files/ANIMAL_MNIST_LICENSE``). Its sha256 is checked before every first load.
* ``"digits"``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), a tiny
  dataset for tests and quick runs.
* ``"npz"``: your own images from a ``.npz`` file at ``path`` with arrays ``images`` (uint8,
  ``[N, H, W]`` or ``[N, H, W, C]``, square) and ``labels`` (integers ``0 .. classes - 1``).
* ``"cifar10"``, ``"cifar100"``: CIFAR-10 / CIFAR-100 (32x32 RGB; 50,000 training and 10,000
  test images) from ``path``, in the python or the binary version as downloaded from
  https://www.cs.toronto.edu/~kriz/cifar.html; ``verify=True`` checks the published md5s.
* ``"tinyimagenet"``: TinyImageNet-200 (64x64 RGB, 200 classes; 100,000 training and 10,000
  validation images) from ``path``, as unzipped from
  http://cs231n.stanford.edu/tiny-imagenet-200.zip.

The files of the last three are read by :mod:`optuna_spikenas.image_datasets` (never with plain
``pickle.load``: CIFAR's pickles go through an unpickler that rebuilds numpy arrays only).

Splits and normalisation:

* animal-mnist, digits and npz are split into train/val/test per class (stratified) with a
  seeded numpy Generator, and normalised with the train split's per-channel mean and standard
  deviation.
* cifar10, cifar100 and tinyimagenet keep their official test set as ``test`` (for
  TinyImageNet, the official validation set: its test labels are not public) and split their
  official training set per class, seeded, into ``train`` and ``val`` (``val_fraction``;
  ``test_fraction`` is not used). They are normalised with fixed per-channel constants, the
  ones SNASNet uses (:data:`NORMALISATION`): CIFAR-10's and CIFAR-100's training-set
  statistics, and ImageNet's for TinyImageNet; so a split's pixels do not depend on the seed.
  Their :attr:`Dataset.augmentation` is ``"crop-flip"``, for :func:`augment_batch`.

What was done, with the numbers used, is :attr:`Dataset.input_contract` (``input_contract.py``):
``architecture.json`` records it, and the exported ``model.py``'s ``preprocess`` repeats it.

Memory: images are kept as float32 ``[N, C, H, W]``: CIFAR about 740 MB for all 60,000 images;
TinyImageNet about 5.4 GB for its 110,000 (plus 1.35 GB of uint8 pixels cached per process;
the float splits are filled in chunks, so loading peaks near 7 GB, not twice that).
Pickle is never loaded here: ``np.load`` is always called with ``allow_pickle=False``.
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from optuna_spikenas.dataset_catalog import (
    DATASET_NAMES,
    EVENT_DATASETS,
    OFFICIAL_TEST_DATASETS,
    PATH_DATASETS,
)
from optuna_spikenas.dataset_splits import Dataset, Split
from optuna_spikenas.event_datasets import load_event_dataset
from optuna_spikenas.image_datasets import (
    DatasetError,
    OfficialSplits,
    read_cifar10,
    read_cifar100,
    read_tinyimagenet,
)
from optuna_spikenas.input_contract import FLOAT32, FLOAT64, DirectInput
from optuna_spikenas.paths import not_a_file

__all__ = [
    "ANIMAL_MNIST_CLASSES",
    "ANIMAL_MNIST_SHA256",
    "AUGMENTATIONS",
    "DATASET_NAMES",
    "NORMALISATION",
    "OFFICIAL_TEST_DATASETS",
    "PATH_DATASETS",
    "Dataset",
    "DatasetError",
    "Split",
    "augment_batch",
    "batch_for_scoring",
    "load_dataset",
]

#: Per-channel ``(mean, std)`` of pixels in ``[0, 1]``, as SNASNet normalises these datasets:
#: CIFAR-10's and CIFAR-100's training-set statistics, and ImageNet's for TinyImageNet.
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4913, 0.4821, 0.4465), (0.2470, 0.2434, 0.2615)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

_CONSTANTS_SOURCE = {
    "cifar10": "SNASNet's constants (CIFAR-10's training set)",
    "cifar100": "SNASNet's constants (CIFAR-100's training set)",
    "tinyimagenet": "SNASNet's constants (ImageNet's)",
}

#: Kinds of :func:`augment_batch`.
AUGMENTATIONS: tuple[str, ...] = ("none", "crop-flip")

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

#: Class names of the built-in datasets whose names are known (``npz`` brings none).
_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "animal-mnist": ANIMAL_MNIST_CLASSES,
    "digits": tuple(str(digit) for digit in range(10)),
}

# Private so that tests can point the loader at another (e.g. corrupted) copy.
_ANIMAL_MNIST_PATH = Path(__file__).resolve().parent / "data_files" / "animal_mnist.npz"

_REINSTALL_HINT = (
    "the optuna-spikenas installation is damaged; reinstall it "
    "(pip install --force-reinstall optuna-spikenas)"
)


def load_dataset(
    name: str,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    path: str | Path | None = None,
    verify: bool = False,
    timesteps: int = 5,
    frame_size: int = 64,
) -> Dataset:
    """Load a dataset, split it per class and normalise it.

    Args:
        name: One of :data:`DATASET_NAMES`.
        seed: Seed of the split; the same seed always gives the same split.
        val_fraction: Share of each class put in the validation split, in ``(0, 0.5)``.
        test_fraction: Share of each class put in the test split, in ``(0, 0.5)``; not used
            by :data:`OFFICIAL_TEST_DATASETS`, whose test split is the official one.
        path: The file of the ``npz`` dataset, or the folder of a CIFAR or TinyImageNet
            download (the extracted folder or the folder holding it); ignored by the built-in
            datasets.
        verify: Compare the CIFAR files with their published md5s first (``cifar10`` and
            ``cifar100`` only).
        timesteps, frame_size: Event datasets only: frames per sample (the network's
            timesteps) and their width and height.

    Returns:
        The :class:`Dataset`, normalised as the module docstring says.

    Raises:
        DatasetError: Unknown name, invalid fractions or seed, or a missing or damaged
            data file.
    """
    if name in EVENT_DATASETS:
        if path is None:
            raise DatasetError(f"dataset {name!r} is read from a folder: give its path")
        return load_event_dataset(
            name,
            path,
            timesteps,
            seed,
            val_fraction,
            test_fraction=test_fraction,
            image_size=frame_size,
        )
    if name in OFFICIAL_TEST_DATASETS:
        return _load_official(name, seed, val_fraction, path, verify)
    if verify:
        _check_name(name)
        raise DatasetError("verify checks the published CIFAR md5s: only cifar10 and cifar100")
    images, labels, max_value = _load_raw(name, path)
    train_idx, val_idx, test_idx = _split_indices(labels, seed, val_fraction, test_fraction)

    # uint8 -> [N, C, H, W] float in [0, 1]; statistics in float64 for accuracy.
    channels_first = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    scaled = channels_first.astype(np.float64) / max_value
    train = scaled[train_idx]
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    if np.any(std < 1e-9):  # a constant channel's std is 0 up to rounding
        raise DatasetError(f"dataset {name!r} has a constant channel in its train split")
    normalised = ((scaled - mean) / std).astype(np.float32)

    def make_split(idx: np.ndarray) -> Split:
        return Split(
            images=torch.from_numpy(np.ascontiguousarray(normalised[idx])),
            labels=torch.from_numpy(labels[idx].astype(np.int64)),
        )

    channels, size = int(normalised.shape[1]), int(normalised.shape[2])
    contract = DirectInput(
        dataset=name,
        shape=(channels, size, size),
        raw_max=int(max_value),
        scale=max_value,
        mean=tuple(float(m) for m in mean.ravel()),
        std=tuple(float(s) for s in std.ravel()),
        statistics="mean and std of the train split",
        precision=FLOAT64,
        classes=_CLASS_NAMES.get(name),
        train_images=len(train_idx),
        split_seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    return Dataset(
        name=name,
        num_classes=int(labels.max()) + 1,
        in_channels=channels,
        image_size=size,
        train=make_split(train_idx),
        val=make_split(val_idx),
        test=make_split(test_idx),
        input_contract=contract,
    )


def augment_batch(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch of normalised images for one training step.

    ``"none"`` returns ``images`` itself. ``"crop-flip"`` is the standard CIFAR augmentation
    that SNASNet trains with: each image is padded with zeros by ``size // 8`` pixels on every
    side (4 for 32x32 CIFAR, 8 for 64x64 TinyImageNet, as SNASNet), a window of the original
    size is cut at a random offset, and it is mirrored left-right with probability 1/2. The
    padding is zero in the *normalised* batch, i.e. the channel mean (torchvision's
    ``RandomCrop`` on a PIL image pads black instead, before normalising).

    Args:
        images: ``[B, C, H, W]`` batch (any float dtype and device); not modified.
        kind: One of :data:`AUGMENTATIONS`.
        generator: Draws the offsets and flips (on ``generator.device``): the same generator
            state always gives the same output.

    Returns:
        A new ``[B, C, H, W]`` batch (the input itself for ``"none"``).

    Raises:
        DatasetError: Unknown ``kind`` or a batch that is not ``[B, C, H, W]``.
    """
    if kind == "none":
        return images
    if kind != "crop-flip":
        known = ", ".join(repr(k) for k in AUGMENTATIONS)
        raise DatasetError(f"unknown augmentation {kind!r}; known augmentations are {known}")
    if images.ndim != 4:
        raise DatasetError(f"augment_batch needs a [B, C, H, W] batch, got {list(images.shape)}")
    batch, channels, height, width = images.shape
    pad = min(height, width) // 8
    on = generator.device
    rows = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=on)
    cols = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=on)
    flip = torch.randint(0, 2, (batch,), generator=generator, device=on).bool()
    rows, cols, flip = rows.to(images.device), cols.to(images.device), flip.to(images.device)
    padded = F.pad(images, (pad, pad, pad, pad))  # zeros
    row_idx = rows[:, None] + torch.arange(height, device=images.device)  # [B, H]
    col_idx = cols[:, None] + torch.arange(width, device=images.device)  # [B, W]
    col_idx = torch.where(flip[:, None], col_idx.flip(1), col_idx)
    return padded[
        torch.arange(batch, device=images.device)[:, None, None, None],
        torch.arange(channels, device=images.device)[None, :, None, None],
        row_idx[:, None, :, None],
        col_idx[:, None, None, :],
    ]


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
        _check_fraction(what, fraction)
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}"
        )
    _check_seed(seed)
    return _stratified_split(labels, seed, val_fraction, test_fraction)


def _check_fraction(what: str, fraction: float) -> None:
    if not isinstance(fraction, int | float) or not 0.0 < fraction < 0.5:
        raise DatasetError(f"{what} must be strictly between 0 and 0.5, got {fraction!r}")


def _stratified_split(
    labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_split_indices` without the argument checks; ``test_fraction`` may be 0 (then
    the test part is empty and only train and val must not be)."""
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
        if idx.size == 0 and (split_name != "test" or test_fraction > 0):
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
    _check_name(name)
    raise AssertionError(f"dataset {name!r} has no reader")  # pragma: no cover


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        known = ", ".join(repr(n) for n in DATASET_NAMES)
        raise DatasetError(f"unknown dataset {name!r}; known datasets are {known}")


# --- datasets with an official test split (CIFAR, TinyImageNet) ---------------------------

_OFFICIAL_READERS = {
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "tinyimagenet": read_tinyimagenet,
}


def _load_official(
    name: str, seed: int, val_fraction: float, path: str | Path | None, verify: bool
) -> Dataset:
    """Official test split as ``test``; official training set split per class into train/val."""
    _check_fraction("val_fraction", val_fraction)
    _check_seed(seed)
    if path is None or str(path) == "":
        raise DatasetError(
            f"dataset {name!r} needs a path: set [dataset] path to the folder you downloaded "
            "it to (the extracted folder or the folder holding it)"
        )
    if verify and name == "tinyimagenet":
        raise DatasetError("verify checks the published CIFAR md5s: only cifar10 and cifar100")
    raw = _read_official(name, Path(path).expanduser().resolve(), verify)
    train_idx, val_idx, _ = _stratified_split(raw.train_labels, seed, val_fraction, 0.0)
    mean, std = NORMALISATION[name]

    def make_split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray | None) -> Split:
        return Split(
            images=_normalise(images, idx, mean, std),
            labels=torch.from_numpy(labels.copy() if idx is None else labels[idx]),
        )

    channels, size = int(raw.train_images.shape[1]), int(raw.train_images.shape[2])
    contract = DirectInput(
        dataset=name,
        shape=(channels, size, size),
        raw_max=255,
        scale=255.0,
        mean=mean,
        std=std,
        statistics=_CONSTANTS_SOURCE[name],
        precision=FLOAT32,
        classes=raw.class_names or None,
    )
    return Dataset(
        name=name,
        num_classes=raw.num_classes,
        in_channels=channels,
        image_size=size,
        train=make_split(raw.train_images, raw.train_labels, train_idx),
        val=make_split(raw.train_images, raw.train_labels, val_idx),
        test=make_split(raw.test_images, raw.test_labels, None),
        input_contract=contract,
        augmentation="crop-flip",
    )


@functools.lru_cache(maxsize=2)
def _read_official(name: str, path: Path, verify: bool) -> OfficialSplits:
    """Read and freeze a dataset's official splits, once per process, path and ``verify`` (as
    animal-mnist and digits are cached): a file changed later in the same process is not seen."""
    reader: Any = _OFFICIAL_READERS[name]  # the CIFAR readers take verify, TinyImageNet not
    raw = reader(path, verify=True) if verify else reader(path)
    for array in (raw.train_images, raw.train_labels, raw.test_images, raw.test_labels):
        array.setflags(write=False)
    return raw


def _normalise(
    images: np.ndarray,
    idx: np.ndarray | None,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    chunk: int = 4096,
) -> torch.Tensor:
    """``(images[idx] / 255 - mean) / std`` per channel as float32 ``[n, C, H, W]``, filled a
    chunk at a time so that no float64 or second full-size float copy is ever made."""
    n = images.shape[0] if idx is None else idx.shape[0]
    out = torch.empty((n, *images.shape[1:]), dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    scale = 1.0 / (255.0 * std_t)
    shift = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) / std_t
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # a fresh writable uint8 chunk (the cached pixels are read-only)
        part = images[start:stop].copy() if idx is None else images[idx[start:stop]]
        block = out[start:stop]
        block.copy_(torch.from_numpy(part))  # uint8 -> float32
        block.mul_(scale).sub_(shift)
    return out


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
    problem = not_a_file(path)
    if problem:
        raise DatasetError(f"dataset file {path} {problem}")
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and suggest unpickling
        raise DatasetError(f"dataset file {path} is not a .npz file (a NumPy zip archive)")
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
