"""SpikeNAS's operation analysis: sampling per op set, statistics, the rule, caching, the CLI."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from optuna_spikenas.cli import main
from optuna_spikenas.config import config_from_dict
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.op_analysis import (
    RemovalEvidence,
    analyze_ops,
    bootstrap_difference,
    count_architectures,
    is_removable,
    op_analysis_figure,
    propose_ops,
    sample_architectures,
    score_stats,
    top_quartile_mean,
)
from optuna_spikenas.space import OPS, ZERO, Architecture, enumerate_cells, invalid_reason, op_code

TINY = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "space": {"macro": "light", "num_cells": [2], "widths": [4]},
    "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
    "search": {"n_trials": 1},
}
TINY_TOML = """
seed = 3
[dataset]
name = "digits"
[space]
macro = "light"
widths = [4]
[score]
batch_size = 16
repeats = 1
timesteps = 2
[search]
n_trials = 1
"""


def tiny_config(**budget):
    return config_from_dict({**TINY, "budget": budget})


@pytest.fixture(scope="module")
def objective(one_thread):
    return SpikeNASObjective(tiny_config())


# --- sampling ------------------------------------------------------------------------------


@pytest.mark.parametrize("removed", OPS)
def test_samples_use_only_the_set_s_ops_and_are_valid_and_distinct(removed):
    space = tiny_config().search_space()
    allowed = {op_code(o) for o in OPS if o != removed}
    archs = sample_architectures(allowed, 30, np.random.default_rng(7), space)
    assert len(archs) == 30
    assert len({a.canonical_key() for a in archs}) == 30
    for arch in archs:
        assert invalid_reason(arch, space) is None
        assert arch.cells[0] == arch.cells[1]  # the config shares one cell
        upper = [arch.cells[0].matrix[i][j] for i in range(4) for j in range(i + 1, 4)]
        assert set(upper) <= allowed | {ZERO}
        if removed == "zero":
            assert ZERO not in upper  # every edge carries an op
        else:
            assert op_code(removed) not in upper
    again = sample_architectures(allowed, 30, np.random.default_rng(7), space)
    assert again == archs  # seeded


def test_a_small_op_set_is_exhausted_and_counted_like_an_independent_enumeration():
    space = tiny_config().search_space()
    for ops in (("zero", "skip"), ("skip", "conv3x3"), ("zero", "skip", "conv3x3")):
        codes = [op_code(o) for o in ops]
        brute = {
            cell.canonical()
            for cell in enumerate_cells(codes)
            if invalid_reason(Architecture((cell, cell), 4), space) is None
        }
        assert count_architectures(ops, space) == len(brute)
    archs = sample_architectures(("zero", "skip"), 40, np.random.default_rng(0), space)
    assert len(archs) == count_architectures(("zero", "skip"), space) < 40
    assert all(set(a.cells[0].count_ops()) == {op_code("skip")} for a in archs)


# --- statistics ----------------------------------------------------------------------------


def test_top_quartile_mean_takes_the_best_ceil_quarter():
    assert top_quartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == 7.5  # k = 2
    assert top_quartile_mean([5, 1, 4, 2, 3]) == 4.5  # k = ceil(5/4) = 2
    assert top_quartile_mean([3.0]) == 3.0
    stats = score_stats([1.0, 2.0, float("-inf"), 3.0, 4.0])
    assert (stats.count, stats.non_finite, stats.mean, stats.max) == (4, 1, 2.5, 4.0)
    assert stats.median == 2.5 and stats.p90 == pytest.approx(3.7)


def test_bootstrap_interval_matches_the_exact_resampling_distribution():
    # values [0, 1, 2, 3]: k = 1, so T(x*) is the max of 4 draws with replacement, whose law is
    # P(max <= m) = ((m + 1) / 4) ** 4: P(0) = 0.4 %, P(<= 1) = 6.25 %, P(<= 2) = 31.6 %. The
    # reference [5, 5, 5, 5] is constant, so Δ* = max - 5 and the exact 95 % percentile
    # interval is [1 - 5, 3 - 5]; the point estimate is 3 - 5.
    estimate, low, high = bootstrap_difference([0, 1, 2, 3], [5, 5, 5, 5], np.random.default_rng(1))
    assert (estimate, low, high) == (-2.0, -4.0, -2.0)
    # constant samples: no spread at all
    assert bootstrap_difference([2.0] * 9, [1.0] * 5, np.random.default_rng(0)) == (1.0, 1.0, 1.0)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    widths = []
    for n in (12, 400):
        a, b = rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)
        estimate, low, high = bootstrap_difference(a, b, np.random.default_rng(5))
        assert low <= estimate <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    same = bootstrap_difference(a, b, np.random.default_rng(5))
    assert same == bootstrap_difference(a, b, np.random.default_rng(5))  # seeded


# --- the proposal rule ---------------------------------------------------------------------


def evidence(op, diff, high, drop=None):
    return RemovalEvidence(op, diff, high, drop)


def test_rule_interval_touching_or_above_zero_is_removable_below_zero_is_not():
    assert is_removable(evidence("zero", -0.5, 0.3))  # includes 0
    assert is_removable(evidence("zero", 0.8, 1.5))  # above 0
    assert is_removable(evidence("zero", -0.5, 0.0))  # ends at 0
    assert not is_removable(evidence("zero", -1.0, -0.1))  # below 0
    assert not is_removable(evidence("zero", None, None))  # no evidence: keep
    assert is_removable(evidence("zero", 0.1, 0.5, drop=0.9), accuracy_measured=True)
    assert not is_removable(evidence("zero", 0.1, 0.5, drop=1.5), accuracy_measured=True)
    assert not is_removable(evidence("zero", 0.1, 0.5, drop=None), accuracy_measured=True)


def test_rule_proposes_the_ops_that_are_not_removable():
    spikenas_like = [
        evidence("zero", 0.2, 0.9),
        evidence("skip", -1.5, -0.4),
        evidence("conv1x1", -0.1, 0.6),
        evidence("conv3x3", -3.0, -1.2),
        evidence("avgpool3x3", 0.4, 1.1),
    ]
    assert propose_ops(spikenas_like) == ("skip", "conv3x3")
    # accuracy can keep an op the score would drop: conv1x1 costs 2 points
    with_accuracy = [
        evidence("zero", 0.2, 0.9, 0.0),
        evidence("skip", -1.5, -0.4, 3.0),
        evidence("conv1x1", -0.1, 0.6, 2.0),
        evidence("conv3x3", -3.0, -1.2, 5.0),
        evidence("avgpool3x3", 0.4, 1.1, -0.5),
    ]
    assert propose_ops(with_accuracy, accuracy_measured=True) == ("skip", "conv1x1", "conv3x3")


def test_rule_adds_ops_back_in_order_of_harm_until_there_is_something_to_search():
    from optuna_spikenas.space import distinct_cells

    only_conv3x3 = [  # the measured situation: only conv3x3 is not removable
        evidence("zero", -1.1, 2.7),
        evidence("skip", 0.1, 3.9),
        evidence("conv1x1", -4.0, 2.7),
        evidence("conv3x3", -6.4, -1.8),
        evidence("avgpool3x3", 0.5, 5.2),
    ]
    # {conv3x3} is one cell; conv1x1 (smallest diff among the removable) makes it 64
    assert len(distinct_cells(("conv3x3",))) == 1
    assert propose_ops(only_conv3x3) == ("conv1x1", "conv3x3")
    everything = [
        evidence("zero", -2.0, 0.5),
        evidence("skip", 0.3, 1.0),
        evidence("conv1x1", 0.1, 0.9),
        evidence("conv3x3", -0.7, 0.2),
        evidence("avgpool3x3", 0.5, 1.2),
    ]
    proposed = propose_ops(everything)
    assert len(distinct_cells(proposed)) >= 32
    # a minimal prefix of the harm order zero, conv3x3, conv1x1, skip, avgpool3x3
    order = ["zero", "conv3x3", "conv1x1", "skip", "avgpool3x3"]
    prefix = order[: len(proposed)]
    assert set(proposed) == set(prefix)
    assert len(distinct_cells(tuple(prefix[:-1]))) < 32
    assert propose_ops(everything, min_cells=1) == ("zero", "conv3x3")


# --- the analysis --------------------------------------------------------------------------


def test_an_architecture_shared_by_two_sets_is_scored_once(objective, monkeypatch):
    calls: Counter[str] = Counter()
    score = objective.score

    def counting(arch):
        calls[arch.canonical_key()] += 1
        return score(arch)

    monkeypatch.setattr(objective, "score", counting)
    lines: list[str] = []
    analysis = analyze_ops(objective, samples=6, seed=1, progress=lines.append)
    per_set = [
        set(Architecture.parse(a, 2, 4).canonical_key() for a in r.architectures)
        for r in analysis.sets
    ]
    shared = sum(len(s) for s in per_set) - len(set().union(*per_set))
    assert shared > 0  # this seed draws some architectures into two or more sets
    assert set(calls.values()) == {1}
    assert sum(calls.values()) == analysis.scored_architectures == len(set().union(*per_set))
    assert len(lines) == 7 and lines[0].strip().startswith("full:")
    assert [r.removed for r in analysis.removals] == list(OPS)
    for r in analysis.removals:
        assert r.removed not in {OPS[c] for a in r.architectures for c in _codes(a)}
        assert (r.diff is None) == (r.stats.count == 0)
        if r.diff is not None:
            assert r.diff == pytest.approx(
                r.stats.top_quartile_mean - analysis.full.stats.top_quartile_mean
            )
    assert analysis.proposed.ops == analysis.proposed_ops
    assert len(op_analysis_figure(analysis).data) == 7  # full, 5 removals, proposed


def _codes(text: str) -> set[int]:
    cell = Architecture.parse(text, 2, 4).cells[0]
    return {cell.matrix[i][j] for i in range(4) for j in range(i + 1, 4)}


def test_over_budget_samples_are_counted_and_never_scored(objective, monkeypatch):
    small = Architecture.parse("0111 0011 0001 0000", 2, 4)
    budget = memory_report(small, objective.macro).parameters + 200
    tight = SpikeNASObjective(tiny_config(max_parameters=budget))
    scored: list[Architecture] = []
    score = tight.score
    monkeypatch.setattr(tight, "score", lambda a: scored.append(a) or score(a))
    analysis = analyze_ops(tight, samples=5, seed=0)
    over = [a for r in analysis.sets for a in r.over_budget]
    assert over  # conv-heavy samples exceed 200 spare parameters
    assert all(memory_report(a, tight.macro).parameters <= budget for a in scored)
    assert not {str(a) for a in scored} & set(over)
    for r in analysis.sets:
        assert r.sampled == len(r.scores) + len(r.over_budget)


def test_short_training_measures_the_top_three_of_each_set(objective):
    from optuna_spikenas.train import TrainSettings

    settings = TrainSettings(epochs=1, batch_size=64, max_train_batches=1, timesteps=2)
    analysis = analyze_ops(objective, samples=4, seed=1, train_settings=settings)
    assert analysis.accuracy_measured
    for r in analysis.sets:
        assert len(r.trained) == min(3, r.stats.count)
        finite = [(s, a) for s, a in zip(r.scores, r.architectures, strict=True) if s > -np.inf]
        best = sorted(finite, reverse=True)[:3]
        assert set(r.trained) == {a for _, a in best}
        assert all(0.0 <= acc <= 1.0 for acc in r.accuracies)


# --- the command line ----------------------------------------------------------------------


def test_cli_writes_a_self_contained_figure_and_round_tripping_json(tmp_path, capsys, one_thread):
    config = tmp_path / "ops.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "report"
    argv = ["analyze-ops", "--config", str(config), "--samples", "3", "--out", str(out)]
    assert main([*argv, "--seed", "4"]) == 0
    printed = capsys.readouterr()
    assert "Δ top25% [95% CI]" in printed.out and "Proposed op set: {" in printed.out
    assert len(printed.err.strip().splitlines()) == 1 + 7  # header, one line per set
    html = (out / "op_analysis.html").read_text()
    assert "plotly.js v" in html and len(html) > 1_000_000  # plotly.js embedded: works offline
    assert re.search(r"<script[^>]*\bsrc=", html) is None
    text = (out / "op_analysis.json").read_text()
    data = json.loads(text)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["samples"] == 3 and data["seed"] == 4
    assert [s["name"] for s in data["sets"]] == [
        "full",
        *(f"without {op}" for op in OPS),
        "proposed",
    ]
    assert data["sets"][-1]["ops"] == data["proposed_ops"]
    assert data["reproduces_spikenas"] == (set(data["proposed_ops"]) == {"skip", "conv3x3"})
    for s in data["sets"]:
        assert s["scored"] == len(s["architectures"]) and s["stats"]["count"] <= s["scored"]
        assert all(isinstance(a["score"], float | None) for a in s["architectures"])
    assert main([*argv, "--quiet", "--seed", "4"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("flag", "value"), [("--samples", "0"), ("--train-epochs", "-1"), ("--seed", "-2")]
)
def test_cli_bad_values_exit_2_with_one_line(tmp_path, capsys, flag, value):
    config = tmp_path / "ops.toml"
    config.write_text(TINY_TOML)
    code = main(["analyze-ops", "--config", str(config), "--out", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and flag in err
