"""Readers for image datasets in their official on-disk formats: CIFAR-10, CIFAR-100, TinyImageNet.

Every reader takes the folder the user downloaded to (the extracted folder itself, or the folder
holding it) and returns :class:`OfficialSplits`: the official training set and the official test
set as **uint8 images ``[N, C, H, W]`` (channels first)** and **int64 labels ``[N]``**. Splitting,
normalisation and caching are :mod:`optuna_spikenas.data`'s business, not this module's.

* CIFAR-10 / CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html), either version:

  - the *python version* (``cifar-10-batches-py/data_batch_1 .. 5``, ``test_batch``;
    ``cifar-100-python/train``, ``test``): pickled dicts with ``b"data"`` (uint8 ``[N, 3072]``)
    and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100). They are read with a
    restricted unpickler that can rebuild numpy arrays and nothing else: a pickle that asks for
    any other global (``os.system``, ...) is refused with :class:`DatasetError` before anything
    is called;
  - the *binary version* (``cifar-10-batches-bin/data_batch_1 .. 5.bin``, ``test_batch.bin``:
    records of 1 label byte + 3072 pixel bytes; ``cifar-100-binary/train.bin``, ``test.bin``:
    2 label bytes (coarse, fine) + 3072 pixel bytes).

  The 3072 pixel bytes are the red, green and blue 32x32 planes, each row-major. CIFAR-100 uses
  the 100 fine labels. With ``verify=True`` each python-version file's md5 is compared with the
  published one (:data:`CIFAR_MD5`); the CIFAR page publishes md5s only for the archives of the
  binary version, not for the extracted ``.bin`` files, so for those ``verify`` checks the
  documented exact file sizes instead.
* TinyImageNet-200 (http://cs231n.stanford.edu/tiny-imagenet-200.zip): ``wnids.txt``,
  ``train/<wnid>/images/*.JPEG`` (the training set) and ``val/images/*.JPEG`` with
  ``val/val_annotations.txt`` (the official validation set, returned as the *test* set: the
  official test labels are not public). JPEGs are decoded with Pillow (greyscale ones converted
  to RGB) straight into one preallocated uint8 array: 110,000 x 3 x 64 x 64 bytes, about 1.35 GB.
  Label ``i`` is the ``i``-th wnid in sorted order (the order of an ``ImageFolder`` over
  ``train/``).

Every problem (a missing path or file, a truncated batch, a pickle that is not a CIFAR dict, an
unreadable JPEG) raises :class:`DatasetError` with one line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optuna_spikenas.errors import SpikeNASError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

__all__ = [
    "CIFAR100_CLASSES",
    "CIFAR100_URL",
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "CIFAR_MD5",
    "DatasetError",
    "OfficialSplits",
    "TINYIMAGENET_URL",
    "read_cifar10",
    "read_cifar100",
    "read_tinyimagenet",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR100_URL = CIFAR10_URL
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

#: Published md5s of the python-version files (as listed with the CIFAR archives' contents).
CIFAR_MD5: dict[str, str] = {
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}

#: CIFAR-10's class names by label (``batches.meta``'s ``label_names``).
CIFAR10_CLASSES: tuple[str, ...] = tuple(
    "airplane automobile bird cat deer dog frog horse ship truck".split()
)
#: CIFAR-100's fine class names by label (``meta``'s ``fine_label_names``: alphabetical).
CIFAR100_CLASSES: tuple[str, ...] = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()
)

_CIFAR_PIXELS = 3 * 32 * 32
_TINY_SIZE = 64


class DatasetError(SpikeNASError):
    """One clear line for the user: what is missing/wrong and what to do."""


@dataclass(frozen=True)
class OfficialSplits:
    """A dataset's official training and test sets, as read from disk.

    Attributes:
        train_images, test_images: uint8 ``[N, C, H, W]`` (channels first).
        train_labels, test_labels: int64 ``[N]``, in ``0 .. num_classes - 1``.
        num_classes: The dataset's number of classes (even if a class has no image here).
        source: Where and in which format it was found, for messages.
        class_names: The class names by label (CIFAR's, TinyImageNet's sorted wnids).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str
    class_names: tuple[str, ...] = ()


# --- CIFAR ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cifar:
    """Names and layouts of one CIFAR dataset's two versions."""

    title: str
    classes: int
    names: tuple[str, ...]  # the class names by label
    python_dir: str
    python_train: tuple[str, ...]
    python_test: str
    label_key: bytes
    binary_dir: str
    binary_train: tuple[str, ...]
    binary_test: str
    label_bytes: int  # label bytes before each record's pixels; the last one is the label used
    images_per_binary: dict[str, int]  # documented record counts (verify = true checks them)
    archives: str  # what to download, for messages


