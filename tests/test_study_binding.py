"""A study is bound to the settings that define its values (optuna_spikenas.study_binding)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from optuna_spikenas.config import config_from_dict
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.space import EDGES, OPS, Cell, edge_param
from optuna_spikenas.study_binding import (
    FINGERPRINT_ATTR,
    StudySettingsError,
    bind_study,
    fingerprint,
    value_settings,
)

BASE = {
    "seed": 0,
    "dataset": {"name": "digits"},
    "space": {"macro": "light", "num_cells": [2], "widths": [4]},
    "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
    "search": {"n_trials": 3},
}
CELL = "0301 0031 0003 0000"  # forward edges only


def config(**tables):
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in BASE.items()}
    for table, values in tables.items():
        if isinstance(values, dict):
            merged.setdefault(table, {}).update(values)
        else:
            merged[table] = values
    return config_from_dict(merged)


def print_of(cfg) -> str:
    return fingerprint(value_settings(cfg))


@pytest.mark.parametrize(
    "change",
    [
        {"search": {"n_trials": 50, "sampler": "tpe", "timeout": 9.0, "ops": ["skip", "conv3x3"]}},
        {"score": {"device": "auto"}},
        {"space": {"widths": [4, 8], "num_cells": [2, 3], "backward": True}},
        {"space": {"shared_cell": False, "require_direct_edge": True}},
        {"hardware": {"measure_activity": True}},
    ],
)
def test_settings_that_only_steer_the_search_stay_free(change):
    assert print_of(config(**change)) == print_of(config())


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"dataset": {"name": "animal-mnist"}},
        {"dataset": {"val_fraction": 0.2}},
        {"space": {"macro": "snasnet-cifar10"}},
        {"score": {"timesteps": 3}},
        {"score": {"batch_size": 32}},
        {"score": {"kind": "hamming"}},
        {"budget": {"max_parameters": 1000}},
        {"budget": {"weight_bits": 8}},
        {"hardware": {"profile": "neurosim-128"}},
        {"train": {"epochs": 1}},
        {"train": {"weight_decay": 5e-4}},
    ],
)
def test_value_defining_settings_change_the_fingerprint(change):
    assert print_of(config(**change)) != print_of(config())


def test_final_pool_changes_the_fingerprint_of_snasnet_macros():
    macro = {"macro": "snasnet-cifar10"}
    assert print_of(config(space={**macro, "final_pool": 4})) != print_of(config(space=macro))


def test_autosnn_settings():
    autosnn = {"space": {"macro": "autosnn-16", "widths": [8]}, "search": {"n_trials": 3}}
    base = config(**autosnn)
    assert "[supernet] eval_images" in value_settings(base)
    assert "[score] timesteps" not in value_settings(base)  # AutoSNN does not score with SAHD
    free = config(**autosnn, supernet={"checkpoint_dir": "elsewhere"})
    assert print_of(free) == print_of(base)
    for change in ({"supernet": {"eval_images": 100}}, {"space": {"widths": [16]}},
                   {"fitness": {"spike_exponent": -0.1}}):
        merged = {**autosnn, **change}
        if "space" in change:
            merged["space"] = {"macro": "autosnn-16", **change["space"]}
        assert print_of(config(**merged)) != print_of(base)


def test_bind_study_binds_a_new_study_and_refuses_other_settings():
    study = optuna.create_study(direction="maximize")
    mine = bind_study(study, config())
    assert study.user_attrs[FINGERPRINT_ATTR] == mine
    assert bind_study(study, config(search={"n_trials": 9})) == mine
    with pytest.raises(StudySettingsError, match=r"\[score\] timesteps 2 there, 5 here"):
        bind_study(study, config(score={"timesteps": 5}))


def enqueue(study: optuna.Study, cell: str = CELL) -> None:
    matrix = Cell.parse(cell).matrix
    study.enqueue_trial({edge_param(1, (i, j)): OPS[matrix[i][j]] for i, j in EDGES})


@pytest.fixture(scope="module")
def objectives():
    return SpikeNASObjective(config()), SpikeNASObjective(config(score={"timesteps": 3}))


def test_two_workers_with_other_settings_cannot_both_write_values(objectives, tmp_path):
    # Two workers on one storage, as two processes would be: whichever trial came first binds
    # the study; the other worker's trial fails before it writes a value.
    first, second = objectives
    url = f"sqlite:///{tmp_path / 'two.db'}"
    a = optuna.create_study(storage=url, study_name="s", direction="maximize")
    b = optuna.load_study(storage=url, study_name="s")
    enqueue(a)
    enqueue(b)
    a.optimize(first, n_trials=1)
    with pytest.raises(StudySettingsError, match="other value-defining settings"):
        b.optimize(second, n_trials=1)
    trials = a.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].values is None
    a.optimize(first, n_trials=1)  # the binding worker goes on
    assert a.get_trials()[-1].state == TrialState.COMPLETE


def test_duplicates_are_reused_only_under_the_same_fingerprint(objectives):
    first, _ = objectives
    study = optuna.create_study(direction="maximize")
    enqueue(study)
    study.optimize(first, n_trials=1)
    scored = study.trials[0]
    # a trial of the same architecture recorded without a fingerprint (an older run): its
    # score is not reused, the candidate is scored again
    attrs = {k: v for k, v in scored.user_attrs.items() if k != FINGERPRINT_ATTR}
    other = optuna.create_study(direction="maximize")
    other.add_trial(
        optuna.trial.create_trial(
            params=scored.params,
            distributions=scored.distributions,
            value=-1.0,
            user_attrs=attrs,
        )
    )
    enqueue(other)
    other.optimize(first, n_trials=1)
    rescored = other.trials[-1]
    assert "duplicate_of" not in rescored.user_attrs
    assert rescored.value == pytest.approx(scored.value)
    enqueue(study)
    study.optimize(first, n_trials=1)  # same fingerprint: reused
    assert study.trials[-1].user_attrs["duplicate_of"] == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the other worker's ask()
def test_a_worker_that_lost_the_race_fails_its_trial_and_says_so_in_one_line(
    tmp_path, capsys, monkeypatch
):
    # Another worker, with other settings, binds the study between this run's check and its
    # first trial: the trial fails before writing a value, and the command ends in one line.
    from optuna_spikenas import cli
    from optuna_spikenas.cli import commands

    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    path = tmp_path / "c.toml"
    path.write_text(
        'seed = 0\n[dataset]\nname = "digits"\n[space]\nmacro = "light"\nwidths = [4]\n'
        "[score]\nbatch_size = 16\nrepeats = 1\ntimesteps = 2\n[search]\nn_trials = 2\n"
    )
    other = config(score={"timesteps": 3})

    def bound_by_the_other_worker(study, cfg):
        mine = fingerprint(value_settings(cfg))
        trial = study.ask()  # the other worker's first trial, still running
        trial.set_user_attr(FINGERPRINT_ATTR, print_of(other))
        return mine

    monkeypatch.setattr(commands, "bind_study", bound_by_the_other_worker)
    argv = ["optimize", "--storage", url, "--study-name", "s", "--config", str(path)]
    capsys.readouterr()
    assert cli.main([*argv, "--quiet", "--no-artifacts"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "holds trials made with other value-defining settings" in err
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL]
    assert study.get_trials()[1].values is None


def test_a_lower_trial_that_marks_itself_late_still_wins(objectives):
    # The other worker's trial 0 exists before ours but marks its fingerprint only while ours
    # is being scored: our trial passes its first check and fails the one before its values.
    first, second = objectives
    study = optuna.create_study(direction="maximize")
    theirs = study.ask()  # trial 0, not marked yet

    class Late(SpikeNASObjective):
        def score_network(self, network, arch):
            theirs.set_user_attr(FINGERPRINT_ATTR, second.fingerprint)
            return super().score_network(network, arch)

    late = Late(first.config)
    enqueue(study)
    with pytest.raises(StudySettingsError):
        study.optimize(late, n_trials=1)
    mine = study.get_trials()[1]
    assert mine.state == TrialState.FAIL and mine.values is None
