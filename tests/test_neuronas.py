"""NeuroNAS in the objective: four budgets as constraints, and quantized training."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from optuna_spikenas.config import ConfigError, config_from_dict
from optuna_spikenas.constraint_list import LIST_KEY, ORDER, named_constraints
from optuna_spikenas.hardware.imc import imc_report, load_profile
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import get_macro
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.space import Architecture, architecture_params
from optuna_spikenas.study_setup import NOT_SCORED

optuna.logging.set_verbosity(optuna.logging.WARNING)

MACRO = get_macro("light").for_data(1, 8, 10)  # the digits dataset: 1 x 8 x 8, 10 classes
SMALL = Architecture.parse("0111 0011 0001 0000", 2, 4)  # skips only
MIDDLE = Architecture.parse("0131 0011 0003 0000", 2, 4)
LARGE = Architecture.parse("0333 0033 0003 0000", 2, 4)  # conv3x3 only


def config(budget=None, train=None, search=None, cells=(2,), hardware=None):
    return config_from_dict(
        {
            "seed": 2,
            "dataset": {"name": "digits"},
            "space": {"macro": "light", "num_cells": list(cells), "widths": [4],
                      "shared_cell": len(cells) == 1},
            "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
            "budget": {"weight_bits": 8, **(budget or {})},
            "train": train or {},
            "search": search or {},
            "hardware": hardware or {},
        }
    )


def costs(arch):
    hardware = imc_report(arch, MACRO, load_profile("spikesim-64"), 8, 2)
    return {
        "memory_megabytes": memory_report(arch, MACRO, 8).memory_bits / 8e6,
        "area_mm2": hardware.area_mm2,
        "latency_ms": hardware.latency_ms,
        "energy_uj": hardware.energy_uj,
    }


def budgets_of(arch):
    """Budgets that ``arch`` just meets (a hair above each of its costs)."""
    return {key: value * 1.0001 for key, value in costs(arch).items()}


def enqueue_and_run(objective, archs, directions=("maximize",)):
    study = optuna.create_study(directions=list(directions))
    for arch in archs:
        study.enqueue_trial(architecture_params(arch, objective.space))
    study.optimize(objective, n_trials=len(archs))
    return study


def test_each_budget_is_a_constraint_and_the_broken_ones_are_named():
    objective = SpikeNASObjective(config(budgets_of(MIDDLE)))
    small, middle, large = enqueue_and_run(objective, [SMALL, MIDDLE, LARGE]).trials
    named = named_constraints(large.system_attrs)
    assert set(named) == {"valid", "memory", "area", "latency", "energy"}
    assert large.system_attrs[LIST_KEY] == [named[n] for n in ORDER if n in named]  # dashboard
    for trial in (small, middle):
        assert trial.user_attrs["feasible"] and trial.user_attrs["broken_budgets"] == ""
        assert all(v <= 0 for v in trial.constraints.values()) and math.isfinite(trial.value)
    assert large.value == NOT_SCORED and not large.user_attrs["feasible"]
    broken = large.user_attrs["broken_budgets"].split(", ")
    budgets = ("memory", "area", "latency", "energy")
    assert broken == [n for n in budgets if large.constraints[n] > 0]
    assert "area" in broken and "energy" in broken
    expected = costs(LARGE)
    for key in ("area_mm2", "latency_ms", "energy_uj"):
        assert large.user_attrs[key] == pytest.approx(expected[key], rel=1e-6)
        budget_key = key.replace("_", "_budget_")
        assert large.user_attrs[budget_key] == pytest.approx(budgets_of(MIDDLE)[key])
    assert large.user_attrs["constraint_area"] == large.constraints["area"]
    assert json.loads(json.dumps(large.user_attrs)) == large.user_attrs


@pytest.mark.parametrize("only", ["area_mm2", "latency_ms", "energy_uj"])
def test_a_single_hardware_budget_breaks_alone(only):
    small = costs(SMALL)
    objective = SpikeNASObjective(config({only: small[only] * 1.0001}))
    trial = enqueue_and_run(objective, [LARGE]).trials[0]
    name = only.split("_")[0]
    assert costs(LARGE)[only] > 2 * small[only]  # more conv layers: every cost grows
    assert trial.user_attrs["broken_budgets"] == name
    assert set(named_constraints(trial.system_attrs)) == {"valid", name}
    assert trial.constraints[name] == pytest.approx(costs(LARGE)[only] / (small[only] * 1.0001) - 1)


def test_cell_by_cell_search_under_four_budgets_ends_within_every_budget():
    budgets = budgets_of(Architecture((SMALL.cells[0], MIDDLE.cells[0], SMALL.cells[0]), 4))
    cfg = config(budgets, search={"sampler": "cellbycell"}, cells=(2, 3))
    objective = SpikeNASObjective(cfg)
    study = optuna.create_study(direction="maximize")
    study.sampler = make_sampler(
        "cellbycell",
        0,
        space=objective.space,
        ops=objective.config.search.ops,
        fits_budget=objective.fits_budget,
    )
    study.optimize(objective, n_trials=500)
    sampler = study.sampler
    assert isinstance(sampler, CellByCellSampler) and sampler.state(study).complete
    best = study.best_trial
    final = sampler.result(study)
    for trial in (best, final):
        assert trial.user_attrs["feasible"] and trial.user_attrs["broken_budgets"] == ""
        assert all(trial.constraints[n] <= 0 for n in ("memory", "area", "latency", "energy"))
        attrs = trial.user_attrs
        arch = Architecture.parse(attrs["architecture"], attrs["num_cells"], 4)
        assert objective.check(arch).feasible
    assert final.user_attrs["num_cells"] == 3


def test_training_adds_the_quantized_accuracy_as_a_second_objective(one_thread):
    cfg = config(train={"epochs": 2, "batch_size": 32, "max_train_batches": 10})
    assert cfg.train.directions == ("maximize", "maximize")
    lines = []
    objective = SpikeNASObjective(cfg, log=lines.append)
    study = enqueue_and_run(objective, [MIDDLE, MIDDLE], directions=cfg.train.directions)
    first, duplicate = study.trials
    score, accuracy = first.values
    assert score == first.user_attrs["score"] == objective.score(MIDDLE)
    assert accuracy == first.user_attrs["val_accuracy"] == first.user_attrs[
        "val_accuracy_per_epoch"][-1]
    assert len(first.user_attrs["val_accuracy_per_epoch"]) == 2
    for key in ("val_accuracy_float", "test_accuracy"):
        assert 0 <= first.user_attrs[key] <= 1
    assert len(lines) == 2 and "epoch 2/2" in lines[1] and "8-bit" in lines[1]
    assert duplicate.values == first.values and duplicate.user_attrs["duplicate_of"] == 0


def test_accuracy_objective_reports_every_epoch_and_can_be_pruned(one_thread):
    cfg = config(
        train={"epochs": 2, "objectives": "accuracy", "batch_size": 32, "max_train_batches": 5},
        search={"pruner": "median"},
    )
    objective = SpikeNASObjective(cfg)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01)
    )  # prunes every trial after its first report
    study.enqueue_trial(architecture_params(MIDDLE, objective.space))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    assert trial.user_attrs["val_accuracy_per_epoch"] == [trial.intermediate_values[0]]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"budget": {"area_mm2": -1.0}}, "area_mm2 must be positive"),
        ({"hardware": {"profile": "nope"}}, "unknown hardware profile"),
        ({"train": {"objectives": "loss"}}, "[train] objectives"),
        ({"search": {"pruner": "median"}}, "set [train] epochs"),
        ({"search": {"pruner": "median"}, "train": {"epochs": 1}}, "cannot prune"),
        ({"train": {"lr": 0.01, "min_lr": 0.1}}, "min_lr <= lr"),
    ],
)
def test_bad_neuronas_settings_name_the_key(change, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"dataset": {"name": "digits"}, **change})
    assert message in str(err.value)


def test_activity_energy_from_measured_spikes_sits_beside_the_analytic_figure():
    cfg = config(hardware={"measure_activity": True})
    trial = enqueue_and_run(SpikeNASObjective(cfg), [MIDDLE]).trials[0]
    measured = trial.user_attrs["spikesim_event_energy_uj"]
    # spikes are sparse: SpikingJelly's event-driven count charges less than every PE cycle
    assert 0 < measured < trial.user_attrs["energy_uj"]
    assert trial.user_attrs["spikesim_event_weights"] == "initial"
