"""The datasets this package knows, and their properties, without loading any (no torch).

One registry, :data:`DATASETS`: a new dataset is one entry here and its reader in ``data.py``
(images) or ``event_datasets.py`` (event frames). The config's choices and the ``[dataset]
path`` rule come from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset before it is loaded."""

    description: str
    reads_path: bool = False  # read from the user's ``[dataset] path``
    events: bool = False  # event-camera frames [T, 2, H, W], one per timestep (extra: dvs)
    official_test: bool = False  # its official test set is kept as ``test``


DATASETS: dict[str, DatasetInfo] = {
    "animal-mnist": DatasetInfo("10,000 greyscale 28x28 animal drawings, 10 classes (shipped)"),
    "digits": DatasetInfo("scikit-learn's 1,797 8x8 handwritten digits, 10 classes"),
    "npz": DatasetInfo("your own images and labels from a .npz file", reads_path=True),
    "cifar10": DatasetInfo("CIFAR-10, 32x32 RGB, 10 classes", reads_path=True, official_test=True),
    "cifar100": DatasetInfo(
        "CIFAR-100, 32x32 RGB, 100 classes", reads_path=True, official_test=True
    ),
    "tinyimagenet": DatasetInfo(
        "TinyImageNet-200, 64x64 RGB, 200 classes", reads_path=True, official_test=True
    ),
    "dvs128-gesture": DatasetInfo("DVS128 Gesture, 11 classes", reads_path=True, events=True),
    "cifar10-dvs": DatasetInfo("CIFAR10-DVS, 10 classes", reads_path=True, events=True),
}

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
#: Event-camera datasets (``event_datasets.py``, needs the ``dvs`` extra): samples are frame
#: sequences ``[T, 2, H, W]``, one frame per timestep.
EVENT_DATASETS: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.events)
#: The datasets read from the user's ``path`` (``[dataset] path``); the others ignore it.
PATH_DATASETS: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.reads_path)
#: The datasets whose official test set is kept as ``test`` (train/val split from the rest).
OFFICIAL_TEST_DATASETS: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.official_test)
