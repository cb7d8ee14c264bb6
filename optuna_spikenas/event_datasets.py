"""DVS event datasets as frame sequences through ``tonic`` (``pip install 'optuna-spikenas[dvs]'``).

Two datasets are known (see :data:`EVENT_DATASET_NAMES`), both from a 128x128 DVS sensor with
two polarities, read from folders you download yourself (nothing is downloaded here):

* ``"dvs128-gesture"``: DVS128 Gesture (https://research.ibm.com/interactive/dvsgesture/),
  11 classes, in tonic's preprocessed layout, i.e. the extracted ``ibmGestureTrain.tar.gz`` and
  ``ibmGestureTest.tar.gz`` that ``tonic.datasets.DVSGesture`` downloads::

      PATH/ibmGestureTrain/user01_fluorescent/0.npy ... 10.npy     (one file per gesture)
      PATH/ibmGestureTest/user24_fluorescent/...

  Each ``<label>.npy`` holds one recording as numbers ``[N, 4]``: columns x, y, polarity (0/1)
  and the time in milliseconds (tonic's ``DVSGesture`` multiplies it by 1000 into
  microseconds, and so do we). The official test split (users 24-29) is the test split here.
* ``"cifar10-dvs"``: CIFAR10-DVS (https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671),
  10 classes: the ten class zips extracted into ``PATH/airplane/*.aedat`` ...
  ``PATH/truck/*.aedat``. The files are jAER AEDAT 2.0: ``#`` header lines, then big-endian
  ``uint32`` address / ``uint32`` timestamp (microseconds) pairs. Addresses are decoded as
  SpikingJelly does for this dataset (x = 127 - bits 8-14, y = 127 - bits 1-7, polarity =
  1 - bit 0), which shows the images upright. There is no official test split: train, val and
  test are drawn per class.

``PATH`` may also be the folder tonic saves to (the one holding ``DVSGesture/`` or
``CIFAR10DVS/``). Tonic's converted ``.aedat4`` copy of CIFAR10-DVS is not read (it needs the
``aedat`` package): use the original ``.aedat`` files.

Each recording becomes ``T = timesteps`` frames over equal time bins with tonic's
``ToFrame(sensor_size, time_window=W, start_time=t0, end_time=t0 + T * W)``, where ``t0`` is the
first event's time and ``W = ceil((t_last - t0 + 1) / T)``, so that every event is counted
(``ToFrame(n_time_bins=T)`` drops the events at the last timestamp). A frame counts the events
per polarity and pixel, ``[T, 2, S, S]``, at ``S = image_size``: event coordinates are mapped
with ``x * S // 128``, which sums ``128 / S`` x ``128 / S`` pixel blocks when ``S`` divides 128
(64 by default, to keep memory small). Frames are normalised as ``log1p(count)`` (float32), a
fixed per-pixel transform that needs no statistics and tames hot pixels; ``expm1`` gives the
counts back.

Memory: ``N * T * 2 * S * S * 4`` bytes, e.g. 0.7 GB for DVS128 Gesture (1,342 recordings) at
T = 16, S = 64, and 3.3 GB for CIFAR10-DVS (10,000) at T = 10, S = 64 (0.8 GB at S = 32).

Splits are per class (stratified) with ``numpy.random.default_rng(seed)``: each class gives
``round(n * val_fraction)`` recordings to val (and, for CIFAR10-DVS, ``round(n * test_fraction)``
to test), the rest to train.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from optuna_spikenas.dataset_catalog import EVENT_DATASETS
from optuna_spikenas.dataset_splits import Dataset, Split
from optuna_spikenas.image_datasets import DatasetError
from optuna_spikenas.input_contract import EventFramesInput

__all__ = [
    "CIFAR10_DVS_CLASSES",
    "DVS_GESTURE_CLASSES",
    "EVENT_DATASET_NAMES",
    "EVENT_DTYPE",
    "SENSOR_SIZE",
    "events_to_frames",
    "load_event_dataset",
    "read_aedat2_dvs128",
    "read_gesture_npy",
]

EVENT_DATASET_NAMES: tuple[str, ...] = EVENT_DATASETS

#: Width and height of the DVS128 sensor of both datasets.
SENSOR_SIZE = 128

#: Events as tonic's readers give them (``tonic.io.events_struct``); ``t`` in microseconds.
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])

#: DVS128 Gesture's class names (tonic's ``DVSGesture.classes``), indexed by label.
DVS_GESTURE_CLASSES: tuple[str, ...] = (
    "Hand clapping",
    "Right hand wave",
    "Left hand wave",
    "Right arm cw",
    "Right arm ccw",
    "Left arm cw",
    "Left arm ccw",
    "Arm roll",
    "Air drums",
    "Air guitar",
    "Other gestures",
)

#: CIFAR10-DVS's class folders, indexed by label.
CIFAR10_DVS_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_INSTALL_HINT = "pip install 'optuna-spikenas[dvs]'"
_GESTURE_URL = "https://research.ibm.com/interactive/dvsgesture/"
_CIFAR10_DVS_URL = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
_GESTURE_FOLDERS = ("ibmGestureTrain", "ibmGestureTest")
# Completed with the dataset's folder.
_GESTURE_HINT = (
    f"DVS128 Gesture ({_GESTURE_URL}) is read in tonic's layout: extract ibmGestureTrain.tar.gz "
    "and ibmGestureTest.tar.gz (what tonic.datasets.DVSGesture downloads) into {root}"
)
_CIFAR10_DVS_HINT = (
    f"download the ten class zips of CIFAR10-DVS from {_CIFAR10_DVS_URL} and extract them "
    "into {root} (airplane/*.aedat ... truck/*.aedat)"
)
_LABEL_FILE = re.compile(r"^(\d+)\.npy$")


# --------------------------------------------------------------------------------------------
# Loading


def load_event_dataset(
    name: str,
    path: str | Path,
    timesteps: int,
    seed: int,
    val_fraction: float,
    *,
    test_fraction: float = 0.1,
    image_size: int = 64,
) -> Dataset:
    """Load a DVS dataset as frame sequences, split per class.

    Args:
        name: One of :data:`EVENT_DATASET_NAMES`.
        path: The dataset's folder (see the module docstring for the layouts).
        timesteps: Frames per recording ``T``, equal time bins (the network's timesteps).
        seed: Seed of the split; the same seed always gives the same split.
        val_fraction: Share of each class's training recordings put in val, in ``(0, 0.5)``.
        test_fraction: Share of each class put in test, in ``(0, 0.5)``; CIFAR10-DVS only
            (DVS128 Gesture keeps its official test split).
        image_size: Frame size ``S`` (1 .. 128); events are binned into ``S`` x ``S`` pixels.

    Returns:
        The :class:`~optuna_spikenas.data.Dataset`: each split's ``images`` are float32
        ``log1p(count)`` frames ``[N, T, 2, S, S]``, ``labels`` int64 ``[N]``;
        ``in_channels`` is 2 (polarities) and ``image_size`` is ``S``.

    Raises:
        DatasetError: Unknown name, invalid arguments, tonic not installed, missing folders or
            files, or a damaged event file (one line naming the file).
    """
    if name not in EVENT_DATASET_NAMES:
        known = ", ".join(repr(n) for n in EVENT_DATASET_NAMES)
        raise DatasetError(f"unknown event dataset {name!r}; known event datasets are {known}")
    _check_int("timesteps", timesteps, 1, None)
    _check_int("seed", seed, 0, None)
    _check_int("image_size", image_size, 1, SENSOR_SIZE)
    _check_fraction("val_fraction", val_fraction)
    if name == "cifar10-dvs":
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise DatasetError("val_fraction + test_fraction must be below 1")
    to_frame = _tonic_to_frame()
    rng = np.random.default_rng(seed)

    if name == "dvs128-gesture":
        root = _find_root(Path(path), "DVSGesture", _GESTURE_FOLDERS[0], _GESTURE_HINT)
        train_files, train_labels = _gesture_files(root, _GESTURE_FOLDERS[0])
        test_files, test_labels = _gesture_files(root, _GESTURE_FOLDERS[1])
        train_idx, val_idx = _split_per_class(train_labels, (val_fraction,), rng)
        parts = [
            (train_files, train_labels, train_idx),
            (train_files, train_labels, val_idx),
            (test_files, test_labels, np.arange(len(test_files))),
        ]
        reader, classes = read_gesture_npy, DVS_GESTURE_CLASSES
    else:
        root = _find_root(Path(path), "CIFAR10DVS", CIFAR10_DVS_CLASSES[0], _CIFAR10_DVS_HINT)
        files, labels = _cifar10_dvs_files(root)
        splits = _split_per_class(labels, (val_fraction, test_fraction), rng)
        parts = [(files, labels, idx) for idx in splits]
        reader, classes = read_aedat2_dvs128, CIFAR10_DVS_CLASSES

    for split_name, (_, _, idx) in zip(("train", "val", "test"), parts, strict=True):
        if len(idx) == 0:
            raise DatasetError(
                f"the {split_name} split of {name!r} would be empty; "
                "choose other fractions or check the dataset folder"
            )
    train, val, test = (
        _load_split([paths[i] for i in idx], targets[idx], reader, to_frame, timesteps, image_size)
        for paths, targets, idx in parts
    )
    contract = EventFramesInput(
        dataset=name,
        shape=(timesteps, 2, image_size, image_size),
        sensor_size=SENSOR_SIZE,
        classes=classes,
    )
    return Dataset(
        name=name,
        num_classes=len(classes),
        in_channels=2,
        image_size=image_size,
        train=train,
        val=val,
        test=test,
        input_contract=contract,
    )


def _load_split(
    files: list[Path],
    labels: np.ndarray,
    reader: Callable[[Path], np.ndarray],
    to_frame: type,
    timesteps: int,
    image_size: int,
) -> Split:
    """Read ``files`` straight into one preallocated ``[N, T, 2, S, S]`` float32 array."""
    images = np.empty((len(files), timesteps, 2, image_size, image_size), dtype=np.float32)
    for i, file in enumerate(files):
        counts = _frames(file, reader(file), to_frame, timesteps, image_size)
        np.log1p(counts, out=images[i], dtype=np.float32)
    return Split(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
    )


def _frames(
    file: Path, events: np.ndarray, to_frame: type, timesteps: int, image_size: int
) -> np.ndarray:
    try:
        return events_to_frames(events, timesteps, image_size, to_frame=to_frame)
    except ValueError as exc:
        raise DatasetError(f"event file {file} could not be turned into frames: {exc}") from None


# --------------------------------------------------------------------------------------------
# Events to frames


def events_to_frames(
    events: np.ndarray, timesteps: int, image_size: int = 64, *, to_frame: type | None = None
) -> np.ndarray:
    """Event counts per time bin, polarity and pixel: ``[T, 2, S, S]`` (int16 or float64 zeros).

    ``events`` is a structured array with fields ``x``, ``y`` (0 .. 127), ``p`` and ``t``
    (:data:`EVENT_DTYPE`). The ``T = timesteps`` equal time bins of width
    ``W = ceil((t_last - t0 + 1) / T)`` start at the first event ``t0`` and cover every event;
    coordinates map to ``x * S // 128``. Binning is tonic's ``ToFrame`` (``to_frame``, the class,
    imported when not given); the total count is checked against the number of events (tonic
    counts in int16).

    Raises:
        ValueError: Coordinates outside the sensor or a count beyond int16 in one bin.
        DatasetError: tonic is not installed.
    """
    to_frame = _tonic_to_frame() if to_frame is None else to_frame
    sensor_size = (image_size, image_size, 2)
    if len(events) == 0:
        return np.zeros((timesteps, 2, image_size, image_size))
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if x.min() < 0 or y.min() < 0 or x.max() >= SENSOR_SIZE or y.max() >= SENSOR_SIZE:
        raise ValueError(f"event coordinates outside the {SENSOR_SIZE}x{SENSOR_SIZE} sensor")
    scaled = np.empty(len(events), dtype=EVENT_DTYPE)
    scaled["x"] = x * image_size // SENSOR_SIZE
    scaled["y"] = y * image_size // SENSOR_SIZE
    scaled["p"] = events["p"].astype(bool)
    scaled["t"] = events["t"]
    if np.any(np.diff(scaled["t"]) < 0):  # tonic's slicing needs times in order
        scaled = scaled[np.argsort(scaled["t"], kind="stable")]
    t0 = int(scaled["t"][0])
    width = (int(scaled["t"][-1]) - t0 + timesteps) // timesteps  # ceil((span + 1) / T)
    frames = to_frame(
        sensor_size=sensor_size,
        time_window=width,
        start_time=t0,
        end_time=t0 + timesteps * width,
    )(scaled)
    if frames.shape != (timesteps, 2, image_size, image_size):
        raise ValueError(f"tonic's ToFrame gave frames of shape {list(frames.shape)}")
    if int(frames.sum(dtype=np.int64)) != len(events):
        raise ValueError(
            "more than 32767 events at one pixel in one time bin (tonic counts in int16); "
            "use more timesteps"
        )
    return frames


def _tonic_to_frame() -> type:
    """tonic's ``ToFrame`` class, or a one-line ``DatasetError`` saying how to install tonic."""
    try:
        from tonic.transforms import ToFrame
    except ImportError:
        raise DatasetError(f"event datasets need the tonic package: {_INSTALL_HINT}") from None
    return ToFrame


