"""The provided objective: constraints, never scoring what is over budget, duplicate reuse."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from optuna_spikenas.config import config_from_dict
from optuna_spikenas.constraint_list import LIST_KEY, ORDER, named_constraints
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.space import Architecture, architecture_params
from optuna_spikenas.study_setup import NOT_SCORED, candidate_seed

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = {
    "seed": 3,
    "dataset": {"name": "digits"},
    "space": {"macro": "light", "num_cells": [2], "widths": [4]},
    "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
}


def tiny_config(**budget):
    return config_from_dict({**TINY, "budget": budget})


class CountingObjective(SpikeNASObjective):
    """The real objective, counting how many networks it builds."""

    def __init__(self, config):
        super().__init__(config)
        self.built: list[str] = []

    def build(self, arch):
        self.built.append(str(arch))
        return super().build(arch)


def run(objective, cells: list[str], sampler=None):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for text in cells:
        arch = Architecture.parse(text, 2, 4)
        study.enqueue_trial(architecture_params(arch, objective.space))
    study.optimize(objective, n_trials=len(cells))
    return study


def test_over_budget_candidate_is_never_built_and_records_its_constraint():
    small = Architecture.parse("0111 0011 0001 0000", 2, 4)
    config = tiny_config(max_parameters=memory_report(small, light_digits()).parameters + 10)
    objective = CountingObjective(config)
    study = run(objective, ["0333 0033 0003 0000", "0111 0011 0001 0000"])
    big, fits = study.trials
    assert big.value == NOT_SCORED
    assert big.constraints["memory"] > 0
    assert big.user_attrs["feasible"] is False
    assert big.user_attrs["memory_bits"] > big.user_attrs["memory_budget_bits"]
    assert objective.built == [str(Architecture.parse("0111 0011 0001 0000", 2, 4))]
    assert fits.constraints["memory"] <= 0 and math.isfinite(fits.value)
    assert study.best_trial.number == fits.number  # Optuna skips the infeasible trial


def test_invalid_cell_is_infeasible_and_not_scored():
    objective = CountingObjective(tiny_config())
    study = run(objective, ["0330 0030 0000 0000"])  # nothing reaches node 3
    trial = study.trials[0]
    assert trial.value == NOT_SCORED
    assert named_constraints(trial.system_attrs) == {"valid": 1.0}
    assert trial.system_attrs[LIST_KEY] == [1.0]  # the list optuna-dashboard reads
    assert trial.constraints == {"valid": 1.0, "0": 1.0}  # Optuna 5 reads both forms
    assert "no path" in trial.user_attrs["invalid_reason"]
    assert objective.built == []


def test_every_path_records_the_constraints_list_for_the_dashboard():
    """Over budget, invalid, scored and duplicate trials: each has the list optuna-dashboard
    reads, its named constraints in a fixed order, positive exactly when it is infeasible."""
    small = Architecture.parse("0111 0011 0001 0000", 2, 4)
    config = tiny_config(max_parameters=memory_report(small, light_digits()).parameters + 10)
    cells = ["0333 0033 0003 0000", "0330 0030 0000 0000", "0111 0011 0001 0000"]
    study = run(SpikeNASObjective(config), [*cells, cells[-1]])
    over, invalid, fits, duplicate = study.trials
    assert duplicate.user_attrs["duplicate_of"] == fits.number
    for trial in study.trials:
        named = named_constraints(trial.system_attrs)
        assert set(named) == {"valid", "memory"}
        assert trial.system_attrs[LIST_KEY] == [named["valid"], named["memory"]]  # fixed order
        feasible = trial.user_attrs["feasible"]
        assert feasible == all(v <= 0 for v in trial.system_attrs[LIST_KEY])
        assert feasible == (trial.number in (fits.number, duplicate.number))
    assert over.system_attrs[LIST_KEY][0] == 0.0 < over.system_attrs[LIST_KEY][1]
    assert invalid.system_attrs[LIST_KEY] == [1.0, 1.0]  # an invalid cell breaks every budget


def test_the_list_order_names_every_constraint_the_objectives_set():
    from optuna_spikenas.budgets import CONSTRAINTS
    from optuna_spikenas.samplers.screen import TRAINED_CONSTRAINT

    assert ORDER == (TRAINED_CONSTRAINT, "valid", *CONSTRAINTS)


def test_equivalent_cells_are_scored_once():
    # nodes 1 and 2 unconnected: swapping their labels gives the same function
    first, swapped = "0314 0003 0001 0000", "0134 0001 0003 0000"
    objective = CountingObjective(tiny_config())
    study = run(objective, [first, swapped, first])
    t0, t1, t2 = study.trials
    assert len(objective.built) == 1
    assert t1.user_attrs["duplicate_of"] == 0 and t2.user_attrs["duplicate_of"] == 0
    assert t0.value == t1.value == t2.value
    assert t0.user_attrs["canonical"] == t1.user_attrs["canonical"]
    assert t1.user_attrs["spikes_per_image"] == t0.user_attrs["spikes_per_image"] > 0
    assert t1.user_attrs["architecture"] != t0.user_attrs["architecture"]  # its own, not copied
    assert "score_seconds" in t1.user_attrs and t1.user_attrs["score_seconds"] == 0.0


def test_same_architecture_and_seed_give_the_identical_score_in_two_studies():
    arch = Architecture.parse("0303 0030 0003 0000", 2, 4)
    a = SpikeNASObjective(tiny_config()).score(arch)
    b = SpikeNASObjective(tiny_config()).score(arch)
    assert a == b and math.isfinite(a)
    assert candidate_seed(3, arch) == candidate_seed(3, arch.canonical())
    assert candidate_seed(3, arch) != candidate_seed(4, arch)


def test_user_attributes_are_json_safe_and_complete():
    study = run(SpikeNASObjective(tiny_config(max_parameters=50_000)), ["0313 0031 0003 0000"])
    attrs = study.trials[0].user_attrs
    assert json.loads(json.dumps(attrs)) == attrs
    for key in ("architecture", "canonical", "parameters", "memory_bits", "feasible"):
        assert key in attrs
    assert attrs["architecture"] == "0313 0031 0003 0000 / 0313 0031 0003 0000"
    assert attrs["memory_bits"] == attrs["parameters"] * 32


@pytest.mark.parametrize(
    "sampler",
    [optuna.samplers.TPESampler(seed=0, n_startup_trials=3), optuna.samplers.NSGAIISampler(seed=0)],
    ids=["tpe", "nsga2"],
)
def test_optuna_samplers_search_the_same_space(sampler):
    objective = SpikeNASObjective(tiny_config(max_parameters=5_000))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=8)
    names = set(study.trials[0].params)
    assert {f"cell1_edge{e}" for e in ("01", "02", "12", "03", "13", "23")} == names
    for trial in study.trials:
        assert set(trial.distributions["cell1_edge01"].choices) == {
            "zero",
            "skip",
            "conv1x1",
            "conv3x3",
            "avgpool3x3",
        }
        assert "valid" in trial.constraints and "memory" in trial.constraints
        assert trial.user_attrs["feasible"] == all(v <= 0 for v in trial.constraints.values())


def light_digits():
    from optuna_spikenas.macros import get_macro

    return get_macro("light").for_data(1, 8, 10)
