"""What the dashboard gets from a search: per-trial artifacts and the study's figures."""

from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import TrialState
from optuna_dashboard import get_note, save_note
from spikingjelly.activation_based.neuron import BaseNode

from optuna_spikenas.architecture_file import read_architecture
from optuna_spikenas.config import config_from_dict
from optuna_spikenas.constraint_list import named_constraints
from optuna_spikenas.dashboard import (
    FIGURE_IDS,
    TrialArtifacts,
    artifact_dir_for,
    open_artifact_store,
    save_study_figures,
    save_study_note,
)
from optuna_spikenas.dashboard_notes import STUDY_NOTE_MARK, TrialOutcome, trial_note, value_names
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import EDGES, Architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)


def small_config(**budget):
    return config_from_dict(
        {
            "seed": 3,
            "dataset": {"name": "digits"},
            "space": {"macro": "light", "widths": [4]},
            "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
            "budget": {"max_parameters": 1500, **budget},
        }
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory, one_thread):
    """A real random search of 10 trials with artifacts, in a SQLite study."""
    tmp = tmp_path_factory.mktemp("dash")
    storage = f"sqlite:///{tmp / 'nas.db'}"
    store = open_artifact_store(tmp / "artifacts")
    objective = SpikeNASObjective(small_config())
    study = optuna.create_study(
        storage=storage,
        study_name="s",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=5),
    )
    study.optimize(TrialArtifacts(objective, store), n_trials=10)
    save_study_figures(study)
    save_study_note(study)
    return study, store, objective, tmp


def artifacts_of(study, store, trial, tmp: Path) -> dict[str, str]:
    files = {}
    for meta in get_all_artifact_meta(trial, storage=study._storage):
        path = tmp / f"{trial.number}-{meta.filename}"
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path))
        files[meta.filename] = path.read_text()
        path.unlink()
    return files


def artifact_ids(study, trial) -> dict[str, str]:
    return {m.filename: m.artifact_id for m in get_all_artifact_meta(trial, storage=study._storage)}


def note_of(study, trial) -> str:
    """The trial's note, as optuna-dashboard reads it."""
    return get_note(optuna.Trial(study, trial._trial_id))


EVERY_TRIAL_FILES = {"architecture.json", "cell.svg", "cell-thumbnail.svg"}


def test_every_trial_has_its_architecture_and_diagram(searched):
    study, store, objective, tmp = searched
    trials = study.get_trials()
    assert len(trials) == 10
    assert {t.user_attrs["feasible"] for t in trials} == {True, False}  # both kinds drawn
    for trial in trials:
        json.dumps(trial.user_attrs, allow_nan=False)  # JSON-safe: no NaN or infinity
        files = artifacts_of(study, store, trial, tmp)
        measured = "spikes_per_image" in trial.user_attrs
        assert set(files) == EVERY_TRIAL_FILES | ({"spikes_by_layer.csv"} if measured else set())
        document = json.loads(files["architecture.json"])
        arch, macro, timesteps = read_architecture(document)
        assert str(arch) == trial.user_attrs["architecture"]
        assert document["origin"] == {"study": "s", "trial": trial.number, "dataset": "digits",
                                      "seed": 3}
        assert document["measured"]["feasible"] == trial.user_attrs["feasible"]
        if math.isfinite(trial.value):  # the score, known once the objective returned
            assert document["measured"]["values"] == [trial.value]
        else:  # over budget, or a network whose kernel is singular: -inf is not JSON
            assert "values" not in document["measured"]
        if not trial.user_attrs.get("invalid_reason"):  # buildable: count its weights
            network = build_network(arch, macro, timesteps)
            assert sum(p.numel() for p in network.parameters()) == trial.user_attrs["parameters"]
        svg = ET.fromstring(files["cell.svg"])
        texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
        assert f"trial {trial.number}" in texts and str(arch.cells[0]) in texts
        thumbnail = ET.fromstring(files["cell-thumbnail.svg"])
        assert thumbnail.findtext("{http://www.w3.org/2000/svg}title") == f"cell diagram of {arch}"