# --------------------------------------------------------------------------------------------
# Readers


def read_gesture_npy(path: Path) -> np.ndarray:
    """One DVS128 Gesture recording in tonic's layout: ``[N, 4]`` numbers x, y, p, t (ms).

    Returns :data:`EVENT_DTYPE` events with ``t`` in microseconds (``t * 1000``, as tonic's
    ``DVSGesture``). Never unpickles. Raises ``DatasetError`` naming the file if it is damaged.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"event file {path} is truncated or not a .npy file: {exc}") from None
    if (
        not isinstance(array, np.ndarray)
        or array.ndim != 2
        or array.shape[1] != 4
        or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))
    ):
        shape = list(getattr(array, "shape", []))
        raise DatasetError(
            f"event file {path} should hold numbers [N, 4] (x, y, p, t), "
            f"got {getattr(array, 'dtype', type(array).__name__)} {shape}"
        )
    if not np.all(np.isfinite(array)) or not np.all(np.isin(array[:, 2], (0, 1))):
        raise DatasetError(f"event file {path} is damaged: non-finite values or polarity not 0/1")
    xy = array[:, :2]
    if np.any(xy < 0) or np.any(xy >= SENSOR_SIZE) or np.any(xy != np.floor(xy)):
        raise DatasetError(f"event file {path} is damaged: x or y outside 0 .. {SENSOR_SIZE - 1}")
    events = np.empty(len(array), dtype=EVENT_DTYPE)
    events["x"] = array[:, 0]
    events["y"] = array[:, 1]
    events["p"] = array[:, 2] > 0
    events["t"] = np.rint(array[:, 3].astype(np.float64) * 1000.0)
    return events


def read_aedat2_dvs128(path: Path) -> np.ndarray:
    """One CIFAR10-DVS recording: a jAER AEDAT 2.0 file of a DVS128 sensor.

    Format: header lines starting with ``#`` (the first is ``#!AER-DAT2.0``), then 8 bytes per
    event, a big-endian ``uint32`` address and a big-endian ``uint32`` timestamp in microseconds.
    Address bit 0 is the polarity, bits 1-7 and 8-14 the two coordinates; they are mapped as
    SpikingJelly maps CIFAR10-DVS (x = 127 - bits 8-14, y = 127 - bits 1-7, p = 1 - bit 0).

    Written here rather than taken from ``tonic.io``: ``tonic.io.read_dvs_128`` fails in tonic
    1.7 (it unpacks a 3-tuple header into two names) and ``tonic.io.get_aer_events_from_file``
    silently drops a truncated last event. Raises ``DatasetError`` naming a damaged file.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"event file {path} cannot be read: {exc}") from None
    if not data.startswith(b"#!AER-DAT"):
        raise DatasetError(f"event file {path} is not an AEDAT file (no '#!AER-DAT' header)")
    version = data[9 : data.find(b"\n")].strip().decode("ascii", "replace")
    if not version.startswith("2."):
        raise DatasetError(f"event file {path} is AEDAT {version}; CIFAR10-DVS files are AEDAT 2.0")
    start = 0
    while data[start : start + 1] == b"#":  # DVS128 addresses start with a 0 byte, never '#'
        end = data.find(b"\n", start)
        if end < 0:
            raise DatasetError(f"event file {path} is truncated inside its header")
        start = end + 1
    payload = len(data) - start
    if payload % 8:
        raise DatasetError(
            f"event file {path} is truncated or damaged: {payload} bytes of events is not a "
            "whole number of 8-byte events"
        )
    raw = np.frombuffer(data, dtype=">u4", offset=start)
    address, timestamp = raw[0::2], raw[1::2]
    events = np.empty(len(address), dtype=EVENT_DTYPE)
    events["x"] = 127 - ((address >> 8) & 0x7F)
    events["y"] = 127 - ((address >> 1) & 0x7F)
    events["p"] = (address & 1) == 0
    events["t"] = timestamp
    return events


