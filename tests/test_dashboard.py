"""What the dashboard gets from a search: per-trial artifacts and the study's figures."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from optuna_spikenas.architecture_file import read_architecture
from optuna_spikenas.config import config_from_dict
from optuna_spikenas.constraint_list import named_constraints
from optuna_spikenas.dashboard import (
    FIGURE_IDS,
    TrialArtifacts,
    artifact_dir_for,
    open_artifact_store,
    save_study_figures,
)
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
    return study, store, objective, tmp


def artifacts_of(study, store, trial, tmp: Path) -> dict[str, str]:
    files = {}
    for meta in get_all_artifact_meta(trial, storage=study._storage):
        path = tmp / f"{trial.number}-{meta.filename}"
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path))
        files[meta.filename] = path.read_text()
        path.unlink()
    return files


def test_every_trial_has_its_architecture_and_diagram(searched):
    study, store, objective, tmp = searched
    trials = study.get_trials()
    assert len(trials) == 10
    assert {t.user_attrs["feasible"] for t in trials} == {True, False}  # both kinds drawn
    for trial in trials:
        json.dumps(trial.user_attrs, allow_nan=False)  # JSON-safe: no NaN or infinity
        files = artifacts_of(study, store, trial, tmp)
        assert set(files) == {"architecture.json", "cell.svg"}
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
    assert names == {"architecture.json", "cell.svg"}
    arch = Architecture.parse(trial.user_attrs["architecture"], 2, 4)
    assert arch.num_cells == 2
