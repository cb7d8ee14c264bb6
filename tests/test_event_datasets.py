"""Tests for the DVS event datasets (optuna_spikenas.event_datasets) and for event frames
``[B, T, C, H, W]`` as network inputs (snn.network, snn.autosnn, score.sahd_score).

Event files are written here in the datasets' real on-disk formats: tonic's DVS128 Gesture
layout (``ibmGestureTrain/<user>/<label>.npy``, columns x, y, p, t in ms) and CIFAR10-DVS's
jAER AEDAT 2.0 (``#`` header, big-endian uint32 address / timestamp pairs). Every file has its
own number of events, so a loaded sample's total count tells which file it came from.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro  # noqa: E402
from optuna_spikenas.data import DatasetError  # noqa: E402
from optuna_spikenas.event_datasets import (  # noqa: E402
    CIFAR10_DVS_CLASSES,
    EVENT_DTYPE,
    events_to_frames,
    load_event_dataset,
    read_aedat2_dvs128,
)
from optuna_spikenas.macros import get_macro  # noqa: E402
from optuna_spikenas.score import sahd_score  # noqa: E402
from optuna_spikenas.snn.autosnn import SuperNetwork, build_autosnn  # noqa: E402
from optuna_spikenas.snn.network import build_network  # noqa: E402
from optuna_spikenas.space import Architecture  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

needs_tonic = pytest.mark.skipif(
    importlib.util.find_spec("tonic") is None,
    reason="tonic is not installed (pip install 'optuna-spikenas[dvs]')",
)

# jAER's header of an AEDAT 2.0 file, as in the CIFAR10-DVS release.
AEDAT_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
    b"# created Thu Jan 05 10:00:00 CST 2017\r\n"
)

GESTURE_LABELS = (0, 4, 10)
GESTURE_TRAIN_USERS = ("user01_fluorescent", "user02_led", "user03_natural", "user04_lab")
GESTURE_TEST_USERS = ("user24_fluorescent", "user25_led")


# --- writing event files ---------------------------------------------------------------------


def random_events(rng: np.random.Generator, n: int, t_max: int) -> np.ndarray:
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, 128, n)
    events["y"] = rng.integers(0, 128, n)
    events["p"] = rng.integers(0, 2, n).astype(bool)
    events["t"] = np.sort(rng.integers(1000, 1000 + t_max, n))
    return events


def write_gesture_npy(path: Path, events: np.ndarray, dtype: type, shuffle: bool) -> None:
    """tonic's DVSGesture file: numbers [N, 4], columns x, y, p, t (milliseconds)."""
    rows = np.stack([events["x"], events["y"], events["p"], events["t"]], axis=1).astype(dtype)
    if shuffle:
        rows = rows[np.random.default_rng(0).permutation(len(rows))]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, rows)


def aedat_address(events: np.ndarray) -> np.ndarray:
    """DVS128 address of image coordinates (the inverse of SpikingJelly's CIFAR10-DVS decoding:
    x = 127 - bits 8-14, y = 127 - bits 1-7, p = 1 - bit 0)."""
    x = events["x"].astype(np.uint32)
    y = events["y"].astype(np.uint32)
    off = 1 - events["p"].astype(np.uint32)
    return ((127 - x) << 8) | ((127 - y) << 1) | off


