"""Tests for short supervised training (optuna_spikenas.train) on the tiny ``digits`` dataset."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import base, functional  # noqa: E402

import optuna_spikenas.train as train_module  # noqa: E402
from optuna_spikenas.data import Dataset, load_dataset  # noqa: E402
from optuna_spikenas.macros import Macro, get_macro  # noqa: E402
from optuna_spikenas.snn.network import build_network  # noqa: E402
from optuna_spikenas.space import Architecture  # noqa: E402
from optuna_spikenas.train import (  # noqa: E402
    TrainSettings,
    cosine_lr,
    evaluate,
    train_architecture,
    train_network,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# A residual cell (conv3x3 on 0 -> 1, skips 1 -> 3 and 0 -> 3): trains fast on 8x8 digits.
RESIDUAL_CELL = "0301 0001 0000 0000"
# SNASNet's CIFAR10 cell, with backward edges.
CIFAR10_CELL = "0303 0030 2002 0200"

LIGHT = get_macro("light").for_data(1, 8, 10)
# The snasnet head has dropout (global RNG): shrunk so that it trains quickly on 8x8 images.
SNASNET_SMALL = dataclasses.replace(
    get_macro("snasnet-cifar10").for_data(1, 8, 10), hidden=32, voters_per_class=2
)
QUICK = TrainSettings(epochs=2, batch_size=32, max_train_batches=4, timesteps=2)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def arch(cell: str = RESIDUAL_CELL) -> Architecture:
    return Architecture.parse(cell, 2, 8)


def weights(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def is_fresh(network: torch.nn.Module) -> bool:
    """No neuron or cell holds state from an earlier batch (as after ``reset_net``)."""
    return not any(
        isinstance(value, torch.Tensor | list)
        for module in network.modules()
        if isinstance(module, base.MemoryModule)
        for _, value in module.named_memories()
    )


def record_freshness(network: torch.nn.Module) -> list[bool]:
    """``is_fresh`` at the start of every forward call (= every batch) of ``network``."""
    fresh: list[bool] = []
    network.register_forward_pre_hook(lambda module, args: fresh.append(is_fresh(module)))
    return fresh


# 1. Learning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        # Adam at 3e-2 learns fastest; over seeds 0-7 it reached 0.65-0.90 val accuracy.
        TrainSettings(epochs=3, batch_size=32, lr=3e-2, optimizer="adam", timesteps=2),
        # SNASNet's SGD recipe (momentum 0.9, cosine to 0.001) needs a larger lr on a net this
        # small and a run this short: lr 0.5 reached 0.62-0.86 over seeds 0-7 (lr 0.1: ~0.2).
        TrainSettings(epochs=3, batch_size=32, lr=0.5, optimizer="sgd", timesteps=2),
    ],
    ids=["adam", "sgd"],
)
def test_training_beats_chance(digits: Dataset, settings: TrainSettings) -> None:
    result = train_architecture(arch(), LIGHT, digits, settings, seed=0)
    assert len(result.val_accuracy) == len(result.train_loss) == settings.epochs
    assert result.final_val_accuracy >= 0.5  # chance is 0.1
    assert result.train_loss[-1] < result.train_loss[0] < math.log(10) + 0.1
    assert result.seconds > 0


# 2. Determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("macro", [LIGHT, SNASNET_SMALL], ids=["gap-head", "snasnet-head"])
def test_same_seed_same_weights_and_global_rng_untouched(digits: Dataset, macro: Macro) -> None:
    def run(seed: int, global_seed: int) -> tuple[dict[str, torch.Tensor], list, list]:
        torch.manual_seed(global_seed)  # the caller's RNG state must not matter ...
        before = torch.random.get_rng_state()
        network = build_network(arch(CIFAR10_CELL), macro, QUICK.timesteps, seed=seed)
        result = train_network(network, digits, QUICK, seed=seed)
        assert torch.equal(torch.random.get_rng_state(), before)  # ... nor change
        return weights(network), result.val_accuracy, result.train_loss

    first, second, other = run(7, global_seed=1), run(7, global_seed=2), run(8, global_seed=1)
    assert first[1:] == second[1:]
    assert first[0].keys() == second[0].keys() == other[0].keys()
    for name in first[0]:
        assert torch.equal(first[0][name], second[0][name]), name
    assert any(not torch.equal(first[0][n], other[0][n]) for n in first[0] if "weight" in n)


def test_shuffle_and_dropout_follow_the_seed_not_the_initial_weights(digits: Dataset) -> None:
    """Same initial weights, different training seeds: the training itself differs."""
    trained = []
    for seed in (1, 2):
        network = build_network(arch(), SNASNET_SMALL, QUICK.timesteps, seed=0)
        train_network(network, digits, QUICK, seed=seed)
        trained.append(weights(network))
    assert any(not torch.equal(trained[0][n], trained[1][n]) for n in trained[0])


def test_train_architecture_equals_build_then_train(digits: Dataset) -> None:
    result = train_architecture(arch(), LIGHT, digits, QUICK, seed=3)
    network = build_network(arch(), LIGHT, QUICK.timesteps, seed=3)
    again = train_network(network, digits, QUICK, seed=3)
    assert (result.val_accuracy, result.train_loss) == (again.val_accuracy, again.train_loss)


def test_train_architecture_rejects_a_macro_not_fitted_to_the_data(digits: Dataset) -> None:
    with pytest.raises(ValueError, match="for_data"):
        train_architecture(arch(), get_macro("light"), digits, QUICK, seed=0)


# 3. evaluate ---------------------------------------------------------------------------------


def test_evaluate_matches_a_plain_loop(digits: Dataset) -> None:
    network = build_network(arch(), LIGHT, 3, seed=0)
    settings = TrainSettings(epochs=1, batch_size=32, lr=3e-2, optimizer="adam")
    train_network(network, digits, settings, seed=0)
    network.train()  # evaluate switches to eval mode and back

    batch_size = 50  # 179 val images: the last batch is partial
    network(digits.val.images[:5])  # stale state that evaluate must not see
    fresh = record_freshness(network)
    accuracy = evaluate(network, digits.val, batch_size)
    assert network.training
    assert fresh == [True] * 4  # reset before every batch ...
    assert is_fresh(network)  # ... and after the last one

    network.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(digits.val), batch_size):
            out = network(digits.val.images[start : start + batch_size])
            labels = digits.val.labels[start : start + batch_size]
            correct += int((out.argmax(dim=1) == labels).sum())
            functional.reset_net(network)
    expected = correct / len(digits.val)

    assert accuracy == expected
    assert 0.2 < accuracy <= 1.0  # trained: a non-trivial number to agree on
    assert evaluate(network, digits.val, batch_size) == accuracy  # no state left behind


def test_every_training_and_evaluation_batch_starts_fresh(digits: Dataset) -> None:
    network = build_network(arch(CIFAR10_CELL), LIGHT, QUICK.timesteps, seed=0)
    fresh = record_freshness(network)
    train_network(network, digits, QUICK, seed=0)
    val_batches = math.ceil(len(digits.val) / QUICK.batch_size)
    assert fresh == [True] * QUICK.epochs * (QUICK.max_train_batches + val_batches)
    assert is_fresh(network)


def test_evaluate_rejects_a_bad_batch_size(digits: Dataset) -> None:
    network = build_network(arch(), LIGHT, 2, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(network, digits.val, 0)


# 4. on_epoch ---------------------------------------------------------------------------------


def test_on_epoch_sees_every_epoch_with_the_results_numbers(digits: Dataset) -> None:
    calls: list[tuple[int, float, float]] = []
    settings = dataclasses.replace(QUICK, epochs=3)
    result = train_architecture(
        arch(), LIGHT, digits, settings, seed=0, on_epoch=lambda *args: calls.append(args)
    )
    assert calls == list(zip(range(3), result.val_accuracy, result.train_loss, strict=True))


def test_an_exception_in_on_epoch_stops_training_and_propagates(digits: Dataset) -> None:
    class Pruned(Exception):
        pass

    calls: list[int] = []

    def prune_after_first(epoch: int, accuracy: float, loss: float) -> None:
        calls.append(epoch)
        raise Pruned

    before = torch.random.get_rng_state()
    with pytest.raises(Pruned):
        train_architecture(arch(), SNASNET_SMALL, digits, QUICK, seed=0, on_epoch=prune_after_first)
    assert calls == [0]
    assert torch.equal(torch.random.get_rng_state(), before)


# 5. Learning-rate schedule -------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 7, 100])
def test_cosine_lr_follows_the_formula(total: int) -> None:
    lr, min_lr = 0.1, 0.001
    for step in range(total + 1):
        expected = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / total))
        assert cosine_lr(step, total, lr, min_lr) == pytest.approx(expected, rel=1e-12)
    assert cosine_lr(0, total, lr, min_lr) == lr
    assert cosine_lr(total, total, lr, min_lr) == pytest.approx(min_lr, rel=1e-12)
    last = cosine_lr(total - 1, total, lr, min_lr)  # the last step actually taken
    assert min_lr < last <= min_lr + (lr - min_lr) * (math.pi / total) ** 2 / 4 + 1e-15
    values = [cosine_lr(s, total, lr, min_lr) for s in range(total + 1)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("step, total", [(-1, 10), (11, 10), (0, 0)])
def test_cosine_lr_rejects_steps_outside_the_run(step: int, total: int) -> None:
    with pytest.raises(ValueError, match="step"):
        cosine_lr(step, total, 0.1, 0.001)


def test_training_sets_the_scheduled_lr_before_every_step(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []

    def no_learning(step: int, total_steps: int, lr: float, min_lr: float) -> float:
        seen.append((step, total_steps))
        return 0.0

    monkeypatch.setattr(train_module, "cosine_lr", no_learning)
    network = build_network(arch(), LIGHT, 2, seed=0)
    params = {n: p.detach().clone() for n, p in network.named_parameters()}
    train_network(network, digits, QUICK, seed=0)  # 2 epochs x 4 batches

    total = QUICK.epochs * QUICK.max_train_batches
    assert seen == [(step, total) for step in range(total)]
    for name, param in network.named_parameters():  # lr 0: SGD leaves the parameters alone
        assert torch.equal(param, params[name]), name


# 6. Settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", 1.5),
        ("batch_size", 0),
        ("batch_size", True),
        ("optimizer", "rmsprop"),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("min_lr", 0.5),  # above lr
        ("min_lr", -0.1),
        ("momentum", 1.0),
        ("weight_decay", -1e-4),
        ("max_train_batches", 0),
        ("timesteps", 0),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        TrainSettings(**{field: value})


def test_default_settings_are_snasnets_recipe() -> None:
    settings = TrainSettings()
    assert (settings.optimizer, settings.lr, settings.momentum, settings.min_lr) == (
        "sgd",
        0.1,
        0.9,
        0.001,
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_weight_decay_reaches_the_optimizer(optimizer: str) -> None:
    from optuna_spikenas.train import make_optimizer

    net = build_network(Architecture.parse(RESIDUAL_CELL, 1, 2), LIGHT, timesteps=1, seed=0)
    settings = TrainSettings(optimizer=optimizer, lr=0.1, weight_decay=5e-4)
    opt = make_optimizer(net, settings)
    assert [group["weight_decay"] for group in opt.param_groups] == [5e-4]
    if optimizer == "sgd":  # a zero gradient: one SGD step is w - lr * wd * w, by hand
        before = [p.detach().clone() for p in net.parameters()]
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        for w0, p in zip(before, net.parameters(), strict=True):
            torch.testing.assert_close(p.detach(), w0 - 0.1 * 5e-4 * w0)