# --------------------------------------------------------------------------------------------
# Folders and splits


def _find_root(path: Path, tonic_folder: str, marker: str, hint: str) -> Path:
    """``path`` itself, or ``path / tonic_folder`` (tonic's ``save_to``) when only that holds
    ``marker``."""
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist; {hint.format(root=path)}")
    if not (path / marker).is_dir() and (path / tonic_folder / marker).is_dir():
        return path / tonic_folder
    return path


def _gesture_files(root: Path, name: str) -> tuple[list[Path], np.ndarray]:
    """``(files, labels)`` of ``root/name/<user>/<label>.npy``, in sorted order."""
    folder, hint = root / name, _GESTURE_HINT.format(root=root)
    if not folder.is_dir():
        raise DatasetError(f"DVS128 Gesture folder {folder} is missing; {hint}")
    files: list[Path] = []
    labels: list[int] = []
    for file in sorted(folder.glob("*/*.npy")):
        match = _LABEL_FILE.match(file.name)
        label = int(match.group(1)) if match else -1
        if not 0 <= label < len(DVS_GESTURE_CLASSES):
            raise DatasetError(
                f"unexpected file {file}: DVS128 Gesture files are named <label>.npy with "
                f"labels 0 .. {len(DVS_GESTURE_CLASSES) - 1}"
            )
        files.append(file)
        labels.append(label)
    if not files:
        raise DatasetError(
            f"DVS128 Gesture folder {folder} has no <user>/<label>.npy files; {hint}"
        )
    return files, np.asarray(labels, dtype=np.int64)


