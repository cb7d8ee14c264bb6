"""``benchmarks/search_accuracy.py``: the configs it runs are the package's valid configs of the
three methods, and its curve reads a study's trials as described."""

from __future__ import annotations

import argparse
import sys
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import search_accuracy as sa  # noqa: E402

from optuna_spikenas.config import load_config  # noqa: E402


def args(quick: bool) -> argparse.Namespace:
    return argparse.Namespace(quick=quick, train_batches=7)


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("method", list(sa.METHODS))
def test_method_configs_are_valid_and_differ_only_in_the_search(tmp_path, method, quick):
    document = sa.method_config(method, args(quick))
    path = tmp_path / "c.toml"
    path.write_text(sa.to_toml(document))
    assert tomllib.loads(path.read_text()) == {
        table: {k: v for k, v in values.items() if v is not None}
        if isinstance(values, dict)
        else values
        for table, values in document.items()
    }
    config = load_config(path)  # validated as optimize would
    base = load_config(sa.BASE_CONFIG)
    assert config.space == base.space and config.budget == base.budget
    assert config.train.max_train_batches == 7
    assert config.train.objectives == "accuracy"
    search = config.search
    if method == "tpe+hyperband":
        assert (search.sampler, search.screen, search.pruner) == ("tpe", None, "hyperband")
    elif method == "score-only":
        assert (search.trained, search.pruner) == (1, "none")
        assert (
            search.screen == sa.method_config("screen-then-train", args(quick))["search"]["screen"]
        )
    else:
        assert (search.sampler, search.pruner) == ("random", "hyperband")
        assert search.trained > 1


def test_summarize_curve_counts_only_fully_trained_trials():
    origin = datetime(2026, 1, 1, 12, 0, 0)
    # (value, seconds after origin when it completed, state, user attributes)
    rows = [
        (float("-inf"), 5, optuna.trial.TrialState.COMPLETE, {"stage": "screen"}),
        (0.40, 30, optuna.trial.TrialState.COMPLETE, {"test_accuracy": 0.38, "architecture": "a"}),
        (None, 40, optuna.trial.TrialState.PRUNED, {}),
        (0.35, 50, optuna.trial.TrialState.COMPLETE, {}),
        (0.55, 90, optuna.trial.TrialState.COMPLETE, {"test_accuracy": 0.5, "architecture": "b"}),
    ]
    trials = []
    for number, (value, seconds, state, attrs) in enumerate(rows):
        trials.append(
            optuna.trial.FrozenTrial(
                number=number,
                state=state,
                value=value,
                datetime_start=origin + timedelta(seconds=seconds - 3),
                datetime_complete=origin + timedelta(seconds=seconds),
                params={},
                distributions={},
                user_attrs=attrs,
                system_attrs={},
                intermediate_values={},
                trial_id=number,
            )
        )
    result = sa.summarize(trials)
    assert result["curve"] == [[28.0, 0.4], [88.0, 0.55]]  # from the first start, at 2 s
    assert result["best_val_accuracy"] == 0.55
    assert result["best_reached_seconds"] == 88.0
    assert result["test_accuracy_of_selected"] == 0.5
    assert result["selected_architecture"] == "b"
    assert (result["trained"], result["pruned"], result["screened"]) == (3, 1, 1)


def test_spread():
    assert sa.spread([0.5, None, 0.7]) == {
        "mean": 0.6,
        "sd": 0.1414,
        "min": 0.5,
        "max": 0.7,
        "n": 2,
    }
    assert sa.spread([None])["mean"] is None


def test_svg_figure_is_well_formed_with_a_curve_per_run():
    import xml.etree.ElementTree as ET

    runs = [
        {
            "method": m,
            "seed": s,
            "curve": [[10.0 + s, 0.3], [50.0, 0.4 + s / 10]],
            "wall_seconds": 80.0,
        }
        for m in sa.METHODS
        for s in range(2)
    ]
    runs.append({"method": "score-only", "seed": 2, "curve": [], "wall_seconds": 20.0})
    report = {"runs": runs, "quick": False, "settings": {"budget_seconds": 60.0, "seeds": 3}}
    root = ET.fromstring(sa.svg_figure(report))
    namespace = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{namespace}path")) == 6  # one step curve per run with a value
    assert len(root.findall(f"{namespace}polyline")) == 3  # one mean per method
    assert sa.best_at(runs[0], 30.0) == 0.3 and sa.best_at(runs[0], 5.0) is None
