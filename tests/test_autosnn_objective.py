"""AutoSNN end to end: the objective over a real (tiny) super-network, with evolution."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna_dashboard import get_note

from optuna_spikenas.architecture_file import read_architecture
from optuna_spikenas.autosnn_objective import AutoSNNObjective
from optuna_spikenas.autosnn_space import AutoSNNArchitecture, autosnn_parameters
from optuna_spikenas.cli import main
from optuna_spikenas.config import ConfigError, config_from_dict
from optuna_spikenas.constraint_list import LIST_KEY, named_constraints
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.samplers.evolution import EvolutionarySampler
from optuna_spikenas.supernet import fitness

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny(tmp_path, **sections):
    raw = {
        "seed": 1,
        "dataset": {"name": "digits"},
        "space": {"macro": "autosnn-16", "widths": [4]},
        "supernet": {"epochs": 1, "timesteps": 2, "batch_size": 32, "eval_images": 64,
                     "checkpoint_dir": str(tmp_path / "ckpt")},
        "search": {"sampler": "evolution", "n_trials": 6},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def objective(tmp_path_factory, one_thread):
    return AutoSNNObjective(tiny(tmp_path_factory.mktemp("autosnn")))


def test_every_trial_carries_accuracy_spikes_and_fitness(objective):
    study = optuna.create_study(direction="maximize")
    study.sampler = make_sampler("evolution", 0)
    assert isinstance(study.sampler, EvolutionarySampler)
    activity = {}  # each trial's measured activity, with the per-layer counts

    def watched(trial: optuna.Trial) -> float:
        value = objective(trial)
        activity[trial.number] = objective.activity[trial]
        return value

    study.optimize(watched, n_trials=6)
    assert len(study.trials) == 6
    for trial in study.trials:
        attrs = trial.user_attrs
        arch = AutoSNNArchitecture.parse(attrs["architecture"])
        assert attrs["parameters"] == autosnn_parameters(arch, objective.macro)
        assert 0 <= attrs["accuracy"] <= 1 and attrs["spikes_per_image"] > 0
        expected = fitness(attrs["accuracy"], attrs["spikes_per_image"], objective.reference_spikes)
        assert trial.value == pytest.approx(expected, rel=1e-4)  # S_ref is rounded
        assert attrs["fitness"] == trial.value
        # AutoSNN's count: the neuron layers' spikes and the max-pooled spike maps; per layer
        # they are no user attribute (the dashboard's artifact spikes_by_layer.csv)
        assert "spikes_by_layer" not in attrs and "pooled_spikes_by_layer" not in attrs
        layers = activity[trial.number].by_layer()
        neurons = sum(layers["spikes_by_layer"].values())
        pooled = sum(layers["pooled_spikes_by_layer"].values())
        assert neurons == pytest.approx(attrs["neuron_spikes_per_image"], rel=1e-3)
        assert neurons + pooled == pytest.approx(attrs["spikes_per_image"], rel=1e-3)
        assert json.loads(json.dumps(attrs)) == attrs
        assert trial.system_attrs[LIST_KEY] == [0.0]  # no budget: `valid` alone, for the dashboard
    assert len({t.user_attrs["architecture"] for t in study.trials}) == 6


def test_two_objectives_for_nsga2_return_accuracy_and_spikes(tmp_path, one_thread):
    config = tiny(tmp_path, fitness={"objectives": "accuracy+spikes"}, search={"sampler": "nsga2"})
    assert config.directions == ("maximize", "minimize")
    objective = AutoSNNObjective(config)
    study = optuna.create_study(directions=list(config.directions))
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        assert trial.values == [trial.user_attrs["accuracy"], trial.user_attrs["spikes_per_image"]]


def test_memory_budget_is_a_constraint(tmp_path, one_thread):
    config = tiny(tmp_path, budget={"max_parameters": 3000})
    objective = AutoSNNObjective(config)
    study = optuna.create_study(direction="maximize")
    for blocks in ("skip,skip,skip,skip,skip", "SRB_k5,SRB_k5,SRB_k5,SRB_k5,SRB_k5"):
        study.enqueue_trial(AutoSNNArchitecture.parse(blocks).params())
    study.optimize(objective, n_trials=2)
    small, large = study.trials
    assert small.user_attrs["feasible"] and small.constraints["memory"] <= 0
    assert not large.user_attrs["feasible"] and large.value == float("-inf")
    assert large.user_attrs["broken_budgets"] == "memory" and "accuracy" not in large.user_attrs
    for trial in (small, large):  # the list optuna-dashboard reads, in a fixed order
        named = named_constraints(trial.system_attrs)
        assert trial.system_attrs[LIST_KEY] == [named["valid"], named["memory"]]
    assert small.system_attrs[LIST_KEY][1] <= 0 < large.system_attrs[LIST_KEY][1]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"search": {"sampler": "cellbycell"}}, "grows SNASNet cells"),
        ({"budget": {"energy_uj": 1.0}}, "price SNASNet cells"),
        ({"fitness": {"objectives": "spikes"}}, "[fitness] objectives"),
        ({"fitness": {"objectives": "accuracy+spikes"}}, "sampler 'evolution' ranks one"),
        ({"fitness": {"reference_spikes": -5.0}}, "reference_spikes must be positive"),
    ],
)
def test_bad_autosnn_settings_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError) as err:
        tiny(tmp_path, **change)
    assert message in str(err.value)


def test_optimize_command_runs_autosnn_and_reuses_the_checkpoint(tmp_path, capsys, one_thread):
    config = tmp_path / "autosnn.toml"
    config.write_text(
        'seed = 2\n[dataset]\nname = "digits"\n[space]\nmacro = "autosnn-16"\nwidths = [4]\n'
        f'[supernet]\nepochs = 1\ntimesteps = 2\neval_images = 64\ncheckpoint_dir = '
        f'"{tmp_path / "ckpt"}"\n[search]\nsampler = "evolution"\nn_trials = 3\n'
    )
    url = f"sqlite:///{tmp_path / 'a.db'}"
    optuna.create_study(storage=url, study_name="a", direction="maximize")
    argv = ["optimize", "--storage", url, "--study-name", "a", "--config", str(config)]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "saved super-network checkpoint" in first.err and "fitness" in first.out
    assert main([*argv, "--n-trials", "2"]) == 0
    second = capsys.readouterr()
    assert "reusing super-network checkpoint" in second.err
    trials = optuna.load_study(study_name="a", storage=url).trials
    assert len(trials) == 5 and all("fitness" in t.user_attrs for t in trials)
    # the dashboard's artifacts: each trial's document builds its five blocks, and its diagram
    store = tmp_path / "a-artifacts"
    documents = [json.loads(p.read_text()) for p in store.iterdir() if p.read_text()[0] == "{"]
    assert sorted(d["origin"]["trial"] for d in documents) == list(range(5))
    for document in documents:
        arch, macro, _ = read_architecture(document)
        assert str(arch) == trials[document["origin"]["trial"]].user_attrs["architecture"]
        assert macro.width == 4
    svgs = [p.read_text() for p in store.iterdir() if p.read_text().startswith("<svg")]
    assert len(svgs) == 10  # a diagram and its thumbnail per trial
    assert sum("block 5: " in svg for svg in svgs) == sum(">5: " in svg for svg in svgs) == 5
    spikes = [p.read_text() for p in store.iterdir() if p.read_text().startswith("layer,kind,")]
    assert len(spikes) == 5 and all(",max-pooled spikes," in table for table in spikes)
    study = optuna.load_study(study_name="a", storage=url)
    for trial in trials:  # the note atop each trial's page: its fitness, then its blocks
        note = get_note(optuna.Trial(study, trial._trial_id))
        assert note.startswith(f"### ✓ Feasible · fitness {trial.value:.4f}\n\n")
        assert f"`{trial.user_attrs['architecture']}` · " in note
        assert f"**Held-out accuracy** {trial.user_attrs['accuracy']:.4f}" in note


def test_describe_reports_the_papers_architecture_at_042_m(capsys):
    assert main(["describe", "--macro", "autosnn-16", "--arch", "SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert round(info["parameters"] / 1e6, 2) == 0.42