def write_aedat(path: Path, events: np.ndarray) -> None:
    raw = np.empty(len(events), dtype=[("address", ">u4"), ("timestamp", ">u4")])
    raw["address"] = aedat_address(events)
    raw["timestamp"] = events["t"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(AEDAT_HEADER + raw.tobytes())


def make_gesture(root: Path) -> dict[int, tuple[str, int, np.ndarray]]:
    """3 labels x (4 train + 2 test users); returns {event count: (split, label, events)}."""
    rng = np.random.default_rng(7)
    written: dict[int, tuple[str, int, np.ndarray]] = {}
    n = 200
    for split, users in (
        ("ibmGestureTrain", GESTURE_TRAIN_USERS),
        ("ibmGestureTest", GESTURE_TEST_USERS),
    ):
        for u, user in enumerate(users):
            for label in GESTURE_LABELS:
                n += 1
                events = random_events(rng, n, t_max=6000)  # milliseconds
                dtype = np.float64 if u % 2 else np.int64  # both kinds of numbers
                write_gesture_npy(root / split / user / f"{label}.npy", events, dtype, n == 203)
                written[n] = (split, label, events)
    return written


def make_cifar10_dvs(root: Path, per_class: int = 4) -> dict[int, tuple[int, np.ndarray]]:
    """10 class folders of AEDAT 2.0 files; returns {event count: (label, events)}."""
    rng = np.random.default_rng(11)
    written: dict[int, tuple[int, np.ndarray]] = {}
    n = 150
    for label, name in enumerate(CIFAR10_DVS_CLASSES):
        for i in range(per_class):
            n += 1
            events = random_events(rng, n, t_max=1_300_000)  # microseconds
            write_aedat(root / name / f"cifar10_{name}_{i}.aedat", events)
            written[n] = (label, events)
    return written


def reference_counts(events: np.ndarray, timesteps: int, size: int, t_scale: int) -> np.ndarray:
    """Counts [T, 2, S, S] by plain numpy: bins of width ceil((span + 1) / T) from the first
    event, pixels x * S // 128."""
    t = events["t"].astype(np.int64) * t_scale
    width = -(-(int(t.max()) - int(t.min()) + 1) // timesteps)
    k = (t - t.min()) // width
    out = np.zeros((timesteps, 2, size, size), dtype=np.int64)
    x = events["x"].astype(np.int64) * size // 128
    y = events["y"].astype(np.int64) * size // 128
    np.add.at(out, (k, events["p"].astype(np.int64), y, x), 1)
    return out


def counts_of(images: torch.Tensor) -> np.ndarray:
    """Undo the log1p normalisation."""
    return np.rint(np.expm1(images.numpy().astype(np.float64))).astype(np.int64)


def keys(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


# --- frames ------------------------------------------------------------------------------------


@needs_tonic
@pytest.mark.parametrize(("timesteps", "size"), [(1, 128), (4, 64), (7, 48), (5, 16)])
def test_events_to_frames_counts_every_event_in_equal_time_bins(timesteps: int, size: int):
    rng = np.random.default_rng(timesteps)
    events = random_events(rng, 700, t_max=99_991)
    frames = events_to_frames(events, timesteps, size)
    assert frames.shape == (timesteps, 2, size, size)
    assert int(frames.sum()) == 700  # the last event too (tonic's n_time_bins drops it)
    assert np.array_equal(frames, reference_counts(events, timesteps, size, 1))


@needs_tonic
def test_downsampling_sums_pixel_blocks_and_order_does_not_matter():
    events = random_events(np.random.default_rng(3), 500, t_max=5000)
    full = events_to_frames(events, 3, 128).astype(np.int64)
    half = events_to_frames(events, 3, 64)
    assert np.array_equal(half, full.reshape(3, 2, 64, 2, 64, 2).sum(axis=(3, 5)))
    shuffled = events[np.random.default_rng(0).permutation(len(events))]
    assert np.array_equal(events_to_frames(shuffled, 3, 64), half)


@needs_tonic
def test_events_to_frames_edge_cases():
    events = random_events(np.random.default_rng(0), 5, t_max=10)
    events["t"] = 42  # all at once: everything in the first bin
    frames = events_to_frames(events, 4, 32)
    assert frames[0].sum() == 5 and frames[1:].sum() == 0
    assert events_to_frames(events[:0], 4, 32).shape == (4, 2, 32, 32)
    events["x"][0] = 128
    with pytest.raises(ValueError, match="outside"):
        events_to_frames(events, 4, 32)


# --- readers -----------------------------------------------------------------------------------


def test_aedat_reader_decodes_the_dvs128_layout(tmp_path: Path):
    events = random_events(np.random.default_rng(1), 300, t_max=1_000_000)
    events["x"][:2], events["y"][:2], events["p"][:2] = (3, 120), (5, 0), (True, False)
    write_aedat(tmp_path / "a.aedat", events)
    raw = (tmp_path / "a.aedat").read_bytes()[len(AEDAT_HEADER) :]
    assert raw[:4] == bytes([0, 0, 124, 122 << 1])  # big-endian: (127-3) << 8 | (127-5) << 1
    assert np.array_equal(read_aedat2_dvs128(tmp_path / "a.aedat"), events)


@needs_tonic
def test_aedat_files_written_here_are_what_tonic_reads(tmp_path: Path):
    import tonic.io

    events = random_events(np.random.default_rng(2), 100, t_max=1000)
    write_aedat(tmp_path / "a.aedat", events)
    version, start, _ = tonic.io.read_aedat_header_from_file(str(tmp_path / "a.aedat"))
    assert version == 2.0 and start == len(AEDAT_HEADER)
    raw = tonic.io.get_aer_events_from_file(str(tmp_path / "a.aedat"), version, start)
    assert np.array_equal(raw["address"], aedat_address(events))
    assert np.array_equal(raw["timeStamp"], events["t"])


# --- DVS128 Gesture ----------------------------------------------------------------------------


@needs_tonic
def test_dvs128_gesture_loads_frames_labels_and_official_test_split(tmp_path: Path):
    written = make_gesture(tmp_path / "DVSGesture")
    # tonic's save_to folder (holding DVSGesture/) and the dataset folder itself both work
    data = load_event_dataset("dvs128-gesture", tmp_path, 4, seed=0, val_fraction=0.25)
    again = load_event_dataset(
        "dvs128-gesture", tmp_path / "DVSGesture", 4, seed=0, val_fraction=0.25
    )
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == (
        "dvs128-gesture",
        11,
        2,
        64,
    )
    assert (len(data.train), len(data.val), len(data.test)) == (9, 3, 6)
    sources = {"train": [], "val": [], "test": []}
    for part in ("train", "val", "test"):
        split = getattr(data, part)
        assert split.images.shape == (len(split), 4, 2, 64, 64)
        assert split.images.dtype == torch.float32 and split.labels.dtype == torch.int64
        assert torch.equal(split.images, getattr(again, part).images)
        for image, label in zip(split.images, split.labels.tolist(), strict=True):
            counts = counts_of(image)
            folder, true_label, events = written[int(counts.sum())]  # every event is counted
            assert label == true_label
            assert np.array_equal(counts, reference_counts(events, 4, 64, 1000))  # ms -> us
            sources[part].append((folder, int(counts.sum())))
    assert {f for f, _ in sources["test"]} == {"ibmGestureTest"}
    assert {f for f, _ in sources["train"] + sources["val"]} == {"ibmGestureTrain"}
    ids = [n for part in sources.values() for _, n in part]
    assert sorted(ids) == sorted(written)  # disjoint, and every file used once
    assert sorted(data.val.labels.tolist()) == list(GESTURE_LABELS)  # 1 of 4 per class


@needs_tonic
def test_gesture_split_is_seeded_and_keeps_the_test_split(tmp_path: Path):
    make_gesture(tmp_path)
    load = lambda seed: load_event_dataset(  # noqa: E731
        "dvs128-gesture", tmp_path, 2, seed=seed, val_fraction=0.25, image_size=16
    )
    first, same = load(0), load(0)
    assert torch.equal(first.val.images, same.val.images)
    others = [load(seed) for seed in (1, 2, 3)]
    assert any(keys(o.val.images) != keys(first.val.images) for o in others)
    for other in others:
        assert torch.equal(other.test.images, first.test.images)
        assert keys(other.train.images) | keys(other.val.images) == keys(first.train.images) | keys(
            first.val.images
        )
        assert not keys(other.train.images) & keys(other.val.images)


@needs_tonic
def test_gesture_frames_run_through_a_network(tmp_path: Path):
    make_gesture(tmp_path)
    data = load_event_dataset("dvs128-gesture", tmp_path, 3, 0, 0.25, image_size=16)
    macro = get_macro("light").for_data(data.in_channels, data.image_size, data.num_classes)
    network = build_network(Architecture.parse("0303 0030 2002 0200", 1, 2), macro, 3, seed=0)
    assert network(data.train.images[:4]).shape == (4, 11)


# --- CIFAR10-DVS -------------------------------------------------------------------------------


@needs_tonic
def test_cifar10_dvs_seeded_disjoint_per_class_split(tmp_path: Path):
    written = make_cifar10_dvs(tmp_path)
    data = load_event_dataset(
        "cifar10-dvs", tmp_path, 3, seed=5, val_fraction=0.25, test_fraction=0.25, image_size=128
    )
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == (
        "cifar10-dvs",
        10,
        2,
        128,
    )
    assert (len(data.train), len(data.val), len(data.test)) == (20, 10, 10)
    seen: list[int] = []
    for split in (data.train, data.val, data.test):
        assert split.images.shape == (len(split), 3, 2, 128, 128)
        for image, label in zip(split.images, split.labels.tolist(), strict=True):
            counts = counts_of(image)
            true_label, events = written[int(counts.sum())]
            assert label == true_label
            assert np.array_equal(counts, reference_counts(events, 3, 128, 1))
            seen.append(int(counts.sum()))
    assert sorted(seen) == sorted(written)  # disjoint and complete
    for split, per_class in ((data.train, 2), (data.val, 1), (data.test, 1)):
        assert np.bincount(split.labels.numpy(), minlength=10).tolist() == [per_class] * 10
    same = load_event_dataset("cifar10-dvs", tmp_path, 3, 5, 0.25, test_fraction=0.25)
    other = load_event_dataset("cifar10-dvs", tmp_path, 3, 6, 0.25, test_fraction=0.25)
    again = load_event_dataset("cifar10-dvs", tmp_path, 3, 5, 0.25, test_fraction=0.25)
    assert torch.equal(same.test.images, again.test.images)
    assert keys(same.test.images) != keys(other.test.images)


# --- errors ------------------------------------------------------------------------------------


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_tonic_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "tonic", None)
    monkeypatch.setitem(sys.modules, "tonic.transforms", None)
    with pytest.raises(DatasetError) as excinfo:
        load_event_dataset("cifar10-dvs", tmp_path, 4, 0, 0.1)
    assert "pip install 'optuna-spikenas[dvs]'" in one_line(excinfo)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "n-mnist"}, "unknown event dataset"),
        ({"timesteps": 0}, "timesteps"),
        ({"seed": -1}, "seed"),
        ({"val_fraction": 0.5}, "val_fraction"),
        ({"image_size": 129}, "image_size"),
        ({"test_fraction": 0.0}, "test_fraction"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, pattern: str):
    args = {"name": "cifar10-dvs", "path": tmp_path, "timesteps": 4, "seed": 0}
    args |= {"val_fraction": 0.1} | kwargs
    with pytest.raises(DatasetError, match=pattern):
        load_event_dataset(**args)