_CIFAR10 = _Cifar(
    title="CIFAR-10",
    classes=10,
    names=CIFAR10_CLASSES,
    python_dir="cifar-10-batches-py",
    python_train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    python_test="test_batch",
    label_key=b"labels",
    binary_dir="cifar-10-batches-bin",
    binary_train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    binary_test="test_batch.bin",
    label_bytes=1,
    images_per_binary={
        **{f"data_batch_{i}.bin": 10_000 for i in range(1, 6)},
        "test_batch.bin": 10_000,
    },
    archives="cifar-10-python.tar.gz (or cifar-10-binary.tar.gz)",
)

_CIFAR100 = _Cifar(
    title="CIFAR-100",
    classes=100,
    names=CIFAR100_CLASSES,
    python_dir="cifar-100-python",
    python_train=("train",),
    python_test="test",
    label_key=b"fine_labels",
    binary_dir="cifar-100-binary",
    binary_train=("train.bin",),
    binary_test="test.bin",
    label_bytes=2,
    images_per_binary={"train.bin": 50_000, "test.bin": 10_000},
    archives="cifar-100-python.tar.gz (or cifar-100-binary.tar.gz)",
)


def read_cifar10(path: str | Path, verify: bool = False) -> OfficialSplits:
    """Read CIFAR-10 (python or binary version) from ``path``.

    Args:
        path: ``cifar-10-batches-py`` / ``cifar-10-batches-bin`` or the folder holding it.
        verify: Check each file against its published md5 (python version) or documented
            size (binary version) before reading it.

    Returns:
        50,000 training and 10,000 test images (for the full dataset), uint8 ``[N, 3, 32, 32]``.

    Raises:
        DatasetError: Missing, truncated, corrupted or unsafe files.
    """
    return _read_cifar(_CIFAR10, Path(path), verify)


def read_cifar100(path: str | Path, verify: bool = False) -> OfficialSplits:
    """Read CIFAR-100 (python or binary version, fine labels) from ``path``.

    Args:
        path: ``cifar-100-python`` / ``cifar-100-binary`` or the folder holding it.
        verify: As for :func:`read_cifar10`.

    Returns:
        50,000 training and 10,000 test images (for the full dataset), uint8 ``[N, 3, 32, 32]``.

    Raises:
        DatasetError: Missing, truncated, corrupted or unsafe files.
    """
    return _read_cifar(_CIFAR100, Path(path), verify)


def _read_cifar(spec: _Cifar, root: Path, verify: bool) -> OfficialSplits:
    folder, version = _locate_cifar(spec, root)
    python = version == "python"
    read = _read_cifar_pickle if python else _read_cifar_binary
    train_names = spec.python_train if python else spec.binary_train
    test_name = spec.python_test if python else spec.binary_test
    for name in (*train_names, test_name):  # a missing file is reported before any is read
        _require_file(folder / name, f"{spec.title} file", _cifar_hint(spec))
    train = [read(spec, folder / name, verify) for name in train_names]
    test_images, test_labels = read(spec, folder / test_name, verify)
    return OfficialSplits(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        num_classes=spec.classes,
        source=f"{spec.title} ({version} version) at {folder}",
        class_names=spec.names,
    )


def _cifar_hint(spec: _Cifar) -> str:
    return f"download {spec.archives} from {CIFAR10_URL} and extract it (tar xzf)"


def _locate_cifar(spec: _Cifar, root: Path) -> tuple[Path, str]:
    """The folder holding the batches and its version: ``root`` itself or its extracted folder."""
    _require_folder(root, f"{spec.title} dataset path", _cifar_hint(spec))
    for folder, version in ((root / spec.python_dir, "python"), (root / spec.binary_dir, "binary")):
        if folder.is_dir():
            return folder, version
    if any((root / name).is_file() for name in (*spec.python_train, spec.python_test)):
        return root, "python"
    if any((root / name).is_file() for name in (*spec.binary_train, spec.binary_test)):
        return root, "binary"
    raise DatasetError(
        f"no {spec.title} in {root}: expected {spec.python_dir}/ or {spec.binary_dir}/ there "
        f"(or path pointing at it); {_cifar_hint(spec)}"
    )


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's dicts of bytes, lists and numpy arrays; refuses every other global."""

    def __init__(self, file: io.BufferedIOBase, what: str) -> None:
        super().__init__(file, encoding="bytes")  # CIFAR was pickled by Python 2
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise DatasetError(
                f"{self._what} is refused: its pickle asks for {module}.{name}, "
                "but a CIFAR batch only holds numpy arrays, bytes and lists"
            )
        return found


