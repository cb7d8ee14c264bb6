"""Screen, then train: stages, top-k by score, the pruner, workers sharing a study, the CLI."""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_spikenas.config import ConfigError, config_from_dict, load_config
from optuna_spikenas.constraint_list import LIST_KEY, named_constraints
from optuna_spikenas.samplers import make_pruner, make_sampler
from optuna_spikenas.samplers.screen import (
    RANK_ATTR,
    SCREEN,
    SCREENED_ATTR,
    STAGE_ATTR,
    SURPLUS,
    TRAIN,
    ScreenThenTrainSampler,
    _ScoreView,
)
from optuna_spikenas.space import SearchSpace, suggest_architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
SPACE = SearchSpace(num_cells=(2,), widths=(4,))


class Synthetic:
    """A stand-in objective that keeps to the stages (no network): a screen trial's score is a
    hash of its canonical form, a train trial's accuracy the score's rank order reversed."""

    def __call__(self, trial: optuna.Trial) -> float:
        stage = trial.user_attrs[STAGE_ATTR]
        if stage == SURPLUS:
            raise optuna.TrialPruned()
        arch = suggest_architecture(trial, SPACE)
        trial.set_user_attr("canonical", arch.canonical_key())
        trial.set_user_attr("architecture", str(arch))
        feasible = arch.is_valid()
        trial.set_user_attr("feasible", feasible)
        if not feasible:
            return -math.inf
        if stage == SCREEN:
            trial.set_user_attr("score", float(hash(arch.canonical_key()) % 1000))
            return -math.inf
        accuracy = 1.0 / trial.user_attrs[RANK_ATTR]
        trial.report(accuracy, 0)
        trial.should_prune()  # a Hyperband pruner sets its brackets up here
        return accuracy


def run_synthetic(n_jobs: int, base=None, pruner=None) -> optuna.Study:
    sampler = ScreenThenTrainSampler(8, 3, base=base, seed=5, poll_seconds=0.05)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(Synthetic(), n_jobs=n_jobs)
    return study


def summary_of(study: optuna.Study) -> tuple:
    trials = study.get_trials(deepcopy=False)
    screened = sorted(
        (t.user_attrs["canonical"], t.user_attrs["score"])
        for t in trials
        if t.user_attrs.get(STAGE_ATTR) == SCREEN
        and t.state == TrialState.COMPLETE
        and t.user_attrs.get("feasible")
    )
    trained = sorted(
        (t.user_attrs[RANK_ATTR], t.user_attrs["canonical"], t.value)
        for t in trials
        if t.user_attrs.get(STAGE_ATTR) == TRAIN and t.state == TrialState.COMPLETE
    )
    return screened, trained


def test_stages_in_order_top_k_by_score_and_self_stop():
    study = run_synthetic(1)
    trials = study.get_trials(deepcopy=False)
    stages = [t.user_attrs[STAGE_ATTR] for t in trials]
    assert stages == [SCREEN] * (len(stages) - 3) + [TRAIN] * 3  # ends by itself
    screens = [t for t in trials if t.user_attrs.get("feasible") and stages[t.number] == SCREEN]
    first = {}
    for t in screens:
        first.setdefault(t.user_attrs["canonical"], t)
    assert len(first) == 8  # 8 distinct feasible candidates; infeasible ones not counted
    best = sorted(first.values(), key=lambda t: (-t.user_attrs["score"], t.number))[:3]
    train = [t for t in trials if stages[t.number] == TRAIN]
    assert [t.user_attrs[SCREENED_ATTR] for t in train] == [t.number for t in best]
    assert [t.params for t in train] == [t.params for t in best]
    assert [t.user_attrs[RANK_ATTR] for t in train] == [1, 2, 3]
    assert study.sampler.is_complete(study)
    assert study.sampler.result(study).number == train[0].number


def test_hyperband_does_not_hide_the_screen_from_the_sampler():
    # Optuna hands samplers a study filtered to the trial's Hyperband bracket; the stages must
    # still be read from the whole study (a bug once: screening went on after training began)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    assert summary_of(run_synthetic(1, pruner=pruner)) == summary_of(run_synthetic(1))


def test_threads_sharing_one_study_agree_with_one_worker():
    one = summary_of(run_synthetic(1))
    three = run_synthetic(3)
    assert summary_of(three) == one
    trials = three.get_trials(deepcopy=False)
    assert all(t.state != TrialState.RUNNING for t in trials)
    # a thread that found every rank taken ended its trial as surplus, PRUNED, no parameters
    for t in trials:
        if t.user_attrs[STAGE_ATTR] == SURPLUS:
            assert t.state == TrialState.PRUNED and not t.params