@needs_tonic
def test_missing_folders_name_what_is_missing_and_where_to_get_it(tmp_path: Path):
    with pytest.raises(DatasetError) as excinfo:
        load_event_dataset("dvs128-gesture", tmp_path / "nowhere", 4, 0, 0.25)
    message = one_line(excinfo)
    assert str(tmp_path / "nowhere") in message
    assert "https://research.ibm.com/interactive/dvsgesture/" in message

    make_gesture(tmp_path / "gesture")
    for npy in (tmp_path / "gesture" / "ibmGestureTest").rglob("*.npy"):
        npy.unlink()
    with pytest.raises(DatasetError) as excinfo:
        load_event_dataset("dvs128-gesture", tmp_path / "gesture", 4, 0, 0.25)
    assert "ibmGestureTest" in one_line(excinfo)
    (tmp_path / "gesture" / "ibmGestureTest").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="ibmGestureTest is missing"):
        load_event_dataset("dvs128-gesture", tmp_path / "gesture", 4, 0, 0.25)

    make_cifar10_dvs(tmp_path / "cifar", per_class=1)
    (tmp_path / "cifar" / "truck").rename(tmp_path / "truck-elsewhere")
    with pytest.raises(DatasetError) as excinfo:
        load_event_dataset("cifar10-dvs", tmp_path / "cifar", 4, 0, 0.25)
    message = one_line(excinfo)
    assert "truck" in message
    assert "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671" in message


