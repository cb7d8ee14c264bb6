"""optuna-spikenas export: the trial it picks, architecture.json, a standalone model.py that
computes exactly what the package's network computes, NIR, and the errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from spikingjelly.activation_based import functional, neuron
from torch import nn

from optuna_spikenas.architecture_file import architecture_record, read_architecture
from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, PAPER_CIFAR10_ARCH, AutoSNNArchitecture
from optuna_spikenas.config import config_from_dict
from optuna_spikenas.dashboard import TrialArtifacts, artifact_dir_for, open_artifact_store
from optuna_spikenas.export import (
    ExportError,
    best_feasible_trial,
    build_from_document,
    export_trial,
    write_model_py,
)
from optuna_spikenas.macros import get_macro
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.space import Architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)

BLOCK = """\
import sys
sys.modules["optuna_spikenas"] = None  # installed (editable) in this venv: block it, and Optuna
sys.modules["optuna"] = None
try:
    import optuna_spikenas
except ImportError:
    print("optuna_spikenas blocked")
else:
    raise SystemExit("optuna_spikenas is importable")
import runpy
"""


def run_standalone(folder: Path, code: str) -> str:
    """Run ``code`` in ``folder`` in a Python that cannot import optuna_spikenas or optuna."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-I", "-c", BLOCK + code],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "optuna_spikenas blocked" in done.stdout
    return done.stdout


def small_config():
    return config_from_dict(
        {
            "seed": 3,
            "dataset": {"name": "digits"},
            "space": {"macro": "light", "widths": [4]},
            "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
            "budget": {"max_parameters": 1500},
        }
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory, one_thread):
    """A real random search of 10 trials with artifacts beside the SQLite database."""
    tmp = tmp_path_factory.mktemp("export")
    storage = f"sqlite:///{tmp / 'nas.db'}"
    store = open_artifact_store(artifact_dir_for(storage))
    study = optuna.create_study(
        storage=storage,
        study_name="s",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=5),
    )
    study.optimize(TrialArtifacts(SpikeNASObjective(small_config()), store), n_trials=10)
    other = optuna.create_study(storage=storage, study_name="other")
    other.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"architecture": "x"}))
    attrs = {"architecture": "0302 0030 3003 0000", "num_cells": 2, "width": 4, "feasible": False}
    other.add_trial(create_trial(value=-math.inf, user_attrs=attrs))
    return storage, study, tmp


def artifact_document(storage: str, study: optuna.Study, number: int) -> dict:
    metas = optuna.artifacts.get_all_artifact_meta(study.trials[number], storage=study._storage)
    (meta,) = [m for m in metas if m.filename == "architecture.json"]
    store = open_artifact_store(artifact_dir_for(storage))
    with store.open_reader(meta.artifact_id) as reader:
        return json.loads(reader.read())


def test_exports_the_best_feasible_trial_as_a_standalone_model(searched, tmp_path):
    storage, study, _ = searched
    trials = study.get_trials()
    feasible = [t for t in trials if t.user_attrs["feasible"] and math.isfinite(t.value)]
    assert feasible and len(feasible) < len(trials)  # both kinds drawn
    best = max(feasible, key=lambda t: (t.value, -t.number))
    arch = Architecture.parse(best.user_attrs["architecture"], 2, 4)
    macro = get_macro("light").for_data(1, 8, 10)
    weights = tmp_path / "trained.pt"
    torch.save(
        build_from_document(architecture_record(arch, macro, 2), seed=1).state_dict(), weights
    )

    result = export_trial(storage, "s", tmp_path / "out", weights=weights)
    assert result.trial_number == best.number
    assert result.weights == tmp_path / "out" / "weights.pt" and result.weights.is_file()
    assert result.nir is None
    document = json.loads(result.architecture_json.read_text())
    assert document == artifact_document(storage, study, best.number)
    read_arch, read_macro, timesteps = read_architecture(document)
    assert (read_arch, read_macro, timesteps) == (arch, replace(macro, width=4), 2)

    out = run_standalone(result.model_py.parent, "runpy.run_path('model.py', run_name='__main__')")
    assert "weights: weights.pt" in out and "output shape: [1, 10]" in out


