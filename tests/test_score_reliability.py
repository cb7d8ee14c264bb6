"""``benchmarks/score_reliability.py`` and ``benchmarks/phase_agreement.py`` on a tiny setting:
their statistics against independent computations, and one real (small) run of each."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import phase_agreement as pa  # noqa: E402
import score_reliability as sr  # noqa: E402

TINY = """
seed = 0
[dataset]
name = "digits"
[space]
macro = "light"
num_cells = [2]
widths = [4]
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 20_000
"""


def test_seed_agreement_is_the_mean_pairwise_kendall_tau_and_the_two_spreads():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=12)
    by_seed = {s: list(truth + rng.normal(0, 0.5, 12)) for s in range(3)}
    out = sr.seed_agreement(by_seed)
    pairs = [
        stats.kendalltau(by_seed[a], by_seed[b])[0] for a, b in itertools.combinations(range(3), 2)
    ]
    assert out["tau"] == pytest.approx(np.mean(pairs), abs=1e-4)
    table = np.array([by_seed[s] for s in range(3)])
    assert out["sd_within"] == pytest.approx(table.std(axis=0, ddof=1).mean(), abs=1e-4)
    assert out["sd_across"] == pytest.approx(table.mean(axis=0).std(ddof=1), abs=1e-4)


def test_a_small_reliability_run_scores_every_architecture_under_every_seed(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    args = ["--config", str(config), "--archs", "4", "--seeds", "0", "1", "--json"]
    assert sr.main([*args, "--variants", "crn 32x1", "convs"]) == 0
    result = json.loads(capsys.readouterr().out)
    crn = result["variants"]["crn 32x1"]
    assert len(result["architectures"]) == 4 and set(crn["scores"]) == {"0", "1"}
    assert result["variants"]["convs"]["tau"] == 1.0  # a count does not depend on the seed
    assert crn["scores"]["0"] != crn["scores"]["1"]  # other weights and batches


def test_studies_are_compared_over_the_architectures_both_scored(tmp_path):
    storages = []
    for shift, name in ((0.0, "a"), (0.3, "b")):
        storage = f"sqlite:///{tmp_path / name}.db"
        study = optuna.create_study(storage=storage, study_name="quickstart")
        for k in range(6):
            attrs = {"canonical": f"arch{k}", "feasible": True}
            study.add_trial(optuna.trial.create_trial(value=k + shift * (k % 2), user_attrs=attrs))
        storages.append(storage)
    result = sr.compare_studies(storages, "quickstart")
    assert result["common_architectures"] == 6 and result["tau"] == pytest.approx(1.0)


def test_phase_agreement_counts_pairs_with_the_same_earlier_cells():
    a, b = "0111 0013 0001 0000", "0131 0011 0001 0000"  # one function: the same winner
    c = "0303 0010 0001 0000"
    runs = [
        {"phases": [{"k": 2, "winner": a}, {"k": 3, "winner": c}]},
        {"phases": [{"k": 2, "winner": b}, {"k": 3, "winner": c}]},
        {"phases": [{"k": 2, "winner": c}, {"k": 3, "winner": a}]},
    ]
    out = pa.agreement(runs)
    assert out["per_phase"]["phase 2"] == {"same": 1, "pairs": 3}
    assert out["per_phase"]["phase 3"] == {"same": 1, "pairs": 1}  # only runs 1 and 2 compare
    assert out["same_result"] == 2