def test_spikes_per_layer_are_an_artifact_not_a_user_attribute(searched):
    """The per-layer counts made the dashboard's trial page scroll sideways; they are a CSV
    artifact (the dashboard shows it as a table), one row per spiking layer of the network the
    trial scored, adding up to its spikes per image."""
    study, store, objective, tmp = searched
    measured = [t for t in study.get_trials() if "spikes_per_image" in t.user_attrs]
    assert measured
    for trial in measured:
        assert "spikes_by_layer" not in trial.user_attrs
        rows = list(csv.DictReader(io.StringIO(
            artifacts_of(study, store, trial, tmp)["spikes_by_layer.csv"]
        )))
        arch = Architecture.parse(trial.user_attrs["architecture"], 2, 4)
        network = objective.build(arch)
        neurons = {name for name, m in network.named_modules() if isinstance(m, BaseNode)}
        assert {r["layer"] for r in rows} <= neurons and {r["kind"] for r in rows} == {"neurons"}
        total = sum(float(r["spikes_per_image"]) for r in rows)
        assert total == pytest.approx(trial.user_attrs["spikes_per_image"], abs=1e-3 * len(rows))
        for r in rows:
            share = 100 * float(r["spikes_per_image"]) / trial.user_attrs["spikes_per_image"]
            assert float(r["share"]) == pytest.approx(share, abs=0.06)


def test_every_trial_note_leads_with_feasibility_and_architecture(searched):
    """The note, shown at the top of the trial's page: first whether it kept the budget (by how
    much it broke it) and its value, then the architecture, the costs against the budget, the
    spikes and the cell diagram."""
    study, store, _, tmp = searched
    for trial in study.get_trials():
        attrs = trial.user_attrs
        note = note_of(study, trial)
        first, _, architecture = note.splitlines()[:3]
        budget = attrs["memory_budget_bits"]
        excess = 100 * (attrs["memory_bits"] - budget) / budget  # from the costs, not the note
        if attrs.get("invalid_reason"):
            assert first == f"### ✗ Invalid, not built or scored: {attrs['invalid_reason']}"
        elif not attrs["feasible"]:
            assert first == f"### ✗ Over budget (memory +{excess:.1f} %), not scored"
            assert f"**+{excess:.1f} % (over)**" in note
        else:
            value = f"{trial.value:.4f}" if math.isfinite(trial.value) else "-∞"
            assert first == f"### ✓ Feasible · score {value}"
            assert f"{excess:+.1f} % (within)" in note
        assert architecture.startswith(f"`{attrs['architecture']}` · width 4, 2 cells · ")
        if "parameters" in attrs:
            kb = attrs["memory_bits"] / 8e3
            assert f"| memory | {kb:.2f} kB ({attrs['parameters']:,} parameters) |" in note
        ids = artifact_ids(study, trial)
        image = f"![cell diagram](/artifacts/{study._study_id}/{trial._trial_id}/{ids['cell.svg']})"
        assert image in note
        if "spikes_per_image" in attrs:
            rows = list(csv.DictReader(io.StringIO(
                artifacts_of(study, store, trial, tmp)["spikes_by_layer.csv"]
            )))
            top = max(rows, key=lambda r: float(r["spikes_per_image"]))
            assert f"**Spikes**: {attrs['spikes_per_image']:,.1f} per image" in note
            assert f"most in layer `{top['layer']}` ({float(top['share']):.0f} %)" in note


def test_the_study_note_names_the_result_and_counts_the_trials(searched):
    study, *_ = searched
    note = get_note(study)
    trials = study.get_trials()
    feasible = [t for t in trials if t.user_attrs["feasible"] and math.isfinite(t.value)]
    best = max(feasible, key=lambda t: t.value)
    link = f"[Trial {best.number}](trials?numbers={best.number})"
    assert f"**{link}**, the best feasible score:" in note
    assert f"`{best.user_attrs['architecture']}`" in note
    cell = artifact_ids(study, best)["cell.svg"]
    assert f"/artifacts/{study._study_id}/{best._trial_id}/{cell})" in note
    over = sum(not t.user_attrs["feasible"] for t in trials)
    scored = sum(t.user_attrs["feasible"] and "duplicate_of" not in t.user_attrs for t in trials)
    duplicates = sum("duplicate_of" in t.user_attrs for t in trials)
    counted = f"10 trials: {scored} scored"
    counted += f", {duplicates} duplicates reused" * bool(duplicates)
    assert f"{counted}, {over} over budget (memory {over})." in note
    assert note.rstrip().endswith(STUDY_NOTE_MARK)