def _cifar10_dvs_files(root: Path) -> tuple[list[Path], np.ndarray]:
    """``(files, labels)`` of ``root/<class>/**/*.aedat``, in sorted order."""
    hint = _CIFAR10_DVS_HINT.format(root=root)
    missing = [c for c in CIFAR10_DVS_CLASSES if not (root / c).is_dir()]
    if missing:
        raise DatasetError(
            f"CIFAR10-DVS folder {root} lacks the class folders {', '.join(missing)}; {hint}"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CIFAR10_DVS_CLASSES):
        found = sorted((root / name).rglob("*.aedat"))
        if not found:
            converted = any((root / name).rglob("*.aedat4"))
            what = "only tonic's .aedat4 files, which are not read" if converted else "no files"
            raise DatasetError(
                f"CIFAR10-DVS class folder {root / name} has {what}: .aedat files are needed; "
                f"{hint}"
            )
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def _split_per_class(
    labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Sorted, disjoint indices ``[rest, part_1, ...]``: each class gives
    ``round(n * fraction)`` of its members to each part, chosen by an ``rng`` permutation."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for k, fraction in enumerate(fractions, start=1):
            count = int(round(len(members) * fraction))
            parts[k].append(members[start : start + count])
            start += count
        parts[0].append(members[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def _check_int(what: str, value: object, low: int, high: int | None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or int(value) < low or (high is not None and int(value) > high):  # type: ignore[call-overload]
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise DatasetError(f"{what} must be an integer {bounds}, got {value!r}")


def _check_fraction(what: str, value: object) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) < 0.5:  # type: ignore[arg-type]
        raise DatasetError(f"{what} must be strictly between 0 and 0.5, got {value!r}")
