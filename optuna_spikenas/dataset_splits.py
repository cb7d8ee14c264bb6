"""A loaded dataset: its train, val and test splits as tensors, and what the networks need to
know of it (classes, channels, image size, augmentation). ``data.py`` and ``event_datasets.py``
make them; everything that trains or scores reads them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optuna_spikenas.input_contract import InputContract


@dataclass(frozen=True)
class Split:
    """One part (train, val or test) of a dataset.

    Attributes:
        images: float32 ``[N, C, H, W]``, normalised per channel: with the train split's mean
            and standard deviation, or with :data:`NORMALISATION`'s constants for the datasets
            that have them; event datasets give frame sequences ``[N, T, 2, H, W]``
            (``event_datasets.py``).
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
        train, val, test: Disjoint splits covering every example exactly once. For the
            datasets of :data:`OFFICIAL_TEST_DATASETS`, ``test`` is the official test set and
            ``train`` + ``val`` the official training set.
        input_contract: What the pipeline did to a raw sample to make it a network input
            (normalisation with the numbers it used, encoding, shape, class names where known),
            as ``architecture.json`` and ``result.json`` record it (``input_contract.py``).
        augmentation: The training-time augmentation the dataset is used with, one of
            :data:`AUGMENTATIONS`, for :func:`augment_batch`: ``"crop-flip"`` for CIFAR and
            TinyImageNet, ``"none"`` for the others.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    train: Split
    val: Split
    test: Split
    input_contract: InputContract
    augmentation: str = "none"