def test_a_given_trial_even_infeasible(searched, tmp_path):
    storage, study, _ = searched
    infeasible = next(t for t in study.get_trials() if not t.user_attrs["feasible"])
    result = export_trial(storage, "s", tmp_path, trial_number=infeasible.number)
    assert result.trial_number == infeasible.number
    document = json.loads(result.architecture_json.read_text())
    assert document["architecture"] == infeasible.user_attrs["architecture"]
    assert document["origin"]["trial"] == infeasible.number
    assert "DOCUMENT = json.loads(ARCHITECTURE_JSON)" in result.model_py.read_text()


def test_without_artifacts_the_config_rebuilds_the_same_document(searched, tmp_path):
    storage, study, _ = searched
    nowhere = tmp_path / "no-artifacts"
    with pytest.raises(ExportError, match="no architecture.json artifact .*pass --config"):
        export_trial(storage, "s", tmp_path / "a", artifact_dir=nowhere)
    assert not (tmp_path / "a").exists()
    result = export_trial(storage, "s", tmp_path / "b", artifact_dir=nowhere, config=small_config())
    rebuilt = json.loads(result.architecture_json.read_text())
    assert rebuilt == artifact_document(storage, study, result.trial_number)


def test_errors_say_what_is_wrong(searched, tmp_path):
    storage, _, _ = searched
    with pytest.raises(
        ExportError, match=r"study 'nope' does not exist in sqlite:.*\(studies there: s, other\)$"
    ):
        export_trial(storage, "nope", tmp_path)
    with pytest.raises(ExportError, match=r"has no trial 10 \(trials 0 to 9\)"):
        export_trial(storage, "s", tmp_path, trial_number=10)
    with pytest.raises(ExportError, match="has no feasible trial"):
        export_trial(storage, "other", tmp_path)
    with pytest.raises(ExportError, match="trial 0 of study 'other' is FAIL, not COMPLETE"):
        export_trial(storage, "other", tmp_path, trial_number=0)
    with pytest.raises(ExportError, match="no architecture.json artifact .*pass --config"):
        export_trial(storage, "other", tmp_path, trial_number=1)
    wrong = tmp_path / "wrong.pt"
    arch = Architecture.parse("0333 0033 0003 0000", 2, 4)
    document = architecture_record(arch, get_macro("light").for_data(1, 8, 10), 2)
    torch.save(build_from_document(document).state_dict(), wrong)
    with pytest.raises(ExportError, match="do not fit the architecture"):
        export_trial(storage, "s", tmp_path / "w", weights=wrong)
    assert not (tmp_path / "w").exists()  # checked before anything is written


def test_best_feasible_trial_takes_the_first_objective():
    def trial(values, feasible=True, state=TrialState.COMPLETE):
        return create_trial(state=state, values=values, user_attrs={"feasible": feasible})

    trials = [
        trial([0.5, 3.0]),
        trial([0.9, 1.0], feasible=False),
        trial([0.7, 9.0]),
        trial([math.inf, 1.0]),
        trial(None, state=TrialState.FAIL),
        trial([0.7, 0.0]),
    ]
    for number, t in enumerate(trials):
        t.number = number
    assert best_feasible_trial(trials).number == 2  # the first of the two 0.7s
    assert best_feasible_trial(trials, "minimize").number == 0
    assert best_feasible_trial(trials[1:2] + trials[4:5]) is None