def test_a_note_the_user_wrote_on_the_study_is_kept(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'n.db'}", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    save_study_note(study)  # ours: no trial is feasible (no user attributes at all)
    assert "No feasible architecture got a finite value yet." in get_note(study)
    save_note(study, "my own words")
    save_study_note(study)
    assert get_note(study) == "my own words"


def test_the_study_carries_named_objectives_and_both_figures(searched):
    study, *_ = searched
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    figures = dict(get_plotly_graph_objects(system_attrs))
    assert set(figures) == set(FIGURE_IDS)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    feasible = [t for t in complete if t.user_attrs["feasible"] and math.isfinite(t.value)]
    progress = json.loads(figures["search-progress"])
    assert sorted(progress["data"][0]["x"]) == sorted(t.number for t in feasible)
    best = max(t.value for t in feasible)
    assert progress["data"][1]["y"][-1] == pytest.approx(best)
    # The Pareto trace: a feasible trial is on it exactly when no other one has less (or
    # equal) memory and a higher (or equal) score, one of them strictly.
    front = json.loads(figures["pareto-front"])["data"][1]
    points = [(t.user_attrs["memory_bits"] / 8e6, t.value) for t in feasible]
    expected = {
        p
        for p in points
        if not any(q != p and q[0] <= p[0] and q[1] >= p[1] for q in points)
    }
    assert set(zip(front["x"], front["y"], strict=True)) == expected
    assert study.metric_names == ["score"]