@needs_tonic
def test_damaged_event_files_are_named(tmp_path: Path):
    make_cifar10_dvs(tmp_path / "cifar")
    bad = tmp_path / "cifar" / "dog" / "cifar10_dog_2.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(DatasetError) as excinfo:
        load_event_dataset("cifar10-dvs", tmp_path / "cifar", 4, 0, 0.25, test_fraction=0.25)
    message = one_line(excinfo)
    assert str(bad) in message and "truncated" in message
    bad.write_bytes(b"not an event file")
    with pytest.raises(DatasetError, match="not an AEDAT file"):
        load_event_dataset("cifar10-dvs", tmp_path / "cifar", 4, 0, 0.25, test_fraction=0.25)

    make_gesture(tmp_path / "gesture")
    bad = tmp_path / "gesture" / "ibmGestureTrain" / GESTURE_TRAIN_USERS[2] / "4.npy"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DatasetError) as excinfo:
        load_event_dataset("dvs128-gesture", tmp_path / "gesture", 4, 0, 0.25)
    message = one_line(excinfo)
    assert str(bad) in message and "truncated" in message


# --- networks on event frames ------------------------------------------------------------------


def strong_convs(network: torch.nn.Module) -> torch.nn.Module:
    """Scale the convs so that the network fires in eval mode too (where BN has its initial
    running statistics); in train mode BN undoes the scale."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(20.0)
    return network


def snasnet_light(timesteps: int) -> torch.nn.Module:
    macro = get_macro("light").for_data(2, 8, 5)
    network = build_network(Architecture.parse("0303 0030 2002 0200", 2, 4), macro, timesteps, 0)
    return strong_convs(network)


def autosnn_tiny(timesteps: int) -> torch.nn.Module:
    macro = AutoSNNMacro(
        width=2, in_channels=2, image_size=8, num_classes=3, voters_per_class=2, timesteps=timesteps
    )
    network = build_autosnn(AutoSNNArchitecture.parse("SCB_k3,skip,SRB_k3,skip,SRB_k5"), macro, 0)
    with torch.no_grad():
        network.head[1].weight.mul_(50.0)  # make the head fire
    return strong_convs(network)


def run(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    functional.reset_net(network)
    with torch.no_grad():
        out = network(images)
    functional.reset_net(network)
    return out


def event_frames(batch: int, timesteps: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.log1p(torch.poisson(torch.full((batch, timesteps, 2, 8, 8), 1.5), gen)) * 3


@pytest.mark.parametrize(("make", "classes"), [(snasnet_light, 5), (autosnn_tiny, 3)])
@pytest.mark.parametrize("train_mode", [False, True])
def test_event_frames_feed_one_frame_per_timestep(make, classes: int, train_mode: bool):
    network = make(4)
    network.train(train_mode)
    frames = event_frames(3, 4)
    out = run(network, frames)
    assert out.shape == (3, classes)
    assert out.abs().sum() > 0
    static = frames[:, 0]
    repeated = static[:, None].expand(-1, 4, -1, -1, -1).contiguous()
    assert torch.equal(run(network, repeated), run(network, static))  # exactly direct encoding
    assert not torch.equal(out, run(network, static))  # the other frames are used
    # frame t is fed at step t: reversing time changes the output of a stateful network
    assert not torch.equal(out, run(network, frames.flip(1)))


@pytest.mark.parametrize("make", [snasnet_light, autosnn_tiny])
def test_wrong_number_of_frames_is_refused(make):
    network = make(4)
    with pytest.raises(ValueError, match="T = 3 but the network runs 4 timesteps"):
        network(event_frames(2, 3))


def test_super_network_takes_event_frames_too():
    macro = AutoSNNMacro(width=2, in_channels=2, image_size=8, num_classes=3, timesteps=2)
    supernet = SuperNetwork(macro)
    arch = AutoSNNArchitecture.parse("SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5")
    frames = event_frames(2, 2)
    functional.reset_net(supernet)
    with torch.no_grad():
        expected = supernet(frames, arch)
    assert torch.equal(run(supernet.extract(arch), frames), expected)


@pytest.mark.parametrize("make", [snasnet_light, autosnn_tiny])
def test_sahd_score_takes_event_batches(make):
    network = make(3)
    frames = [event_frames(6, 3, seed) for seed in (1, 2)]
    score = sahd_score(network, frames)
    assert np.isfinite(score)
    assert sahd_score(network, frames) == score
    static = [f[:, 0] for f in frames]
    repeated = [s[:, None].expand(-1, 3, -1, -1, -1) for s in static]
    assert sahd_score(network, repeated) == sahd_score(network, static)


@needs_tonic
def test_empty_split_is_refused_before_reading(tmp_path: Path):
    make_cifar10_dvs(tmp_path, per_class=1)
    (tmp_path / "dog" / "cifar10_dog_0.aedat").write_bytes(b"damaged, but never read")
    with pytest.raises(DatasetError, match="the val split of 'cifar10-dvs' would be empty"):
        load_event_dataset("cifar10-dvs", tmp_path, 4, 0, 0.25, test_fraction=0.25)


def test_the_config_reaches_the_event_loader(tmp_path):
    """`[dataset] name = "dvs128-gesture"` goes through the same dispatch users run."""
    from optuna_spikenas.config import config_from_dict
    from optuna_spikenas.study_setup import study_dataset

    make_gesture(tmp_path / "DVSGesture")
    config = config_from_dict(
        {"dataset": {"name": "dvs128-gesture", "path": str(tmp_path), "frame_size": 32,
                     "val_fraction": 0.25},
         "score": {"timesteps": 3}}
    )
    dataset = study_dataset(config)
    assert dataset.train.images.shape[1:] == (3, 2, 32, 32)
    assert dataset.in_channels == 2 and dataset.image_size == 32