def test_the_base_sampler_sees_the_screen_scores_as_values():
    study = run_synthetic(1, base=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    view = _ScoreView.of(study).get_trials(deepcopy=False)
    assert view and all(t.user_attrs[STAGE_ATTR] == SCREEN for t in view)
    for t in view:
        if t.user_attrs.get("feasible"):
            assert t.value == t.user_attrs["score"]
    assert len(summary_of(study)[1]) == 3


# --- with the real objective -------------------------------------------------------------------

TINY = {
    "seed": 1,
    "dataset": {"name": "digits"},
    "space": {"macro": "light", "widths": [4]},
    "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
    "budget": {"max_parameters": 3000},
    "train": {"epochs": 2, "objectives": "accuracy", "batch_size": 32, "max_train_batches": 2},
    "search": {"screen": 3, "train_top": 2},
}


@pytest.fixture(scope="module")
def pruned_study(one_thread):
    from optuna_spikenas.objective import SpikeNASObjective

    config = config_from_dict(TINY)
    objective = SpikeNASObjective(config)
    sampler = make_sampler("random", 1, space=objective.space, screen=3, train_top=2)
    # a pruner that certainly stops: no accuracy reaches 1.01 after the first epoch
    pruner = optuna.pruners.ThresholdPruner(lower=1.01)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(objective)
    return study


def test_real_objective_screens_without_training_and_the_pruner_stops_training(pruned_study):
    trials = pruned_study.get_trials(deepcopy=False)
    screens = [t for t in trials if t.user_attrs[STAGE_ATTR] == SCREEN]
    train = [t for t in trials if t.user_attrs[STAGE_ATTR] == TRAIN]
    assert [t.number for t in screens + train] == list(range(len(trials)))
    for t in screens:
        assert t.state == TrialState.COMPLETE and t.value == -math.inf
        assert t.constraints["trained"] == 1.0  # never the study's best trial
        assert "val_accuracy_per_epoch" not in t.user_attrs
        if t.user_attrs["feasible"]:
            assert isinstance(t.user_attrs["score"], float)
    assert len(train) == 2
    for t in train:
        assert t.state == TrialState.PRUNED
        assert list(t.intermediate_values) == [0]  # stopped after its first epoch
        assert t.constraints["trained"] == 0.0
    with pytest.raises(ValueError, match="No feasible trials"):
        pruned_study.best_trial  # noqa: B018  (screen trials are not results)
    for t in screens + train:  # the list optuna-dashboard reads, `trained` first
        named = named_constraints(t.system_attrs)
        assert t.system_attrs[LIST_KEY] == [named[n] for n in ("trained", "valid", "memory")]
        assert len(named) == 3


def test_the_base_sampler_sees_the_budgets_but_neither_trained_nor_the_list(pruned_study):
    """The stage-1 view hides ``trained`` and the dashboard's list (which repeats it): the base
    sampler reads the named budgets alone, as before the list was written."""
    view = _ScoreView.of(pruned_study).get_trials(deepcopy=False)
    assert view
    for t in view:
        assert LIST_KEY not in t.system_attrs
        assert t.constraints == {
            k: v for k, v in named_constraints(t.system_attrs).items() if k != "trained"
        }
        assert set(t.constraints) == {"valid", "memory"}


def test_pruners_from_the_config():
    config = load_config(ROOT / "studies" / "screen_then_train.toml")
    hyperband = make_pruner(config)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == config.train.epochs
    search = {"screen": 3, "train_top": 2, "pruner": "successive_halving"}
    halving = config_from_dict({**TINY, "search": search})
    assert isinstance(make_pruner(halving), optuna.pruners.SuccessiveHalvingPruner)
    none = config_from_dict(TINY)
    assert isinstance(make_pruner(none), optuna.pruners.NopPruner)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": {"screen": 3, "train_top": 4}}, "train_top = 4 is more than screen = 3"),
        ({"search": {"train_top": 2}}, "set screen = N too"),
        ({"search": {"screen": 0}}, "screen must be at least 1"),
        ({"search": {"screen": 3}, "train": {"epochs": 0}}, "set [train] epochs > 0"),
        ({"search": {"screen": 3}, "train": {"epochs": 1}}, "objectives = 'accuracy'"),
        ({"search": {"screen": 3, "sampler": "cellbycell"}}, "random, tpe, nsga2"),
        (
            {
                "search": {"screen": 3, "train_top": 2, "pruner": "hyperband"},
                "train": {"epochs": 1},
            },
            "cannot prune",
        ),
        ({"search": {"screen": 3}, "space": {"macro": "autosnn-16"}}, "not autosnn-16"),
    ],
    ids=[
        "top-over-screen",
        "top-without-screen",
        "screen-zero",
        "no-epochs",
        "two-objectives",
        "cellbycell-base",
        "pruner-two-objectives",
        "autosnn",
    ],
)
def test_contradictory_settings_are_refused(change, message):
    raw = {**TINY, "train": {"epochs": 1, "objectives": "accuracy"}, "search": {}}
    for table, values in change.items():
        raw[table] = {**raw.get(table, {}), **values}
    if change.get("train") == {"epochs": 1}:
        raw["train"] = {"epochs": 1}
    if "autosnn" in str(change):
        raw["train"] = {}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config_from_dict(raw)


