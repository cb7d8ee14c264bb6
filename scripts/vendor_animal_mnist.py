"""One-off maintainer script: vendor animal-mnist 0.4 into ``animal_mnist.npz``.

The PyPI package ``animal-mnist`` 0.4 (MIT licence, copied to
``optuna_spikenas/data_files/ANIMAL_MNIST_LICENSE``) ships its data as two gzip-compressed
pickles inside the wheel:

* ``animal_mnist/data/Animal_MNIST/animal_data_version_3.gz``: the 10,000 28x28 images;
* ``animal_mnist/data/Animal_MNIST/animal_label_version_3.gz``: their labels 0..9
  (Bear, Bird, Cat, Cow, Dog, Elephant, Giraffe, Horse, Sheep, Zebra).

This script reads both straight out of a downloaded wheel, converts them to uint8 arrays
``images`` ``(N, 28, 28)`` and ``labels`` ``(N,)`` (stably sorted by class), writes them with
``numpy.savez_compressed`` and prints the file's sha256.

SECURITY: this is the ONLY place in the project where pickle is used, and it is meant to be
run only on a maintainer's machine, on a wheel the maintainer downloaded from PyPI and chose
to trust (unpickling runs arbitrary code). The package itself never unpickles anything: it
reads the npz with ``np.load(..., allow_pickle=False)`` after checking its sha256.

Usage::

    pip download animal-mnist==0.4 --no-deps -d /tmp/animal
    python scripts/vendor_animal_mnist.py /tmp/animal/animal_mnist-0.4-py3-none-any.whl

Then paste the printed sha256 into ``ANIMAL_MNIST_SHA256`` in ``optuna_spikenas/data.py``.
The zip container written by ``savez_compressed`` records modification times, so the sha256
changes every time this script is run even when the arrays are identical.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import pickle  # Maintainer-only; see the module docstring.
import sys
import zipfile
from pathlib import Path

import numpy as np

DATA_MEMBER = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
LABEL_MEMBER = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "optuna_spikenas" / "data_files" / "animal_mnist.npz"
)
NUM_CLASSES = 10
IMAGE_SIZE = 28


def _unpickle_member(wheel: zipfile.ZipFile, member: str) -> object:
    """Decompress and unpickle one member of the trusted wheel."""
    with wheel.open(member) as raw, gzip.open(raw, "rb") as f:
        return pickle.load(f)  # noqa: S301 - trusted wheel, maintainer's machine only


def _to_images(obj: object) -> np.ndarray:
    """Convert the unpickled image object to uint8 ``(N, 28, 28)``."""
    images = np.asarray(obj)
    if images.ndim == 2 and images.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        images = images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise SystemExit(f"unexpected image array shape {images.shape}")
    if np.issubdtype(images.dtype, np.floating) and float(images.max()) <= 1.0:
        images = np.rint(images * 255.0)
    if float(images.min()) < 0 or float(images.max()) > 255:
        raise SystemExit(f"image values outside 0..255: {images.min()}..{images.max()}")
    return images.astype(np.uint8)


def _to_labels(obj: object, n: int) -> np.ndarray:
    """Convert the unpickled label object to uint8 ``(N,)`` class indices."""
    labels = np.asarray(obj)
    if labels.ndim == 2 and labels.shape[1] == NUM_CLASSES:  # one-hot
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if labels.shape != (n,):
        raise SystemExit(f"{labels.shape[0]} labels for {n} images")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise SystemExit(f"labels outside 0..{NUM_CLASSES - 1}: {labels.min()}..{labels.max()}")
    return labels.astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="downloaded animal_mnist-0.4 wheel")
    parser.add_argument(
        "-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="npz to write (%(default)s)"
    )
    args = parser.parse_args(argv)

    with zipfile.ZipFile(args.wheel) as wheel:
        images = _to_images(_unpickle_member(wheel, DATA_MEMBER))
        labels = _to_labels(_unpickle_member(wheel, LABEL_MEMBER), len(images))

    order = np.argsort(labels, kind="stable")
    images, labels = images[order], labels[order]

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("wb") as f:  # a file object keeps numpy from appending ".npz"
        np.savez_compressed(f, images=images, labels=labels)

    counts = np.bincount(labels, minlength=NUM_CLASSES)
    print(f"wrote {args.output}: images {images.shape} uint8, labels per class {counts.tolist()}")
    print(f"sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
