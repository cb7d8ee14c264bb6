"""The proxies of ``[score] kind`` other than SAHD's kernels (``tests/test_score.py``), the
scoring initialisations (``[score] inits``) and common random numbers between candidates."""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from test_objective import TINY  # noqa: E402

from optuna_spikenas.config import ConfigError, config_from_dict  # noqa: E402
from optuna_spikenas.macros import get_macro  # noqa: E402
from optuna_spikenas.objective import SpikeNASObjective  # noqa: E402
from optuna_spikenas.proxies.convs import convs_score  # noqa: E402
from optuna_spikenas.proxies.jacob_cov import (  # noqa: E402
    jacob_cov_score,
    jacobian_covariance_score,
)
from optuna_spikenas.proxies.params import params_score  # noqa: E402
from optuna_spikenas.snn.network import build_common_network  # noqa: E402
from optuna_spikenas.space import Architecture, architecture_params  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny(**score) -> dict:
    return {**TINY, "score": {**TINY["score"], **score}}


def light():
    return get_macro("light").for_data(1, 8, 10)


# --- jacob_cov against the paper's formula, written out in numpy ---------------------------


def paper_jacob_cov(jacobians: np.ndarray) -> float:
    """Mellor et al. (2020, v1): corrcoef of the rows, its eigenvalues, k = 1e-5."""
    correlations = np.corrcoef(jacobians)
    eigenvalues = np.linalg.eigvals(correlations).real
    k = 1e-5
    return float(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))


def test_jacobian_covariance_follows_the_paper_formula():
    rows = np.random.default_rng(0).normal(size=(12, 40))
    assert jacobian_covariance_score(torch.from_numpy(rows)) == pytest.approx(
        paper_jacob_cov(rows), rel=1e-9
    )