# --- the command line: `optuna create-study` + `optuna-spikenas optimize` ------------------------


def reduced_config(tmp_path: Path) -> Path:
    """studies/screen_then_train.toml, made test-sized."""
    raw = tomllib.loads((ROOT / "studies" / "screen_then_train.toml").read_text())
    raw["dataset"]["name"] = "digits"
    raw["space"]["widths"] = [4]
    raw["score"].update(batch_size=16, inits=1, timesteps=2)
    raw["budget"]["max_parameters"] = 3000
    raw["train"].update(epochs=2, batch_size=32, max_train_batches=2)
    raw["search"].update(screen=4, train_top=2, pruner="none")  # pruning depends on timing
    lines = []
    for table, values in raw.items():
        if not isinstance(values, dict):
            lines.append(f"{table} = {values!r}")
    for table, values in raw.items():
        if isinstance(values, dict):
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    path = tmp_path / "screen.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).replace("'", '"')


def create_and_optimize(tmp_path: Path, workers: int) -> tuple[subprocess.CompletedProcess, str]:
    url = f"sqlite:///{tmp_path / 'screen.db'}"
    subprocess.run(
        [
            str(BIN / "optuna"),
            "create-study",
            "--storage",
            url,
            "--study-name",
            "s",
            "--direction",
            "maximize",
        ],
        check=True,
        capture_output=True,
    )
    command = [
        str(BIN / "optuna-spikenas"),
        "optimize",
        "--storage",
        url,
        "--study-name",
        "s",
        "--config",
        str(reduced_config(tmp_path)),
        "--threads",
        "1",
        "--no-artifacts",
    ]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(subprocess.CompletedProcess(command, 0, out, err))
    return results[0], url


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("one")
    return create_and_optimize(tmp_path, 1)


def test_cli_runs_the_shipped_config_end_to_end(one_worker):
    result, url = one_worker
    study = optuna.load_study(study_name="s", storage=url)
    stages = [t.user_attrs[STAGE_ATTR] for t in study.trials]
    assert stages[-2:] == [TRAIN, TRAIN] and set(stages[:-2]) == {SCREEN}
    best = study.best_trial
    assert best.user_attrs[STAGE_ATTR] == TRAIN and 0 <= best.value <= 1
    assert "screen then train complete: 4 candidates screened, 2 trained" in result.stdout
    assert f"trained winner: trial {best.number}" in result.stdout
    assert "score rank" in result.stdout


def test_two_workers_on_one_sqlite_study_agree_with_one(tmp_path, one_worker):
    _, url = create_and_optimize(tmp_path, 2)
    two = optuna.load_study(study_name="s", storage=url)
    one = optuna.load_study(study_name="s", storage=one_worker[1])
    assert summary_of(two) == summary_of(one)
    assert two.best_trial.user_attrs["canonical"] == one.best_trial.user_attrs["canonical"]
    assert all(t.state != TrialState.RUNNING for t in two.trials)


def test_a_surplus_trial_is_pruned_and_marked_not_trained_for_the_dashboard(monkeypatch):
    """A trial that finds every rank taken (another worker's) ends PRUNED with ``trained`` = 1
    and the dashboard's list, like every other trial of the study."""
    from optuna_spikenas.objective import SpikeNASObjective

    objective = SpikeNASObjective(config_from_dict(TINY))
    monkeypatch.setattr(objective, "_stage", lambda trial: SURPLUS)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.PRUNED and not trial.params
    assert named_constraints(trial.system_attrs) == {"trained": 1.0}
    assert trial.system_attrs[LIST_KEY] == [1.0]
