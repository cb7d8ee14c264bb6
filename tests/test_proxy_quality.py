"""``benchmarks/proxy_quality.py``: its statistics, its stratified sample and its label
evaluation, each against an independent computation."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import proxy_quality as pq  # noqa: E402

from optuna_spikenas.config import load_config  # noqa: E402
from optuna_spikenas.objective import SpikeNASObjective  # noqa: E402
from optuna_spikenas.proxies.convs import convs_score  # noqa: E402
from optuna_spikenas.train import TrainSettings, build_trainable, train_network  # noqa: E402

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.toml"


def tied_samples(seed: int, n: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Correlated data with many ties in both variables (few distinct values)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, n).astype(float)
    y = np.round(x + rng.normal(0, 2, n))
    return x, y


def pairs_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Tau-b written out: (concordant - discordant) / sqrt(untied pairs in x * in y)."""
    concordance, untied_x, untied_y = 0.0, 0, 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        concordance += dx * dy
        untied_x += dx != 0
        untied_y += dy != 0
    return concordance / math.sqrt(untied_x * untied_y)


@pytest.mark.parametrize("seed", range(4))
def test_kendall_tau_is_tau_b_with_ties(seed):
    x, y = tied_samples(seed)
    assert pq.kendall_tau(x, y) == pytest.approx(pairs_tau(x, y), abs=1e-12)


def test_constant_input_is_undefined():
    x, y = np.ones(6), np.arange(6.0)
    assert math.isnan(pq.kendall_tau(x, y))
    assert math.isnan(pq.spearman_rho(y, x))


def test_within_strata_tau_is_the_pair_weighted_mean():
    rng = np.random.default_rng(3)
    strata = np.array([0] * 5 + [2] * 8 + [4] * 1 + [6] * 4)
    x = rng.normal(size=len(strata))
    y = x + rng.normal(size=len(strata))
    y[strata == 6] = 1.0  # a constant stratum: undefined, left out
    expected, weight = 0.0, 0.0
    for s, n in ((0, 5), (2, 8)):  # stratum 4 has one member, stratum 6 is constant in y
        members = strata == s
        expected += n * (n - 1) / 2 * pairs_tau(x[members], y[members])
        weight += n * (n - 1) / 2
    assert pq.kendall_tau_within_strata(x, y, strata) == pytest.approx(expected / weight)


def test_within_strata_tau_ignores_differences_between_strata():
    """A proxy that only knows the stratum ranks perfectly overall but not within strata."""
    strata = np.repeat([0, 2, 4], 6)
    rng = np.random.default_rng(0)
    label = strata * 10 + rng.normal(size=len(strata))
    assert pq.kendall_tau(strata.astype(float), label) > 0.7
    assert math.isnan(pq.kendall_tau_within_strata(strata.astype(float), label, strata))


def test_stratified_resamples_keep_every_stratum_size():
    strata = np.array([0, 0, 0, 2, 2, 4, 4, 4, 4])
    for pick in pq.stratified_resamples(strata, 50, seed=1):
        assert sorted(strata[pick].tolist()) == sorted(strata.tolist())
    again = pq.stratified_resamples(strata, 50, seed=1)
    assert all(
        (a == b).all() for a, b in zip(pq.stratified_resamples(strata, 50, 1), again, strict=True)
    )


def test_correlations_and_intervals():
    x, y = tied_samples(5, n=30)
    strata = np.arange(30) % 3
    result = pq.correlations(x, y, strata, resamples=300, seed=0)
    assert result["kendall_tau"]["value"] == pytest.approx(stats.kendalltau(x, y)[0], abs=1e-4)
    assert result["spearman_rho"]["value"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-4)
    for name in ("kendall_tau", "kendall_tau_within_strata", "spearman_rho"):
        low, high = result[name]["ci95"]
        assert low <= result[name]["value"] <= high


def test_label_reproducibility_is_the_mean_over_seed_pairs():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=20)
    accuracy = np.stack([truth + rng.normal(scale=0.5, size=20) for _ in range(3)])
    result = pq.label_reproducibility(accuracy)
    expected = [pairs_tau(accuracy[a], accuracy[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert list(result["pairs"]) == ["0-1", "0-2", "1-2"]
    assert result["mean"] == pytest.approx(np.mean(expected), abs=1e-4)


def test_round_robin_takes_one_per_stratum_in_turn():
    groups = {4: ["a4", "b4", "c4"], 0: ["a0"], 2: ["a2", "b2"]}
    assert pq.round_robin(groups, 5) == ["a0", "a2", "a4", "b2", "b4"]
    with pytest.raises(RuntimeError):
        pq.round_robin(groups, 7)


def test_stratified_architectures_cover_every_conv_count():
    objective = SpikeNASObjective(load_config(QUICKSTART))
    archs = pq.stratified_architectures(objective, 14, seed=0)
    counts = [int(convs_score(a, objective.macro)) for a in archs]
    assert len({a.canonical_key() for a in archs}) == 14
    assert sorted(set(counts)) == [0, 2, 4, 6, 8, 10, 12]  # two cells, 0-6 convs each
    assert all(counts.count(c) == 2 for c in set(counts))


def test_batch_statistics_accuracy_uses_batch_statistics_and_restores_the_network():
    """Written out: train-mode BatchNorm on each shuffled batch, argmax, count; and the
    network's state (running statistics included) and mode are as before."""
    objective = SpikeNASObjective(load_config(QUICKSTART))
    arch = pq.stratified_architectures(objective, 8, seed=0)[5]
    settings = TrainSettings(
        epochs=1, batch_size=32, lr=0.005, optimizer="adam", timesteps=2, max_train_batches=3
    )
    dataset = objective.dataset
    network = build_trainable(arch, objective.macro, dataset, settings, seed=0)
    train_network(network, dataset, settings, seed=0)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    accuracy = pq.batch_statistics_accuracy(network, dataset.val, 250, 7, torch.device("cpu"))
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not network.training

    from spikingjelly.activation_based import functional

    order = torch.randperm(len(dataset.val), generator=torch.Generator().manual_seed(7))
    copy = build_trainable(arch, objective.macro, dataset, settings, seed=0)
    copy.load_state_dict(before)
    copy.train()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(order), 250):
            batch = order[start : start + 250]
            correct += int(
                (copy(dataset.val.images[batch]).argmax(1) == dataset.val.labels[batch]).sum()
            )
            functional.reset_net(copy)
    assert accuracy == correct / len(dataset.val)