def test_jacob_cov_of_a_small_net_equals_its_analytic_jacobian_in_numpy():
    """y = W2 tanh(W1 x + b1): dΣy/dx_i = W1ᵀ (tanh'(W1 x_i + b1) ⊙ W2ᵀ 1), computed in numpy."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 3)).double()
    images = torch.randn(10, 6, dtype=torch.float64)
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2 = net[2].weight.detach().numpy()
    pre = images.numpy() @ w1.T + b1
    jacobians = ((1 - np.tanh(pre) ** 2) * w2.sum(axis=0)) @ w1
    assert jacob_cov_score(net, [images, images]) == pytest.approx(
        paper_jacob_cov(jacobians), rel=1e-7
    )


def test_jacob_cov_of_a_spiking_network_is_finite_repeatable_and_leaves_it_as_it_was():
    arch = Architecture.parse("0303 0030 0003 0000", 2, 4)
    network = build_common_network(arch, light(), 2, seed=5).eval()
    state = {k: v.clone() for k, v in network.state_dict().items()}
    batch = torch.rand(8, 1, 8, 8)
    first = jacob_cov_score(network, [batch])
    assert math.isfinite(first) and jacob_cov_score(network, [batch]) == first
    assert not network.training
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())
    assert all(p.grad is None for p in network.parameters())


def test_jacobian_covariance_of_a_constant_gradient_is_minus_inf():
    rows = torch.ones(4, 5)
    rows[1] = torch.arange(5.0)
    assert jacobian_covariance_score(rows) == -math.inf


# --- the counts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["0303 0030 0003 0000", "0111 0011 0001 0000", "0203 0040 0001 0000", "0001 0000 0000 0000"],
)
def test_params_score_is_the_built_networks_parameter_count(text):
    arch = Architecture.parse(text, 2, 4)
    network = build_common_network(arch, light(), 2, seed=0)
    assert params_score(arch, light()) == sum(p.numel() for p in network.parameters())


def test_convs_score_counts_conv_edges_on_an_input_output_path_in_every_cell():
    assert convs_score(Architecture.parse("0303 0030 0003 0000", 2, 4), light()) == 2 * 4
    # 0 -> 1 conv3x3, 1 -> 2 conv1x1, but node 2 never reaches the output: 1 conv per cell
    assert convs_score(Architecture.parse("0302 0020 0000 0000", 2, 4), light()) == 2 * 1
    two = Architecture.parse("0001 0000 0000 0000 / 0203 0001 0000 0000", 2, 4)
    assert convs_score(two, light()) == 0 + 2


# --- [score] inits and common random numbers ------------------------------------------------


def test_networks_built_with_one_seed_share_the_weights_of_what_they_have_in_common():
    a = build_common_network(Architecture.parse("0303 0030 0003 0000", 2, 4), light(), 2, 9)
    b = build_common_network(Architecture.parse("0333 0030 0002 0000", 2, 4), light(), 2, 9)
    c = build_common_network(Architecture.parse("0303 0030 0003 0000", 2, 4), light(), 2, 10)
    wa, wb, wc = a.state_dict(), b.state_dict(), c.state_dict()
    shared = [k for k in wa if k in wb and wa[k].shape == wb[k].shape and k.endswith("weight")]
    assert "stem.0.weight" in shared and "head.4.weight" in shared
    assert "body.0.ops.01.1.weight" in shared  # conv3x3 on edge 01 in both
    for key in shared:
        assert torch.equal(wa[key], wb[key]), key
    assert not torch.equal(wa["body.0.ops.23.1.weight"], wb["body.0.ops.23.1.weight"])  # 3x3/1x1
    assert not torch.equal(wa["stem.0.weight"], wc["stem.0.weight"])  # another seed
    # SNASNet's distributions: Kaiming-uniform with a = 2 bounds |w| by sqrt(6 / (5 fan_in))
    fan_in = wa["body.0.ops.01.1.weight"][0].numel()
    assert wa["body.0.ops.01.1.weight"].abs().max() <= math.sqrt(6 / (5 * fan_in))


def test_inits_average_the_score_and_record_its_spread():
    arch = Architecture.parse("0303 0030 0003 0000", 2, 4)
    single = SpikeNASObjective(config_from_dict(tiny()))
    three = SpikeNASObjective(config_from_dict(tiny(inits=3)))
    per_init = [three.score_network(three.build(arch, k), arch, k) for k in range(3)]
    assert per_init[0] == single.score(arch)  # the first initialisation is the default's
    assert len(set(per_init)) == 3
    assert three.score(arch) == pytest.approx(statistics.fmean(per_init), rel=1e-12)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(architecture_params(arch, three.space))
    study.optimize(three, n_trials=1)
    trial = study.trials[0]
    assert trial.value == pytest.approx(statistics.fmean(per_init), rel=1e-12)
    assert trial.user_attrs["score_per_init"] == [round(v, 4) for v in per_init]
    assert trial.user_attrs["score_spread"] == round(statistics.stdev(per_init), 4)


def test_equivalent_cells_get_one_score_and_one_trial_is_reused():
    """Cells that compute one function are scored as their representative, so the value does
    not depend on which member a sampler proposed; the second is a duplicate of the first."""
    objective = SpikeNASObjective(config_from_dict(tiny()))
    a = Architecture.parse("0111 0013 0001 0000", 2, 4)
    b = Architecture.parse("0131 0011 0001 0000", 2, 4)
    assert objective.score(a) == objective.score(b)
    study = optuna.create_study(direction="maximize")
    for arch in (a, b):
        study.enqueue_trial(architecture_params(arch, objective.space))
    study.optimize(objective, n_trials=2)
    assert study.trials[1].user_attrs["duplicate_of"] == 0
    assert study.trials[1].value == study.trials[0].value


@pytest.mark.parametrize("kind", ["params", "convs"])
def test_count_proxies_score_without_building_a_network(kind, monkeypatch):
    objective = SpikeNASObjective(config_from_dict(tiny(kind=kind)))
    monkeypatch.setattr(objective, "build", lambda *a, **k: pytest.fail("built a network"))
    arch = Architecture.parse("0303 0030 0003 0000", 2, 4)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(architecture_params(arch, objective.space))
    study.optimize(objective, n_trials=1)
    expected = {"params": params_score, "convs": convs_score}[kind](arch, objective.macro)
    assert study.trials[0].value == expected


def test_jacob_cov_is_a_study_kind():
    objective = SpikeNASObjective(config_from_dict(tiny(kind="jacob_cov")))
    arch = Architecture.parse("0303 0030 0003 0000", 2, 4)
    network = objective.build(arch)
    assert objective.score(arch) == jacob_cov_score(network, objective.batches)


def test_inits_beyond_the_limit_are_refused():
    with pytest.raises(ConfigError, match=r"\[score\] inits must be at most 64"):
        config_from_dict(tiny(inits=65))
    with pytest.raises(ConfigError, match=r"\[score\] inits"):
        config_from_dict(tiny(inits=0))
    assert replace(config_from_dict(tiny(inits=4)).score).inits == 4


# --- the search reports its uncertainty -------------------------------------------------------


def scored_trial(value: float, canonical: str, spread: float | None = None):
    attrs = {
        "feasible": True,
        "canonical": canonical,
        "architecture": canonical,
        "parameters": 100,
        "memory_bits": 3200,
        "weight_bits": 32,
    }
    if spread is not None:
        attrs |= {"score_spread": spread, "score_per_init": [value - spread, value + spread]}
    return optuna.trial.create_trial(value=value, user_attrs=attrs)


@pytest.mark.parametrize(("runner_up", "close"), [(-10.5, True), (-12.0, False)])
def test_summary_says_when_the_runner_up_is_within_the_best_scores_spread(runner_up, close, capsys):
    from optuna_spikenas.summary import print_summary

    study = optuna.create_study(direction="maximize")
    study.add_trial(scored_trial(-10.0, "A @ 4", spread=0.8))
    study.add_trial(scored_trial(-10.0, "A @ 4"))  # a duplicate of the best: not a rival
    study.add_trial(scored_trial(runner_up, "B @ 4"))
    print_summary(study, "sqlite:///x.db", "x")
    out = capsys.readouterr().out
    assert "best trial 0: score -10.0000 (spread 0.8000 over 2 initialisations)" in out
    assert ("trial 2 scores 0.5000 less, within the best's spread" in out) is close


def test_a_phases_candidates_share_the_weights_of_the_cells_it_keeps():
    """Cell-by-cell phase 3: two candidates for cell 3 after the same cells 1 and 2 have
    identical weights in everything before cell 3, in every initialisation."""
    config = config_from_dict({**tiny(inits=2), "space": {**TINY["space"], "num_cells": [3]}})
    objective = SpikeNASObjective(config)
    prefix = "0303 0030 0003 0000 / 0113 0001 0003 0000"
    first = Architecture.parse(f"{prefix} / 0111 0013 0001 0000", 3, 4)
    second = Architecture.parse(f"{prefix} / 0303 0000 0003 0000", 3, 4)
    for init in range(2):
        a = objective.build(first, init).state_dict()
        b = objective.build(second, init).state_dict()
        cell3 = 12  # body: cell 1, a reduction (6 modules), cell 2, a reduction, cell 3
        kept = [
            k
            for k in a
            if k.startswith("stem.") or (k.startswith("body.") and int(k.split(".")[1]) < cell3)
        ]
        assert any(k.startswith("body.6.ops") for k in kept)  # cell 2's edges
        assert kept and all(torch.equal(a[k], b[k]) for k in kept)
        assert not torch.equal(
            a["stem.0.weight"], objective.build(first, 1 - init).state_dict()["stem.0.weight"]
        )
