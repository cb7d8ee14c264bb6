"""Tests for AutoSNN's super-network training, checkpoints, path evaluation and fitness
(optuna_spikenas.supernet)."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
from torch.nn import functional as F

from optuna_spikenas import supernet as sn
from optuna_spikenas.autosnn_space import PAPER_CIFAR10_ARCH, AutoSNNArchitecture
from optuna_spikenas.data import Dataset, Split, load_dataset
from optuna_spikenas.interrupts import Terminated
from optuna_spikenas.snn.autosnn import SuperNetwork
from optuna_spikenas.spikes import measure_activity
from optuna_spikenas.supernet import (
    SuperNetCheckpointError,
    SuperNetSettings,
    checkpoint_path,
    epochs_path,
    evaluate_path,
    fitness,
    load_or_train_supernet,
    reference_spikes,
    sample_path,
    split_for_search,
    train_supernet,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SuperNetSettings(
    width=4, timesteps=2, epochs=1, batch_size=32, max_train_batches=2, eval_images=64
)
PAPER = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def tiny_supernet(digits) -> SuperNetwork:
    return train_supernet(digits, TINY)


def same_weights(a: SuperNetwork, b: SuperNetwork) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- settings and data -------------------------------------------------------------------------


def test_defaults_follow_the_paper_where_cpu_allows():
    s = SuperNetSettings()
    assert (s.timesteps, s.batch_size, s.lr, s.train_fraction) == (8, 96, 1e-3, 0.8)
    assert 8 <= s.width <= 16
    assert s.max_train_batches is None and s.epochs >= 1
    assert s.eval_images is None  # AutoSNN ranks paths on the whole held-out split


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("width", 0, "width must be a positive integer"),
        ("timesteps", 1.5, "timesteps must be a positive integer"),
        ("epochs", True, "epochs must be a positive integer"),
        ("batch_size", 1, "batch_size must be an integer >= 2"),
        ("lr", 0.0, "lr must be a positive number"),
        ("lr", float("nan"), "lr must be a positive number"),
        ("seed", -1, "seed must be a non-negative integer"),
        ("train_fraction", 1.0, r"train_fraction must be in \(0, 1\)"),
        ("max_train_batches", 0, "max_train_batches must be None or a positive integer"),
        ("eval_images", 0, "eval_images must be None or a positive integer"),
    ],
)
def test_bad_settings(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        SuperNetSettings(**{field: value})


def test_split_for_search_is_per_class_and_covers_the_train_split(digits):
    train, held = split_for_search(digits, SuperNetSettings())
    assert len(train) + len(held) == len(digits.train)
    counts = torch.bincount(digits.train.labels, minlength=10)
    expected_train = torch.tensor([round(int(c) * 0.8) for c in counts])
    assert torch.equal(torch.bincount(train.labels, minlength=10), expected_train)
    rows = {tuple(x.flatten().tolist()) for x in train.images}
    assert not any(tuple(x.flatten().tolist()) in rows for x in held.images)
    # the held-out part is in a seeded random order: same seed, same order; its prefix mixes classes
    again = split_for_search(digits, SuperNetSettings())[1]
    assert torch.equal(again.labels, held.labels)
    assert len(set(held.labels[:50].tolist())) >= 8


def test_split_for_search_holds_out_every_animal_class():
    # Animal-MNIST's train split is sorted by class: a plain last 20 % would be classes 8 and 9.
    animals = load_dataset("animal-mnist", seed=0)
    train, held = split_for_search(animals, SuperNetSettings())
    assert torch.equal(torch.bincount(held.labels), torch.full((10,), 160))
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 640))


# --- training ----------------------------------------------------------------------------------


def test_training_is_deterministic_and_leaves_the_rng_alone(digits, tiny_supernet):
    state = torch.random.get_rng_state()
    again = train_supernet(digits, TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert same_weights(again, tiny_supernet)
    assert not again.training
    other = train_supernet(digits, dataclasses.replace(TINY, seed=1))
    assert not same_weights(other, tiny_supernet)


def test_training_augments_where_the_dataset_is_trained_with_augmentation(digits, monkeypatch):
    # AutoSNN trains its super-network on randomly cropped and flipped CIFAR images: the
    # package augments exactly when the dataset says so (CIFAR, TinyImageNet: "crop-flip").
    kinds: list[str] = []
    real = sn.augment_batch

    def recording(images, kind, generator):
        kinds.append(kind)
        return real(images, kind, generator)

    monkeypatch.setattr(sn, "augment_batch", recording)
    plain = train_supernet(digits, TINY)
    assert set(kinds) == {"none"} and len(kinds) == TINY.max_train_batches
    cifar_like = dataclasses.replace(digits, augmentation="crop-flip")
    augmented = train_supernet(cifar_like, TINY)
    assert kinds[TINY.max_train_batches :] == ["crop-flip"] * TINY.max_train_batches
    assert not same_weights(plain, augmented)
    assert same_weights(augmented, train_supernet(cifar_like, TINY))  # seeded
    # and an augmented super-network is another checkpoint than a plain one
    assert checkpoint_path(cifar_like, TINY, "c") != checkpoint_path(digits, TINY, "c")


def test_sample_path_is_uniform_and_seeded():
    g = torch.Generator().manual_seed(0)
    paths = [sample_path(g) for _ in range(500)]
    g2 = torch.Generator().manual_seed(0)
    assert [sample_path(g2) for _ in range(5)] == paths[:5]
    for position in range(5):
        counts = {b: 0 for b in PAPER.blocks + ("skip", "SCB_k3", "SCB_k5")}
        for p in paths:
            counts[p.blocks[position]] += 1
        assert all(60 < counts[b] < 140 for b in ("skip", "SCB_k3", "SCB_k5", "SRB_k3", "SRB_k5"))


def _heldout_loss(supernet: SuperNetwork, held: Split, archs) -> float:
    from spikingjelly.activation_based import functional

    supernet.eval()
    total = 0.0
    with torch.no_grad():
        for arch in archs:
            rates = supernet(held.images, arch)
            functional.reset_net(supernet)
            total += float(F.mse_loss(rates, F.one_hot(held.labels, 10).float()))
    return total / len(archs)


def test_training_lowers_the_loss(digits):
    # lr 3e-2: at 1e-2 three epochs of this tiny network barely fire its output on held-out
    # images, and whether the loss falls by the margin below depended on the CPU's conv kernels
    # (it did on an AMD EPYC, not on an Intel Xeon: 0.0989 against 0.1000).
    settings = SuperNetSettings(width=4, timesteps=2, epochs=3, batch_size=32, lr=3e-2, seed=0)
    lines: list[str] = []
    trained = train_supernet(digits, settings, progress=lines.append)
    assert len(lines) == 3
    losses = []
    for k, line in enumerate(lines, start=1):
        match = re.fullmatch(rf"supernet epoch {k}/3: loss (\d\.\d{{4}}), \d+\.\d s", line)
        assert match, line
        losses.append(float(match.group(1)))
    assert losses[-1] < losses[0]
    # on held-out images too, over paths it was not necessarily trained on
    _, held = split_for_search(digits, settings)
    g = torch.Generator().manual_seed(5)
    archs = [sample_path(g) for _ in range(4)]
    untrained = train_supernet(digits, dataclasses.replace(settings, max_train_batches=1, lr=1e-9))
    assert _heldout_loss(trained, held, archs) < _heldout_loss(untrained, held, archs) - 0.002


# --- checkpoints -------------------------------------------------------------------------------


@pytest.fixture
def count_training(monkeypatch):
    calls: list[SuperNetSettings] = []
    real = sn.train_supernet

    def counting(dataset, settings, progress=None, epochs_file=None):
        calls.append(settings)
        return real(dataset, settings, progress, epochs_file)

    monkeypatch.setattr(sn, "train_supernet", counting)
    return calls


def test_checkpoint_is_reused(digits, tmp_path, count_training, tiny_supernet):
    lines: list[str] = []
    first = load_or_train_supernet(digits, TINY, tmp_path, progress=lines.append)
    path = checkpoint_path(digits, TINY, tmp_path)
    assert path.exists() and len(count_training) == 1
    assert lines[-1] == f"saved super-network checkpoint {path}"
    assert same_weights(first, tiny_supernet)
    mtime = path.stat().st_mtime_ns
    second = load_or_train_supernet(digits, TINY, tmp_path, progress=lines.append)
    assert len(count_training) == 1 and path.stat().st_mtime_ns == mtime
    assert lines[-1] == f"reusing super-network checkpoint {path}"
    assert same_weights(second, first) and not second.training
    # eval_images does not change the weights: same file
    load_or_train_supernet(digits, dataclasses.replace(TINY, eval_images=7), tmp_path)
    assert len(count_training) == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


@pytest.mark.parametrize(
    "change", [{"seed": 1}, {"epochs": 2}, {"lr": 2e-3}, {"train_fraction": 0.7}, {"width": 3}]
)
def test_changed_setting_means_another_checkpoint(digits, tmp_path, count_training, change):
    load_or_train_supernet(digits, TINY, tmp_path)
    changed = dataclasses.replace(TINY, **change)
    assert checkpoint_path(digits, changed, tmp_path) != checkpoint_path(digits, TINY, tmp_path)
    load_or_train_supernet(digits, changed, tmp_path)
    assert count_training == [TINY, changed]
    assert len(list(tmp_path.iterdir())) == 2


def test_changed_data_means_another_checkpoint(digits, tmp_path):
    images = digits.train.images.clone()
    images[0, 0, 0, 0] += 1.0
    other = dataclasses.replace(digits, train=Split(images, digits.train.labels))
    assert checkpoint_path(other, TINY, tmp_path) != checkpoint_path(digits, TINY, tmp_path)


def _assert_unusable(digits, tmp_path):
    path = checkpoint_path(digits, TINY, tmp_path)
    with pytest.raises(SuperNetCheckpointError) as info:
        load_or_train_supernet(digits, TINY, tmp_path)
    message = str(info.value)
    assert str(path) in message and "delete it" in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_truncated_checkpoint_is_an_error(digits, tmp_path):
    load_or_train_supernet(digits, TINY, tmp_path)
    path = checkpoint_path(digits, TINY, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_unusable(digits, tmp_path)


def test_garbage_checkpoint_is_an_error(digits, tmp_path):
    path = checkpoint_path(digits, TINY, tmp_path)
    path.write_bytes(b"not a checkpoint at all")
    _assert_unusable(digits, tmp_path)


def test_checkpoint_of_other_settings_is_an_error(digits, tmp_path):
    other = dataclasses.replace(TINY, seed=9)
    load_or_train_supernet(digits, other, tmp_path)
    checkpoint_path(digits, other, tmp_path).rename(checkpoint_path(digits, TINY, tmp_path))
    _assert_unusable(digits, tmp_path)


def test_failed_save_leaves_nothing(digits, tmp_path, monkeypatch):
    def broken_save(obj, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(sn.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        load_or_train_supernet(digits, TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- interrupted training ----------------------------------------------------------------------

THREE_EPOCHS = dataclasses.replace(TINY, epochs=3)


def stop_after_epoch(k: int, lines: list[str], kind: type[KeyboardInterrupt] = KeyboardInterrupt):
    """A ``progress`` that records its lines and stops (Ctrl-C, or ``kind``) after epoch ``k``."""

    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith(f"supernet epoch {k}/"):
            raise kind

    return progress


@pytest.mark.parametrize("kind", [KeyboardInterrupt, Terminated], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_supernet_resumes_after_its_last_epoch_exactly(digits, tmp_path, kind):
    whole = train_supernet(digits, THREE_EPOCHS)  # uninterrupted, no checkpoint of any kind
    checkpoint = checkpoint_path(digits, THREE_EPOCHS, tmp_path)
    epochs = epochs_path(checkpoint)
    lines: list[str] = []
    with pytest.raises(kind) as stop:
        load_or_train_supernet(digits, THREE_EPOCHS, tmp_path, stop_after_epoch(2, lines, kind))
    assert type(stop.value) is kind  # SIGTERM stays SIGTERM (exit status 143)
    assert str(stop.value) == (
        f"super-network training stopped after epoch 2 of 3: kept in {epochs}; the next run "
        "with the same settings resumes there"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [epochs.name]  # no trained network yet
    assert torch.load(epochs, weights_only=True)["epoch"] == 2

    lines.clear()
    rng = torch.random.get_rng_state()
    resumed = load_or_train_supernet(digits, THREE_EPOCHS, tmp_path, progress=lines.append)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the caller's RNG untouched
    assert lines[0] == f"resuming super-network training after epoch 2 of 3 from {epochs}"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "supernet epoch 3/3",
        f"saved super-network checkpoint {checkpoint}",
    ]
    assert same_weights(resumed, whole) and not resumed.training
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.name]  # epochs removed
    assert same_weights(load_or_train_supernet(digits, THREE_EPOCHS, tmp_path), whole)


def test_a_stop_in_the_first_epoch_keeps_nothing_and_says_so(digits, tmp_path, monkeypatch):
    real = sn.augment_batch
    calls = []

    def stop_in_the_second_batch(images, kind, generator):
        calls.append(kind)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(images, kind, generator)

    monkeypatch.setattr(sn, "augment_batch", stop_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt) as stop:
        load_or_train_supernet(digits, THREE_EPOCHS, tmp_path)
    assert str(stop.value) == (
        "super-network training stopped in epoch 1 of 3: no epoch finished, nothing kept"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_stop_while_resuming_keeps_the_epochs(digits, tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        load_or_train_supernet(digits, THREE_EPOCHS, tmp_path, stop_after_epoch(1, []))
    epochs = epochs_path(checkpoint_path(digits, THREE_EPOCHS, tmp_path))
    kept = epochs.read_bytes()

    def stopped_while_reading(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sn, "load_checkpoint", stopped_while_reading)
    with pytest.raises(KeyboardInterrupt) as stop:
        load_or_train_supernet(digits, THREE_EPOCHS, tmp_path)
    assert str(stop.value) == (
        f"super-network training stopped before it resumed: {epochs} is kept; the next run "
        "with the same settings resumes there"
    )
    assert epochs.read_bytes() == kept


def test_a_damaged_epoch_checkpoint_is_refused_with_its_name(digits, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        load_or_train_supernet(digits, THREE_EPOCHS, tmp_path, stop_after_epoch(1, []))
    epochs = epochs_path(checkpoint_path(digits, THREE_EPOCHS, tmp_path))
    epochs.write_bytes(epochs.read_bytes()[:100])
    with pytest.raises(SuperNetCheckpointError) as info:
        load_or_train_supernet(digits, THREE_EPOCHS, tmp_path)
    message = str(info.value)
    assert str(epochs) in message and "delete it to start the training over" in message
    assert "\n" not in message


# --- evaluating paths --------------------------------------------------------------------------


def test_evaluate_path_matches_the_extracted_network(digits, tiny_supernet):
    _, held = split_for_search(digits, TINY)
    tiny_supernet.train()
    result = evaluate_path(tiny_supernet, PAPER, held, TINY)
    assert tiny_supernet.training  # mode restored
    assert result.activity.images == TINY.eval_images
    assert 0.0 <= result.accuracy <= 1.0
    assert result.accuracy * TINY.eval_images == pytest.approx(round(result.accuracy * 64))
    assert result.spikes_per_image == result.activity.spikes > 0
    # AutoSNN's count: neuron spikes plus the three max-pooled spike maps of every step
    pooled = result.activity.pooled_spikes_by_layer
    assert set(pooled) == {"pool"}
    assert result.spikes_per_image == pytest.approx(result.neuron_spikes_per_image + pooled["pool"])
    # layers of the path only, named as in the standalone network (block3 is a skip)
    assert set(result.activity.spikes_by_layer) == {
        "stem_neuron",
        "head_neuron",
        *(f"blocks.{i}.neuron{k}" for i in (0, 1, 3, 4) for k in (1, 2)),
    }
    expected = measure_activity(tiny_supernet.extract(PAPER), held.images[: TINY.eval_images])
    for name, spikes in expected.spikes_by_layer.items():
        assert result.activity.spikes_by_layer[name] == pytest.approx(spikes, rel=1e-6, abs=1e-6)
    assert result.activity.synops == pytest.approx(expected.synops, rel=1e-6)
    assert result.activity.macs == pytest.approx(expected.macs, rel=1e-6)


def test_fitness_spikes_include_the_max_pooled_spike_maps(digits, tiny_supernet):
    # All skips: the first max pool pools the stem's spikes, so the pooled maps carry spikes.
    # An independent tally of what the standalone network's max pool emits at every call
    # (3 pools x T steps) must equal the difference between AutoSNN's and the neuron count.
    _, held = split_for_search(digits, TINY)
    skips = AutoSNNArchitecture.parse("skip,skip,skip,skip,skip")
    result = evaluate_path(tiny_supernet, skips, held, TINY)
    network = tiny_supernet.extract(skips)
    outputs = []
    handle = network.pool.register_forward_hook(lambda m, i, out: outputs.append(out.sum()))
    measure_activity(network, held.images[: TINY.eval_images])
    handle.remove()
    assert len(outputs) == 3 * TINY.timesteps
    by_hand = float(sum(outputs)) / TINY.eval_images
    assert by_hand > 0
    assert result.activity.pooled_spikes_by_layer == {"pool": pytest.approx(by_hand, rel=1e-6)}
    assert result.spikes_per_image - result.neuron_spikes_per_image == pytest.approx(by_hand)


def test_evaluate_path_uses_the_whole_held_out_split_by_default(digits, tiny_supernet):
    _, held = split_for_search(digits, TINY)
    whole = dataclasses.replace(TINY, eval_images=None)
    assert evaluate_path(tiny_supernet, PAPER, held, whole).activity.images == len(held) > 64


def test_evaluate_path_uses_at_most_the_held_out_images(digits, tiny_supernet):
    _, held = split_for_search(digits, TINY)
    few = Split(held.images[:5], held.labels[:5])
    result = evaluate_path(tiny_supernet, PAPER, few, dataclasses.replace(TINY, eval_images=50))
    assert result.activity.images == 5
    with pytest.raises(ValueError, match="empty held-out"):
        evaluate_path(tiny_supernet, PAPER, Split(held.images[:0], held.labels[:0]), TINY)


# --- fitness -----------------------------------------------------------------------------------


def test_fitness_formula():
    # by hand: 2 ** -0.08 = exp(-0.08 ln 2) = 0.946058, so 0.9 * 0.946058 = 0.851452;
    # 0.5 ** -0.08 = 1.057018, so 0.5 * 1.057018 = 0.528509
    assert fitness(0.9, 220_000, 110_000) == pytest.approx(0.851452, abs=1e-6)
    assert fitness(0.5, 55_000, 110_000) == pytest.approx(0.528509, abs=1e-6)
    assert fitness(0.8, 110_000, 110_000) == pytest.approx(0.8)
    assert fitness(0.8, 3.0, 7.0, lam=0.0) == pytest.approx(0.8)
    assert fitness(0.7, 10.0, 5.0, lam=-1.0) == pytest.approx(0.35)
    assert math.isclose(fitness(0.6, 1_000, 110_000), 0.6 * (1_000 / 110_000) ** -0.08)
    assert fitness(0.9, 0, 110_000) == 0.0  # a silent network scores nothing


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((0.5, 10, 0), "s_ref must be a positive number"),
        ((0.5, 10, -3.0), "s_ref must be a positive number"),
        ((0.5, -1, 10), "spikes must be a non-negative number"),
        ((1.5, 10, 10), r"accuracy must be in \[0, 1\]"),
        ((0.5, float("inf"), 10), "spikes must be"),
    ],
)
def test_fitness_rejects_bad_input(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        fitness(*args)


def test_reference_spikes_is_the_mean_over_seeded_paths(digits, tiny_supernet):
    _, held = split_for_search(digits, TINY)
    s_ref = reference_spikes(tiny_supernet, held, TINY, n_paths=3, seed=4)
    g = torch.Generator().manual_seed(4)
    spikes = [
        evaluate_path(tiny_supernet, sample_path(g), held, TINY).spikes_per_image for _ in range(3)
    ]
    assert s_ref == pytest.approx(sum(spikes) / 3)
    assert reference_spikes(tiny_supernet, held, TINY, n_paths=3, seed=4) == s_ref
    with pytest.raises(ValueError, match="n_paths must be a positive integer"):
        reference_spikes(tiny_supernet, held, TINY, n_paths=0)