def dashboard_get(storage, path: str) -> dict:
    """GET ``path`` from optuna-dashboard's own WSGI app, in process; its JSON."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(code, headers, exc_info=None):
        status.append(code)

    body = b"".join(wsgi(storage)(environ, start_response))
    assert status == ["200 OK"], (status, body[:300])
    return json.loads(body)


def test_the_dashboard_api_marks_exactly_the_over_budget_trials_infeasible(searched):
    """optuna-dashboard 0.21 greys out a trial when a value of its ``constraints`` list is
    positive; the list holds the named constraints, valid then memory."""
    study, *_ = searched
    detail = dashboard_get(study._storage, f"/api/studies/{study._study_id}")
    trials = {t.number: t for t in study.get_trials()}
    assert sorted(t["number"] for t in detail["trials"]) == sorted(trials)
    infeasible = 0
    for shown in detail["trials"]:
        trial = trials[shown["number"]]
        named = named_constraints(trial.system_attrs)
        assert shown["constraints"] == [named["valid"], named["memory"]]  # never empty
        over = [v > 0 for v in shown["constraints"]]
        assert any(over) == (not trial.user_attrs["feasible"]), trial.number
        assert over[0] == ("invalid_reason" in trial.user_attrs)
        assert over[1] == ("memory" in trial.user_attrs["broken_budgets"])
        infeasible += any(over)
    assert 0 < infeasible < len(trials)  # both kinds are checked


def test_artifact_folder_lies_beside_the_database(tmp_path):
    assert artifact_dir_for(f"sqlite:///{tmp_path / 'nas.db'}") == tmp_path / "nas-artifacts"
    assert artifact_dir_for(str(tmp_path / "journal.log")) == tmp_path / "journal-artifacts"
    assert artifact_dir_for("postgresql://u:p@host/db") == Path("optuna-artifacts").resolve()


def test_a_failing_trial_still_gets_its_artifacts(tmp_path):
    """A trial that fails after suggesting its architecture still shows what it tried."""

    class Exploding(SpikeNASObjective):
        def score_network(self, network, arch):
            raise RuntimeError("boom")

    objective = Exploding(small_config(max_parameters=100_000))
    store = open_artifact_store(tmp_path / "a")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", direction="maximize")
    # a valid cell (conv3x3 on every edge), so that the trial reaches scoring and explodes there
    study.enqueue_trial({f"cell1_edge{i}{j}": "conv3x3" for i, j in EDGES})
    study.optimize(TrialArtifacts(objective, store), n_trials=1, catch=(RuntimeError,))
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL
    names = {m.filename for m in get_all_artifact_meta(trial, storage=study._storage)}
    assert names == EVERY_TRIAL_FILES
    assert note_of(study, trial).startswith("### ✗ Failed: RuntimeError: boom\n")
    arch = Architecture.parse(trial.user_attrs["architecture"], 2, 4)
    assert arch.num_cells == 2


def test_a_duplicate_gets_the_spikes_of_the_trial_it_reuses(tmp_path, one_thread):
    """A canonical duplicate is not scored again: its values and spikes come from the first
    trial, and so does its per-layer artifact; its note links that trial."""
    objective = SpikeNASObjective(small_config(max_parameters=100_000))
    store = open_artifact_store(tmp_path / "a")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}", direction="maximize")
    cell = {f"cell1_edge{i}{j}": "conv3x3" for i, j in EDGES}
    study.enqueue_trial(cell)
    study.enqueue_trial(cell)
    study.optimize(TrialArtifacts(objective, store), n_trials=2)
    trials = study.get_trials()
    assert trials[1].user_attrs["duplicate_of"] == 0
    spikes = [artifacts_of(study, store, t, tmp_path)["spikes_by_layer.csv"] for t in trials]
    assert spikes[0] == spikes[1] and spikes[0].startswith("layer,kind,spikes_per_image,share\n")
    assert "The same network as [trial 0](trials?numbers=0)" in note_of(study, trials[1])


def test_a_pruned_trial_says_so_first(tmp_path):
    class Pruned(SpikeNASObjective):
        def score_network(self, network, arch, init=0):
            raise optuna.TrialPruned("not promising")

    objective = Pruned(small_config(max_parameters=100_000))
    store = open_artifact_store(tmp_path / "a")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}", direction="maximize")
    study.enqueue_trial({f"cell1_edge{i}{j}": "conv3x3" for i, j in EDGES})
    study.optimize(TrialArtifacts(objective, store), n_trials=1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert note_of(study, trial).startswith("### ✗ Pruned: not promising\n")


def test_note_headlines_of_the_other_outcomes():
    """Outcomes the searches above do not reach: a screened (not trained) candidate, a NaN
    score, an error of several lines (a heading is one line), two objectives."""
    attrs = {"architecture": "0302 0030 3003 0000", "feasible": True, "stage": "screen",
             "score": 1.23456}
    screened = trial_note(attrs, TrialOutcome([-math.inf]), ["validation accuracy"])
    assert screened.startswith("### ✓ Feasible · screened: score 1.2346, not trained\n")
    nan = TrialOutcome([math.nan])
    failed = trial_note(attrs | {"score_error": "the score of x is NaN"}, nan, ["score"])
    assert failed.startswith("### ✗ Failed: the score of x is NaN\n")
    error = TrialOutcome(None, "failed: ValueError: first line\nsecond line")
    assert trial_note(attrs, error, ["score"]).startswith("### ✗ Failed: ValueError: first line\n")
    two = trial_note({"architecture": "a", "feasible": True}, TrialOutcome([2.5, 0.75]),
                     value_names({}, 2))
    assert two.startswith("### ✓ Feasible · score 2.5000 · validation accuracy 0.7500\n")
    assert value_names({"val_accuracy": 0.5}, 1) == ["validation accuracy"]  # a trained stage


def test_the_study_note_names_the_trial_a_search_marks_as_its_result(tmp_path):
    """A cell-by-cell or evolution search marks its result (``search_result``), which need not
    be the best score: the note names the marked trial, "so far" until the study is marked."""
    from optuna.trial import create_trial

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'r.db'}", direction="maximize")
    for value, attrs in ((2.0, {}), (1.0, {"search_result": 1})):
        attrs |= {"architecture": f"arch scoring {value}", "feasible": True}
        study.add_trial(create_trial(value=value, user_attrs=attrs))
    save_study_note(study)
    assert "**[Trial 1](trials?numbers=1)**, the search's result so far" in get_note(study)
    study.set_user_attr("search_result", 1)
    save_study_note(study)  # its own note: replaced
    assert "**[Trial 1](trials?numbers=1)**, the search's result:" in get_note(study)
    assert "`arch scoring 1.0`" in get_note(study)
