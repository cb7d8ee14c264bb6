"""Tests for CIFAR-10/100 and TinyImageNet loading (optuna_spikenas.image_datasets, data).

Small files in each dataset's real on-disk format are written to ``tmp_path`` and loaded through
:func:`load_dataset`, the code users run; pixels are un-normalised and compared with what was
written. Also: the restricted unpickler, checksums, every error path, and :func:`augment_batch`.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from optuna_spikenas import data
from optuna_spikenas.config import ConfigError, config_from_dict
from optuna_spikenas.data import (
    AUGMENTATIONS,
    DATASET_NAMES,
    NORMALISATION,
    PATH_DATASETS,
    Dataset,
    DatasetError,
    augment_batch,
    load_dataset,
)
from optuna_spikenas.image_datasets import CIFAR_MD5, read_cifar10, read_tinyimagenet
from optuna_spikenas.study_setup import study_dataset


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._read_official.cache_clear()
    yield
    data._read_official.cache_clear()


# --- writers of the real formats ------------------------------------------------------------


def _pixels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _balanced_labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes)


class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote CIFAR: every str/bytes as a BINSTRING (no
    ``_codecs.encode`` calls, which Python 3 uses for bytes under protocol 2)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: str | bytes) -> None:
        raw = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str


def _dump_like_cifar(entry: object, path: Path) -> None:
    """Pickle ``entry`` as the real CIFAR files are: Python 2 strings, protocol 2, numpy 1.x's
    ``numpy.core.multiarray._reconstruct``."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(entry)
    raw = buffer.getvalue()
    assert b"_codecs" not in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def write_cifar(
    parent: Path,
    name: str,
    version: str,
    seed: int = 0,
    train_per_file: int = 10,
    n_test: int = 12,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write a small CIFAR-10/100 in the python or binary version under ``parent``.

    Returns the extracted folder and the written official arrays (train_x, train_y, test_x,
    test_y; x uint8 [N, 3072], y int).
    """
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    if name == "cifar10":
        folder = parent / ("cifar-10-batches-py" if version == "python" else "cifar-10-batches-bin")
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_file = "test_batch"
    else:
        folder = parent / ("cifar-100-python" if version == "python" else "cifar-100-binary")
        train_files, test_file = ["train"], "test"
        train_per_file = 300  # three images per fine class
    folder.mkdir(parents=True)
    written: dict[str, list[np.ndarray]] = {
        "train_x": [],
        "train_y": [],
        "test_x": [],
        "test_y": [],
    }
    files = [(f, "train") for f in train_files] + [(test_file, "test")]
    for file, part in files:
        n = train_per_file if part == "train" else n_test
        x, y = _pixels(rng, n), _balanced_labels(rng, n, classes)
        written[f"{part}_x"].append(x)
        written[f"{part}_y"].append(y)
        if version == "python":
            entry = {
                b"batch_label": f"{part} batch".encode(),
                b"data": x,
                b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            }
            if name == "cifar10":
                entry[b"labels"] = [int(v) for v in y]
            else:
                entry[b"fine_labels"] = [int(v) for v in y]
                entry[b"coarse_labels"] = [int(v) // 5 for v in y]
            _dump_like_cifar(entry, folder / file)
        else:
            labels = y[:, None].astype(np.uint8)
            if name == "cifar100":
                labels = np.concatenate([(labels // 5), labels], axis=1)  # coarse, fine
            (folder / f"{file}.bin").write_bytes(np.concatenate([labels, x], axis=1).tobytes())
    if version == "python":
        meta = "batches.meta" if name == "cifar10" else "meta"
        _dump_like_cifar({b"label_names": [b"a"] * classes}, folder / meta)
    arrays = {key: np.concatenate(value) for key, value in written.items()}
    return folder, arrays


def _unnormalise(images: torch.Tensor, name: str) -> np.ndarray:
    """Back to uint8 ``[N, 3072]`` (CIFAR layout) from a normalised ``[N, 3, H, W]`` split."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORMALISATION[name])
    pixels = ((images.double() * std + mean) * 255.0).numpy()
    assert np.abs(pixels - np.round(pixels)).max() < 1e-3  # normalisation is exactly invertible
    return np.round(pixels).astype(np.uint8).reshape(len(images), -1)


def _match_rows(split_x: np.ndarray, written_x: np.ndarray) -> np.ndarray:
    """Index into ``written_x`` of each row of ``split_x`` (each must appear exactly once)."""
    where = {row.tobytes(): i for i, row in enumerate(written_x)}
    assert len(where) == len(written_x)  # random images are distinct
    return np.array([where[row.tobytes()] for row in split_x])


# --- CIFAR: loading, round trip, splits -----------------------------------------------------

CIFAR_CASES = [
    ("cifar10", "python"),
    ("cifar10", "binary"),
    ("cifar100", "python"),
    ("cifar100", "binary"),
]


@pytest.mark.parametrize("point_at", ["folder", "parent"])
@pytest.mark.parametrize(("name", "version"), CIFAR_CASES)
def test_cifar_round_trips_and_splits_the_official_sets(tmp_path, name, version, point_at):
    folder, written = write_cifar(tmp_path, name, version)
    ds = load_dataset(
        name, seed=3, val_fraction=0.2, path=folder if point_at == "folder" else tmp_path
    )

    classes = 10 if name == "cifar10" else 100
    assert (ds.name, ds.num_classes, ds.in_channels, ds.image_size) == (name, classes, 3, 32)
    assert ds.augmentation == "crop-flip"
    for split in (ds.train, ds.val, ds.test):
        assert split.images.dtype == torch.float32 and split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (3, 32, 32)

    # test is the official test set, in file order, pixel for pixel
    assert np.array_equal(_unnormalise(ds.test.images, name), written["test_x"])
    assert ds.test.labels.tolist() == written["test_y"].tolist()

    # train and val are disjoint, cover the official training set, and keep each image's label
    train_idx = _match_rows(_unnormalise(ds.train.images, name), written["train_x"])
    val_idx = _match_rows(_unnormalise(ds.val.images, name), written["train_x"])
    assert not set(train_idx) & set(val_idx)
    assert sorted([*train_idx, *val_idx]) == list(range(len(written["train_x"])))
    assert np.array_equal(ds.train.labels.numpy(), written["train_y"][train_idx])
    assert np.array_equal(ds.val.labels.numpy(), written["train_y"][val_idx])

    # stratified: every class gives round(n_c * 0.2) images to val
    counts = np.bincount(written["train_y"], minlength=classes)
    val_counts = np.bincount(ds.val.labels.numpy(), minlength=classes)
    assert val_counts.tolist() == [int(round(c * 0.2)) for c in counts]


def test_cifar_split_is_seeded_and_test_fraction_is_not_used(tmp_path):
    folder, written = write_cifar(tmp_path, "cifar10", "python")
    a = load_dataset("cifar10", seed=0, val_fraction=0.2, test_fraction=0.1, path=folder)
    b = load_dataset("cifar10", seed=0, val_fraction=0.2, test_fraction=0.3, path=folder)
    c = load_dataset("cifar10", seed=1, val_fraction=0.2, path=folder)
    for x, y in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
    val_a = set(_match_rows(_unnormalise(a.val.images, "cifar10"), written["train_x"]))
    val_c = set(_match_rows(_unnormalise(c.val.images, "cifar10"), written["train_x"]))
    assert val_a != val_c
    assert torch.equal(a.test.images, c.test.images)  # fixed constants: test does not move


def test_cifar_python_repickled_by_python3_and_numpy2_also_loads(tmp_path):
    folder, written = write_cifar(tmp_path, "cifar10", "python")
    entry = {b"data": written["test_x"], b"labels": [int(v) for v in written["test_y"]]}
    raw = pickle.dumps(entry, protocol=2)
    assert b"_codecs" in raw and b"numpy._core.multiarray" in raw
    (folder / "test_batch").write_bytes(raw)
    splits = read_cifar10(tmp_path)
    assert np.array_equal(splits.test_images.reshape(-1, 3072), written["test_x"])
    assert splits.source.startswith("CIFAR-10 (python version)")


def test_cifar_through_config_and_study_dataset(tmp_path):
    folder, written = write_cifar(tmp_path, "cifar10", "binary")
    dataset = {"name": "cifar10", "path": str(tmp_path), "val_fraction": 0.2}
    config = config_from_dict({"seed": 2, "dataset": dataset})
    ds = study_dataset(config)
    assert isinstance(ds, Dataset) and (ds.name, ds.num_classes) == ("cifar10", 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 12)  # 5 per class, 1 to val
    assert np.array_equal(_unnormalise(ds.test.images, "cifar10"), written["test_x"])
    direct = load_dataset("cifar10", seed=2, val_fraction=0.2, path=folder)
    assert torch.equal(direct.val.images, ds.val.images)


def test_config_needs_path_for_exactly_the_path_datasets():
    assert set(PATH_DATASETS) == {
        "npz", "cifar10", "cifar100", "tinyimagenet", "dvs128-gesture", "cifar10-dvs"
    }
    assert set(PATH_DATASETS) <= set(DATASET_NAMES)
    for name in DATASET_NAMES:
        needs = name in PATH_DATASETS
        config_from_dict({"dataset": {"name": name, "path": "somewhere" if needs else ""}})
        with pytest.raises(ConfigError, match="path is needed by, and only by") as err:
            config_from_dict({"dataset": {"name": name, "path": "" if needs else "somewhere"}})
        assert "'tinyimagenet'" in str(err.value) and "'cifar100'" in str(err.value)


def test_config_verify_is_for_cifar_only():
    ok = config_from_dict({"dataset": {"name": "cifar100", "path": "p", "verify": True}})
    assert ok.dataset.verify is True
    assert config_from_dict({}).dataset.verify is False
    with pytest.raises(ConfigError, match="verify"):
        config_from_dict({"dataset": {"name": "tinyimagenet", "path": "p", "verify": True}})
    with pytest.raises(ConfigError, match="verify"):
        config_from_dict({"dataset": {"name": "digits", "verify": True}})


# --- CIFAR: checksums and errors -------------------------------------------------------------


def _error(name: str, path: Path, **kwargs) -> str:
    with pytest.raises(DatasetError) as err:
        load_dataset(name, val_fraction=0.2, path=path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_verify_compares_published_md5s(tmp_path, monkeypatch):
    folder, _ = write_cifar(tmp_path, "cifar10", "python")
    message = _error("cifar10", tmp_path, verify=True)
    assert str(folder / "data_batch_1") in message and "md5" in message
    assert CIFAR_MD5["cifar-10-batches-py/data_batch_1"] in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message

    # with the md5s of these files "published", the same files load
    import hashlib

    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        digest = hashlib.md5((folder / file).read_bytes()).hexdigest()
        monkeypatch.setitem(CIFAR_MD5, f"cifar-10-batches-py/{file}", digest)
    assert len(load_dataset("cifar10", val_fraction=0.2, path=tmp_path, verify=True).test) == 12
    (folder / "data_batch_4").write_bytes((folder / "data_batch_4").read_bytes() + b"\0")
    data._read_official.cache_clear()  # files are read once per process and path
    assert str(folder / "data_batch_4") in _error("cifar10", tmp_path, verify=True)


def test_verify_checks_binary_sizes_and_is_refused_elsewhere(tmp_path):
    folder, _ = write_cifar(tmp_path, "cifar100", "binary")
    message = _error("cifar100", tmp_path, verify=True)
    assert str(folder / "train.bin") in message and "153700000" in message
    with pytest.raises(DatasetError, match="verify"):
        load_dataset("digits", verify=True)
    with pytest.raises(DatasetError, match="verify"):
        load_dataset("tinyimagenet", path=tmp_path, verify=True)


def test_missing_path_and_missing_dataset(tmp_path):
    message = _error("cifar10", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    message = _error("cifar100", tmp_path)
    assert "no CIFAR-100" in message and "cifar-100-python" in message
    with pytest.raises(DatasetError, match="needs a path"):
        load_dataset("cifar10")
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"not extracted")
    assert "is a file" in _error("cifar10", archive)


@pytest.mark.parametrize("version", ["python", "binary"])
def test_missing_file_is_named(tmp_path, version):
    folder, _ = write_cifar(tmp_path, "cifar10", version)
    missing = folder / ("data_batch_3" if version == "python" else "data_batch_3.bin")
    missing.unlink()
    message = _error("cifar10", tmp_path)
    assert str(missing) in message and "is missing" in message
    assert "cifar-10-python.tar.gz" in message and "cs.toronto.edu" in message


def test_truncated_binary_batch(tmp_path):
    folder, _ = write_cifar(tmp_path, "cifar10", "binary")
    batch = folder / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    message = _error("cifar10", tmp_path)
    assert str(batch) in message and "truncated" in message and "3073-byte" in message


def test_binary_label_out_of_range(tmp_path):
    folder, _ = write_cifar(tmp_path, "cifar10", "binary")
    batch = folder / "test_batch.bin"
    raw = bytearray(batch.read_bytes())
    raw[3073] = 10  # second record's label
    batch.write_bytes(bytes(raw))
    assert str(batch) in _error("cifar10", tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OddCodec:
    def __reduce__(self):
        return (codecs.encode, ("x" * 100, "zlib_codec"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    folder, written = write_cifar(tmp_path, "cifar10", "python")
    marker = tmp_path / "pwned"
    entry = {b"data": written["test_x"], b"labels": [0] * 12, b"x": _Evil(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    message = _error("cifar10", tmp_path)
    assert str(folder / "test_batch") in message and "refused" in message
    assert "system" in message
    assert not marker.exists()

    entry = {b"data": written["test_x"], b"labels": [0] * 12, b"x": _OddCodec()}
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    message = _error("cifar10", tmp_path)
    assert str(folder / "test_batch") in message and "refused" in message
    assert "zlib_codec" in message


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (lambda w: {b"data": np.zeros((4, 1000), np.uint8), b"labels": [0] * 4}, "3072"),
        (lambda w: {b"data": w["test_x"].astype(np.float32), b"labels": [0] * 12}, "uint8"),
        (lambda w: {b"data": w["test_x"], b"labels": [0] * 3}, "12 integer labels"),
        (lambda w: {b"data": w["test_x"], b"labels": [10] * 12}, "outside 0 .. 9"),
        (lambda w: {b"data": w["test_x"]}, "list of 12 labels"),
        (lambda w: [w["test_x"]], "no dict"),
        (lambda w: {b"data": w["test_x"], b"labels": eval}, "refused"),
    ],
    ids=["wrong-shape", "wrong-dtype", "few-labels", "bad-label", "no-labels", "list", "builtin"],
)
def test_pickle_that_is_not_a_cifar_batch(tmp_path, payload, expected):
    folder, written = write_cifar(tmp_path, "cifar10", "python")
    _dump_like_cifar(payload(written), folder / "test_batch")
    message = _error("cifar10", tmp_path)
    assert str(folder / "test_batch") in message and expected in message


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_pickle(tmp_path, damage):
    folder, _ = write_cifar(tmp_path, "cifar10", "python")
    batch = folder / "data_batch_5"
    raw = batch.read_bytes()
    garbage = np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    batch.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else garbage)
    message = _error("cifar10", tmp_path)
    assert str(batch) in message and ("corrupted" in message or "refused" in message)


# --- TinyImageNet ----------------------------------------------------------------------------

WNIDS_IN_FILE = ("n02000002", "n01000001", "n03000003")  # not sorted: labels follow sorted order


def _smooth_image(rng: np.random.Generator, grey: bool = False) -> np.ndarray:
    """A 64x64 RGB (or greyscale) uint8 image that JPEG keeps close to the original."""
    ramp = np.linspace(0, 60, 64)
    base = rng.integers(40, 150, size=3)
    image = base[None, None, :] + ramp[:, None, None] + ramp[None, ::-1, None] * rng.random(3)
    image = image.astype(np.uint8)
    return image[:, :, 0] if grey else image


def write_tinyimagenet(parent: Path, train_per_class: int = 4, n_val: int = 6) -> dict:
    """Write a small TinyImageNet-200 tree; return the written files and source pixels."""
    rng = np.random.default_rng(0)
    root = parent / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "test" / "images").mkdir(parents=True)  # unlabelled; must be ignored
    (root / "wnids.txt").write_text("\n".join(WNIDS_IN_FILE) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS_IN_FILE))
    sources: dict[Path, np.ndarray] = {}
    train = []
    for wnid in sorted(WNIDS_IN_FILE):
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(train_per_class):
            file = folder / f"{wnid}_{i}.JPEG"
            grey = wnid == "n02000002" and i == 1
            pixels = _smooth_image(rng, grey)
            Image.fromarray(pixels).save(file, quality=95)
            sources[file] = np.repeat(pixels[:, :, None], 3, axis=2) if grey else pixels
            train.append((file, sorted(WNIDS_IN_FILE).index(wnid)))
    val = []
    lines = []
    for i in range(n_val):
        wnid = WNIDS_IN_FILE[i % 3]
        file = root / "val" / "images" / f"val_{i}.JPEG"
        pixels = _smooth_image(rng)
        Image.fromarray(pixels).save(file, quality=95)
        sources[file] = pixels
        val.append((file, sorted(WNIDS_IN_FILE).index(wnid)))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    Image.fromarray(_smooth_image(rng)).save(root / "test" / "images" / "test_0.JPEG")
    return {"root": root, "train": train, "val": val, "sources": sources}


def _decoded(file: Path) -> np.ndarray:
    """The file as Pillow decodes it, uint8 [3, 64, 64]."""
    with Image.open(file) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


@pytest.mark.parametrize("point_at", ["folder", "parent"])
def test_tinyimagenet_round_trips_and_uses_val_as_test(tmp_path, point_at):
    tree = write_tinyimagenet(tmp_path)
    path = tree["root"] if point_at == "folder" else tmp_path
    ds = load_dataset("tinyimagenet", seed=0, val_fraction=0.25, path=path)
    assert (ds.name, ds.num_classes, ds.in_channels, ds.image_size) == ("tinyimagenet", 3, 3, 64)
    assert ds.augmentation == "crop-flip"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (9, 3, 6)

    # test = the official val set, in annotation order, with the annotated labels
    test_pixels = _unnormalise(ds.test.images, "tinyimagenet")
    for k, (file, label) in enumerate(tree["val"]):
        assert np.array_equal(test_pixels[k], _decoded(file).reshape(-1))
        written = tree["sources"][file].transpose(2, 0, 1).reshape(-1).astype(int)
        assert np.abs(test_pixels[k].astype(int) - written).mean() < 3  # JPEG is lossy
        assert ds.test.labels[k].item() == label

    # train + val = the training images, disjoint, labels by sorted wnid
    official = np.stack([_decoded(f).reshape(-1) for f, _ in tree["train"]])
    official_labels = np.array([label for _, label in tree["train"]])
    train_idx = _match_rows(_unnormalise(ds.train.images, "tinyimagenet"), official)
    val_idx = _match_rows(_unnormalise(ds.val.images, "tinyimagenet"), official)
    assert sorted([*train_idx, *val_idx]) == list(range(12)) and not set(train_idx) & set(val_idx)
    assert np.array_equal(ds.train.labels.numpy(), official_labels[train_idx])
    assert np.bincount(ds.val.labels.numpy()).tolist() == [1, 1, 1]

    # the greyscale JPEG became RGB with equal channels
    grey = next(f for f, _ in tree["train"] if f.name == "n02000002_1.JPEG")
    assert np.array_equal(_decoded(grey)[0], _decoded(grey)[2])

    again = load_dataset("tinyimagenet", seed=0, val_fraction=0.25, path=path)
    other = load_dataset("tinyimagenet", seed=1, val_fraction=0.25, path=path)
    assert torch.equal(again.val.images, ds.val.images)
    assert not torch.equal(other.val.images, ds.val.images)


def test_tinyimagenet_reader_layout(tmp_path):
    tree = write_tinyimagenet(tmp_path)
    splits = read_tinyimagenet(tmp_path, workers=1)
    assert splits.train_images.shape == (12, 3, 64, 64) and splits.train_images.dtype == np.uint8
    assert splits.test_images.shape == (6, 3, 64, 64)
    assert splits.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert splits.num_classes == 3 and str(tree["root"]) in splits.source


def _break_tree(tree: dict, how: str) -> Path:
    """Damage the tree one way; return the path the error must name."""
    root = tree["root"]
    file = root / "train" / "n01000001" / "images" / "n01000001_2.JPEG"
    if how == "corrupt-jpeg":
        file.write_bytes(b"this is not a JPEG at all")
    elif how == "truncated-jpeg":
        file.write_bytes(file.read_bytes()[:300])
    elif how == "wrong-size":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(file)
    elif how == "missing-val-image":
        file = root / "val" / "images" / "val_3.JPEG"
        file.unlink()
    elif how == "missing-wnids":
        file = root / "wnids.txt"
        file.unlink()
    elif how == "missing-annotations":
        file = root / "val" / "val_annotations.txt"
        file.unlink()
    elif how == "missing-class-folder":
        file = root / "train" / "n03000003" / "images"
        for jpeg in file.iterdir():
            jpeg.unlink()
        file.rmdir()
    elif how in ("unknown-wnid", "path-in-annotation"):
        file = root / "val" / "val_annotations.txt"
        bad = "val_0.JPEG\tn09999999" if how == "unknown-wnid" else "../../x.JPEG\tn01000001"
        file.write_text(file.read_text() + bad + "\t0\t0\t1\t1\n")
    return file


TINY_BREAKS = {
    "corrupt-jpeg": "unreadable or corrupt",
    "truncated-jpeg": "unreadable or corrupt",
    "wrong-size": "is 32x32, not 64x64",
    "missing-val-image": "is missing",
    "missing-wnids": "is missing",
    "missing-annotations": "is missing",
    "missing-class-folder": "does not exist",
    "unknown-wnid": "line 7",
    "path-in-annotation": "line 7",
}


@pytest.mark.parametrize("how", list(TINY_BREAKS))
def test_tinyimagenet_errors_name_the_file(tmp_path, how):
    tree = write_tinyimagenet(tmp_path)
    named = _break_tree(tree, how)
    message = _error("tinyimagenet", tmp_path)
    assert str(named) in message and TINY_BREAKS[how] in message
    if how.startswith("missing"):
        assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in message


def test_tinyimagenet_missing_path(tmp_path):
    message = _error("tinyimagenet", tmp_path / "nope")
    assert str(tmp_path / "nope") in message and "does not exist" in message
    assert "tiny-imagenet-200.zip" in message
    assert "no TinyImageNet-200" in _error("tinyimagenet", tmp_path)


# --- augmentation ----------------------------------------------------------------------------


def _find_crop(image: torch.Tensor, out: torch.Tensor, pad: int) -> tuple[bool, int, int]:
    """The (flip, row offset, column offset) whose window of the zero-padded image is ``out``."""
    size = image.shape[-1]
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    found = [
        (flip, dy, dx)
        for flip in (False, True)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        if torch.equal(
            out,
            padded[:, dy : dy + size, dx : dx + size].flip(-1)
            if flip
            else padded[:, dy : dy + size, dx : dx + size],
        )
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(("size", "pad"), [(32, 4), (64, 8)])
def test_crop_flip_crops_flips_and_pads_with_zeros(size, pad):
    images = torch.rand(48, 3, size, size, generator=torch.Generator().manual_seed(1)) + 1.0
    before = images.clone()
    out = augment_batch(images, "crop-flip", torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(images, before)  # input untouched
    crops = [_find_crop(images[i], out[i], pad) for i in range(len(images))]
    flips = {flip for flip, _, _ in crops}
    offsets = {(dy, dx) for _, dy, dx in crops}
    assert flips == {False, True}
    assert len(offsets) > 10 and any(dy in (0, 2 * pad) for _, dy, _ in crops)
    assert (out == 0).any()  # the padding shows, and it is zero (inputs are >= 1)
    assert ((out == 0) | (out >= 1)).all()


def test_augment_batch_is_deterministic_per_generator_state():
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    a = augment_batch(images, "crop-flip", torch.Generator().manual_seed(5))
    b = augment_batch(images, "crop-flip", torch.Generator().manual_seed(5))
    c = augment_batch(images, "crop-flip", torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    generator = torch.Generator().manual_seed(5)
    first = augment_batch(images, "crop-flip", generator)
    second = augment_batch(images, "crop-flip", generator)  # the state moved on
    assert torch.equal(first, a) and not torch.equal(first, second)


def test_augment_none_and_bad_input():
    assert AUGMENTATIONS == ("none", "crop-flip")
    images = torch.randn(2, 3, 8, 8)
    assert augment_batch(images, "none", torch.Generator()) is images
    with pytest.raises(DatasetError, match="unknown augmentation 'cutout'"):
        augment_batch(images, "cutout", torch.Generator())
    with pytest.raises(DatasetError, match=r"\[B, C, H, W\]"):
        augment_batch(images[0], "crop-flip", torch.Generator())
    assert load_dataset("digits").augmentation == "none"
