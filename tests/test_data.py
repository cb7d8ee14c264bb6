"""Tests for optuna_spikenas.data: loading, splitting, normalisation and scoring batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_spikenas import data
from optuna_spikenas.data import (
    ANIMAL_MNIST_SHA256,
    DATASET_NAMES,
    DatasetError,
    Split,
    batch_for_scoring,
    load_dataset,
)


@pytest.fixture(scope="module")
def animal() -> data.Dataset:
    return load_dataset("animal-mnist", seed=0)


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return load_dataset("digits", seed=0)


BUILTIN = ("animal-mnist", "digits")


def _all_splits(ds: data.Dataset) -> tuple[Split, Split, Split]:
    return ds.train, ds.val, ds.test


def test_dataset_names() -> None:
    assert DATASET_NAMES == (
        "animal-mnist",
        "digits",
        "npz",
        "cifar10",
        "cifar100",
        "tinyimagenet",
        "dvs128-gesture",
        "cifar10-dvs",
    )


def test_animal_mnist_shapes_dtypes_and_class_counts(animal: data.Dataset) -> None:
    assert (animal.name, animal.num_classes, animal.in_channels, animal.image_size) == (
        "animal-mnist",
        10,
        1,
        28,
    )
    for split in _all_splits(animal):
        assert split.images.dtype == torch.float32
        assert split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (1, 28, 28)
        assert split.images.shape[0] == split.labels.shape[0] == len(split)
        assert torch.isfinite(split.images).all()
    assert (len(animal.train), len(animal.val), len(animal.test)) == (8000, 1000, 1000)
    all_labels = torch.cat([s.labels for s in _all_splits(animal)])
    assert torch.bincount(all_labels, minlength=10).tolist() == [1000] * 10


def test_animal_mnist_raw_file_matches_its_description() -> None:
    images, labels, max_value = data._load_raw("animal-mnist")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert max_value == 255.0
    assert np.all(np.diff(labels.astype(np.int64)) >= 0)  # sorted by class
    assert len(data.ANIMAL_MNIST_CLASSES) == 10


def test_raw_loader_is_cached() -> None:
    first = data._load_raw("animal-mnist")
    second = data._load_raw("animal-mnist")
    assert first[0] is second[0] and first[1] is second[1]
    assert not first[0].flags.writeable


@pytest.mark.parametrize("seed", [0, 1, 123])
@pytest.mark.parametrize("name", BUILTIN)
def test_split_indices_disjoint_and_covering(name: str, seed: int) -> None:
    _, labels, _ = data._load_raw(name)
    train, val, test = data._split_indices(labels, seed, 0.1, 0.15)
    combined = np.concatenate([train, val, test])
    assert combined.size == labels.size
    assert np.array_equal(np.sort(combined), np.arange(labels.size))
    assert np.intersect1d(train, val).size == 0
    assert np.intersect1d(train, test).size == 0
    assert np.intersect1d(val, test).size == 0


def test_loaded_splits_follow_split_indices(animal: data.Dataset) -> None:
    images, labels, max_value = data._load_raw("animal-mnist")
    indices = data._split_indices(labels, 0, 0.1, 0.1)
    for split, idx in zip(_all_splits(animal), indices, strict=True):
        assert np.array_equal(split.labels.numpy(), labels[idx].astype(np.int64))
    # The images follow the labels: denormalising gives back the raw pixels.
    raw_train = images[indices[0]].astype(np.float64) / max_value
    restored = animal.test.images[:, 0].double().numpy() * raw_train.std() + raw_train.mean()
    np.testing.assert_allclose(restored * max_value, images[indices[2]], atol=1e-3)


def test_same_seed_same_split_different_seed_different_split() -> None:
    _, labels, _ = data._load_raw("animal-mnist")
    a = data._split_indices(labels, 7, 0.1, 0.1)
    b = data._split_indices(labels, 7, 0.1, 0.1)
    c = data._split_indices(labels, 8, 0.1, 0.1)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[2], c[2])


def test_same_seed_same_dataset_tensors() -> None:
    a = load_dataset("digits", seed=3)
    b = load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.val.images, c.val.images)


@pytest.mark.parametrize("name", BUILTIN)
def test_stratification(name: str) -> None:
    _, labels, _ = data._load_raw(name)
    val_fraction, test_fraction = 0.2, 0.1
    _, val, test = data._split_indices(labels, 5, val_fraction, test_fraction)
    class_sizes = np.bincount(labels)
    val_counts = np.bincount(labels[val], minlength=class_sizes.size)
    test_counts = np.bincount(labels[test], minlength=class_sizes.size)
    assert np.all(np.abs(val_counts - class_sizes * val_fraction) <= 1)
    assert np.all(np.abs(test_counts - class_sizes * test_fraction) <= 1)


@pytest.mark.parametrize("name", BUILTIN)
def test_normalised_with_train_statistics(name: str) -> None:
    ds = load_dataset(name, seed=2)
    train = ds.train.images.double()
    for channel in range(ds.in_channels):
        values = train[:, channel]
        assert abs(values.mean().item()) < 1e-4
        assert abs(values.std(unbiased=False).item() - 1.0) < 1e-4

    # Independently: recompute from the raw pixels of the train indices.
    images, labels, max_value = data._load_raw(name)
    train_idx, val_idx, _ = data._split_indices(labels, 2, 0.1, 0.1)
    raw_train = images[train_idx].astype(np.float64) / max_value
    mean, std = raw_train.mean(), raw_train.std()
    expected_val = (images[val_idx].astype(np.float64) / max_value - mean) / std
    np.testing.assert_allclose(ds.val.images[:, 0].numpy(), expected_val, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ds.val.labels.numpy(), labels[val_idx].astype(np.int64))
    # Val is normalised with train statistics, not its own, so it is not exactly standardised.
    assert abs(ds.val.images.double().mean().item()) > 1e-6


def test_checksum_mismatch_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corrupted = tmp_path / "animal_mnist.npz"
    shutil.copyfile(data._ANIMAL_MNIST_PATH, corrupted)
    with corrupted.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(data, "_ANIMAL_MNIST_PATH", corrupted)
    with pytest.raises(DatasetError, match="sha256.*reinstall"):
        load_dataset("animal-mnist")


def test_expected_hash_mismatch_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "ANIMAL_MNIST_SHA256", "0" * 64)
    with pytest.raises(DatasetError, match="damaged"):
        load_dataset("animal-mnist")


def test_missing_file_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "_ANIMAL_MNIST_PATH", tmp_path / "nope.npz")
    with pytest.raises(DatasetError, match="missing.*reinstall"):
        load_dataset("animal-mnist")


def test_shipped_file_checksum_matches_constant() -> None:
    assert data._sha256(data._ANIMAL_MNIST_PATH) == ANIMAL_MNIST_SHA256


def test_unknown_name_raises() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'.*animal-mnist.*digits"):
        load_dataset("mnist")


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction"),
    [(0.0, 0.1), (0.1, 0.0), (0.5, 0.1), (0.1, 0.5), (-0.1, 0.1), (0.1, 1.2)],
)
def test_invalid_fractions_raise(val_fraction: float, test_fraction: float) -> None:
    with pytest.raises(DatasetError, match="fraction"):
        load_dataset("digits", val_fraction=val_fraction, test_fraction=test_fraction)


def test_invalid_seed_raises() -> None:
    with pytest.raises(DatasetError, match="seed"):
        load_dataset("digits", seed=-1)


def test_digits(digits: data.Dataset) -> None:
    assert (digits.name, digits.num_classes, digits.in_channels, digits.image_size) == (
        "digits",
        10,
        1,
        8,
    )
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    for split in _all_splits(digits):
        assert split.images.shape[1:] == (1, 8, 8)
        assert split.images.dtype == torch.float32
        assert split.labels.dtype == torch.int64
        assert set(split.labels.tolist()) == set(range(10))


def test_batch_for_scoring_deterministic(digits: data.Dataset) -> None:
    a = batch_for_scoring(digits.train, 32, seed=11)
    b = batch_for_scoring(digits.train, 32, seed=11)
    c = batch_for_scoring(digits.train, 32, seed=12)
    assert a.shape == (32, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batch_for_scoring_without_replacement() -> None:
    # Images equal to their own index make it easy to check that rows are distinct.
    split = Split(
        images=torch.arange(50, dtype=torch.float32).reshape(50, 1, 1, 1),
        labels=torch.zeros(50, dtype=torch.int64),
    )
    full = batch_for_scoring(split, 50, seed=0).flatten()
    assert sorted(full.tolist()) == list(range(50))
    part = batch_for_scoring(split, 20, seed=0).flatten()
    assert len(set(part.tolist())) == 20


def test_batch_for_scoring_too_large_raises(digits: data.Dataset) -> None:
    n = len(digits.val)
    with pytest.raises(DatasetError, match=f"largest allowed is {n}"):
        batch_for_scoring(digits.val, n + 1, seed=0)
    with pytest.raises(DatasetError):
        batch_for_scoring(digits.val, 0, seed=0)


def test_user_npz_dataset_loads_channels_last(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 12, 12, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 20)
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, labels=labels)
    ds = load_dataset("npz", seed=1, path=path)
    assert (ds.in_channels, ds.image_size, ds.num_classes) == (3, 12, 3)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 60
    assert ds.train.images.shape[1:] == (3, 12, 12)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ({"pictures": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(4, int)}, "needs arrays"),
        ({"images": np.zeros((4, 8, 9), np.uint8), "labels": np.zeros(4, int)}, "H == W"),
        ({"images": np.zeros((4, 8, 8), np.float32), "labels": np.zeros(4, int)}, "uint8"),
        ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(3, int)}, "one per image"),
    ],
)
def test_user_npz_dataset_errors_are_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is not None:
        np.savez(path, **content)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("npz", path=path)
    assert "\n" not in str(info.value)