def randomize_state(network: nn.Module) -> None:
    """Batch-norm statistics and affines, linear weights and PLIF leaks far from their initial
    values: evaluation mode then computes something the initial state would not, and spikes
    reach the output."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(11)
        for m in network.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 2.5)
                m.bias.uniform_(0.2, 1.2)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.5)
            elif isinstance(m, neuron.ParametricLIFNode):
                m.w.uniform_(-1.0, 1.0)


CASES = {
    "snasnet-two-cells-backward": (
        Architecture.parse("0302 0020 4003 0300 / 0314 0000 0002 0000", 2, 4),
        get_macro("light").for_data(1, 8, 10),
    ),
    "snasnet-cifar10-tiny": (
        Architecture.parse("0303 0030 2002 0200", 2, 4),
        replace(get_macro("snasnet-cifar10"), hidden=64).for_data(3, 16, 10),
    ),
    "autosnn": (
        AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH),
        replace(AUTOSNN_MACROS["autosnn-16"], width=4, timesteps=2).for_data(3, 16, 10),
    ),
}

# In each case's folder: build model.py's network with the package's weights, run the saved
# input, save what came out; then run model.py as a script. One process for all cases.
STANDALONE_CHECK = """\
import json
import os
import torch
for case in json.load(open("cases.json")):
    os.chdir(case)
    model = runpy.run_path("model.py")
    network = model["build_model"]("weights.pt").eval()
    with torch.no_grad():
        out = network(torch.load("input.pt", weights_only=True))
    seeded = model["build_model"](seed=7).state_dict()
    torch.save({"out": out, "seeded": seeded}, "standalone.pt")
    keys = list(network.state_dict())
    json.dump({"keys": keys, "document": model["DOCUMENT"]}, open("standalone.json", "w"))
    print("case", case)
    runpy.run_path("model.py", run_name="__main__")
    os.chdir("..")
"""


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, one_thread):
    """Per case: the package's network (seeded, then its state randomized, saved as weights.pt)
    and its outputs on a saved input, and what model.py computed from the same files."""
    root = tmp_path_factory.mktemp("standalone")
    expected = {}
    for case, (arch, macro) in CASES.items():
        folder = root / case
        folder.mkdir()
        document = architecture_record(arch, macro, 2, {}, {"study": "t", "trial": 0})
        write_model_py(document, folder)
        network = build_from_document(document, seed=7)
        seeded = {k: v.clone() for k, v in network.state_dict().items()}
        randomize_state(network)
        torch.save(network.state_dict(), folder / "weights.pt")
        images = 3 * torch.rand(2, macro.in_channels, macro.image_size, macro.image_size)
        torch.save(images, folder / "input.pt")
        with torch.no_grad():
            out = network.eval()(images)
        functional.reset_net(network)
        expected[case] = (document, network, seeded, out)
    (root / "cases.json").write_text(json.dumps(list(CASES)))
    printed = run_standalone(root, STANDALONE_CHECK).split("case ")[1:]
    return root, expected, {text.split()[0]: text for text in printed}


@pytest.mark.parametrize("case", CASES)
def test_model_py_computes_what_the_package_computes(case, standalone):
    root, expected, printed = standalone
    document, network, seeded, out = expected[case]
    assert out.std() > 0  # spikes reached the output: the comparison means something
    assert f"output shape: [1, {document['macro']['num_classes']}]" in printed[case]
    assert "weights: weights.pt" in printed[case]
    standalone_out = torch.load(root / case / "standalone.pt", weights_only=True)
    reported = json.loads((root / case / "standalone.json").read_text())
    assert reported["document"] == document
    assert reported["keys"] == list(network.state_dict())
    assert torch.allclose(standalone_out["out"], out, rtol=0, atol=0)  # exactly equal
    assert standalone_out["seeded"].keys() == seeded.keys()  # and the same initialisation
    assert all(torch.equal(standalone_out["seeded"][k], v) for k, v in seeded.items())


def test_model_py_is_clean_code(standalone):
    """No undefined or unused names, sorted imports, formatted: ruff as the package uses it."""
    root, _, _ = standalone
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
    files = [f"{case}/model.py" for case in CASES]
    options = ["--isolated", "--no-cache", "--line-length", "100"]
    lint = [ruff, "check", *options, "--select", "E,F,W,I,B,UP", *files]
    checked = subprocess.run(lint, cwd=root, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    formatted = subprocess.run(
        [ruff, "format", "--check", *options, *files], cwd=root, capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout


def test_nir_without_the_extra_says_how_to_install_it(searched, tmp_path, monkeypatch):
    storage, _, _ = searched
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ExportError, match=r"pip install 'optuna-spikenas\[nir\]'"):
        export_trial(storage, "s", tmp_path / "out", nir=True)
    assert not (tmp_path / "out").exists()