class _RefusedCall(Exception):
    """An allowed global called with arguments a CIFAR pickle never uses."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle bytes with protocol 2, latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _RefusedCall(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin-1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickled by numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickled by numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,  # bytes re-pickled by Python 3 with protocol 2
}


def _read_cifar_pickle(spec: _Cifar, path: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_bytes(path, spec.title)
    if verify:
        key = f"{spec.python_dir}/{path.name}"
        _check_md5(f"{spec.title} file {path}", raw, CIFAR_MD5[key], _cifar_hint(spec))
    try:
        entry = _CifarUnpickler(io.BytesIO(raw), f"{spec.title} file {path}").load()
    except DatasetError:
        raise
    except _RefusedCall as exc:
        raise DatasetError(
            f"{spec.title} file {path} is refused: its pickle calls {exc}, which no CIFAR "
            "batch does"
        ) from None
    except Exception as exc:  # anything pickle/numpy raise on damaged bytes: one line instead
        raise DatasetError(
            f"{spec.title} file {path} is truncated or corrupted ({type(exc).__name__}); "
            f"{_cifar_hint(spec)}"
        ) from None
    if not isinstance(entry, dict):
        raise DatasetError(f"{spec.title} file {path} is not a CIFAR batch: it holds no dict")
    data = _field(entry, b"data")
    labels = _field(entry, spec.label_key)
    key = spec.label_key.decode()
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _CIFAR_PIXELS
    ):
        shape = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else "missing"
        raise DatasetError(
            f"{spec.title} file {path} is not a {spec.title} batch: 'data' must be uint8 "
            f"[N, {_CIFAR_PIXELS}], got {shape}"
        )
    labels = _as_labels(labels, data.shape[0], spec.classes, f"{spec.title} file {path}: {key!r}")
    return data.reshape(-1, 3, 32, 32), labels


def _field(entry: dict, key: bytes) -> Any:
    """``entry[key]``, also accepting a ``str`` key (a batch re-pickled by Python 3)."""
    return entry[key] if key in entry else entry.get(key.decode())


def _as_labels(values: Any, count: int, classes: int, where: str) -> np.ndarray:
    """Check that ``values`` are ``count`` integers in ``0 .. classes - 1``; return int64."""
    if not isinstance(values, list | np.ndarray):
        raise DatasetError(f"{where} must be a list of {count} labels")
    try:
        labels = np.asarray(values)
    except ValueError:
        raise DatasetError(f"{where} must be a list of {count} labels") from None
    if labels.shape != (count,) or (count and not np.issubdtype(labels.dtype, np.integer)):
        raise DatasetError(f"{where} must be {count} integer labels, one per image")
    if count and (labels.min() < 0 or labels.max() >= classes):
        raise DatasetError(f"{where} has labels outside 0 .. {classes - 1}")
    return labels.astype(np.int64)


def _read_cifar_binary(spec: _Cifar, path: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    record = spec.label_bytes + _CIFAR_PIXELS
    raw = _read_bytes(path, spec.title)
    if verify:
        expected = spec.images_per_binary[path.name] * record
        if len(raw) != expected:
            raise DatasetError(
                f"{spec.title} file {path} has {len(raw)} bytes, the official file has {expected}; "
                f"{_cifar_hint(spec)}"
            )
    if not raw or len(raw) % record:
        raise DatasetError(
            f"{spec.title} file {path} is truncated or corrupted: {len(raw)} bytes is not a whole "
            f"number of {record}-byte records; {_cifar_hint(spec)}"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = records[:, spec.label_bytes - 1].astype(np.int64)  # CIFAR-100: (coarse, fine)
    if labels.max() >= spec.classes:
        raise DatasetError(
            f"{spec.title} file {path} is corrupted or not {spec.title}: a label is "
            f"{labels.max()}, above {spec.classes - 1}"
        )
    images = records[:, spec.label_bytes :].reshape(-1, 3, 32, 32)
    return images, labels


# --- TinyImageNet ---------------------------------------------------------------------------


def read_tinyimagenet(path: str | Path, workers: int | None = None) -> OfficialSplits:
    """Read TinyImageNet-200 from ``path``: the training set and the official validation set.

    Args:
        path: ``tiny-imagenet-200`` or the folder holding it.
        workers: Threads decoding JPEGs (Pillow releases the GIL); default ``min(8, CPUs)``.

    Returns:
        100,000 training images (500 per class) and 10,000 validation images as the test set
        (for the full dataset), uint8 ``[N, 3, 64, 64]``.

    Raises:
        DatasetError: A missing folder or file, a malformed ``wnids.txt`` or annotations line,
            or an unreadable, corrupt or not 64x64 JPEG.
    """
    root = _locate_tinyimagenet(Path(path))
    hint = f"download {TINYIMAGENET_URL} and unzip it in {root.parent}"
    wnids_file = root / "wnids.txt"
    _require_file(wnids_file, "TinyImageNet file", hint)
    wnids = [line.strip() for line in _read_text(wnids_file).splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids) or any(_unsafe_name(w) for w in wnids):
        raise DatasetError(f"TinyImageNet file {wnids_file} must list distinct wnids, one a line")
    wnids.sort()
    label_of = {wnid: i for i, wnid in enumerate(wnids)}

    train_files: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        _require_folder(folder, "TinyImageNet folder", hint)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        if not files:
            raise DatasetError(f"TinyImageNet folder {folder} has no JPEG images; {hint}")
        train_files += files
        train_labels += [label_of[wnid]] * len(files)

    annotations = root / "val" / "val_annotations.txt"
    _require_file(annotations, "TinyImageNet file", hint)
    test_files: list[Path] = []
    test_labels: list[int] = []
    for number, line in enumerate(_read_text(annotations).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or _unsafe_name(fields[0]) or fields[1] not in label_of:
            raise DatasetError(
                f"TinyImageNet file {annotations} line {number} is not "
                "'FILENAME<tab>WNID<tab>...' with a wnid from wnids.txt"
            )
        test_files.append(root / "val" / "images" / fields[0])
        test_labels.append(label_of[fields[1]])
    if not test_files:
        raise DatasetError(f"TinyImageNet file {annotations} lists no images; {hint}")
    for file in test_files:
        _require_file(file, "TinyImageNet image", hint)

    images = _decode_jpegs([*train_files, *test_files], workers, hint)
    n_train = len(train_files)
    return OfficialSplits(
        train_images=images[:n_train],
        train_labels=np.asarray(train_labels, dtype=np.int64),
        test_images=images[n_train:],
        test_labels=np.asarray(test_labels, dtype=np.int64),
        num_classes=len(wnids),
        source=f"TinyImageNet-200 at {root}",
        class_names=tuple(wnids),
    )


def _locate_tinyimagenet(root: Path) -> Path:
    hint = f"download {TINYIMAGENET_URL} and unzip it in {root}"
    _require_folder(root, "TinyImageNet dataset path", hint)
    if (root / "tiny-imagenet-200").is_dir():
        return root / "tiny-imagenet-200"
    if (root / "wnids.txt").is_file():
        return root
    raise DatasetError(
        f"no TinyImageNet-200 in {root}: expected tiny-imagenet-200/ (or path pointing at it, "
        f"with wnids.txt, train/ and val/); {hint}"
    )


def _unsafe_name(name: str) -> bool:
    """A name that is not one plain file or folder name (no separators, no ``..``)."""
    return not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name


def _decode_jpegs(files: list[Path], workers: int | None, hint: str) -> np.ndarray:
    """Decode ``files`` into one preallocated uint8 ``[N, 3, 64, 64]`` array."""
    from PIL import Image  # deferred: only TinyImageNet needs Pillow

    out = np.empty((len(files), 3, _TINY_SIZE, _TINY_SIZE), dtype=np.uint8)

    def decode(i: int) -> None:
        file = files[i]
        try:
            with Image.open(file) as image:
                if image.size != (_TINY_SIZE, _TINY_SIZE):
                    raise DatasetError(
                        f"TinyImageNet image {file} is {image.size[0]}x{image.size[1]}, "
                        f"not {_TINY_SIZE}x{_TINY_SIZE}; {hint}"
                    )
                pixels = np.asarray(image.convert("RGB"))
        except DatasetError:
            raise
        except Exception as exc:  # anything Pillow raises on a damaged file: one line instead
            detail = " ".join(str(exc).split())[:120]
            raise DatasetError(
                f"TinyImageNet image {file} is unreadable or corrupt ({detail}); {hint}"
            ) from None
        out[i] = pixels.transpose(2, 0, 1)

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(decode, range(len(files))):  # re-raises the first failure, in order
            pass
    return out


# --- shared checks --------------------------------------------------------------------------


def _require_folder(path: Path, what: str, hint: str) -> None:
    if path.is_dir():
        return
    if path.exists():
        raise DatasetError(f"{what} {path} is a file, not a folder (extract the archive); {hint}")
    raise DatasetError(f"{what} {path} does not exist; {hint}")


def _require_file(path: Path, what: str, hint: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{what} {path} is missing; {hint}")


def _read_bytes(path: Path, title: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{title} file {path} cannot be read: {exc.strerror}") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"TinyImageNet file {path} cannot be read as text: {exc}") from None


def _check_md5(what: str, raw: bytes, expected: str, hint: str) -> None:
    actual = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"{what} has md5 {actual}, the published md5 is {expected} "
            f"(incomplete or altered download); {hint}"
        )
