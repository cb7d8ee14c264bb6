"""optuna-spikenas export: the trial it picks, architecture.json with the input contract, a
standalone model.py that computes exactly what the package's network computes and prepares raw
data exactly as the package's pipeline does, NIR, and the errors."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from spikingjelly.activation_based import functional, neuron
from test_event_datasets import make_gesture
from test_image_datasets import write_cifar
from torch import nn

from optuna_spikenas import data
from optuna_spikenas.architecture_file import (
    architecture_record,
    read_architecture,
    read_input_contract,
)
from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, PAPER_CIFAR10_ARCH, AutoSNNArchitecture
from optuna_spikenas.config import config_from_dict
from optuna_spikenas.dashboard import TrialArtifacts, artifact_dir_for, open_artifact_store
from optuna_spikenas.event_datasets import (
    DVS_GESTURE_CLASSES,
    events_to_frames,
    load_event_dataset,
    read_gesture_npy,
)
from optuna_spikenas.export import (
    ExportError,
    best_feasible_trial,
    build_from_document,
    export_trial,
    write_model_py,
)
from optuna_spikenas.image_datasets import CIFAR10_CLASSES
from optuna_spikenas.macros import get_macro
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.samplers.evolution import EvolutionarySampler
from optuna_spikenas.samplers.result_mark import RESULT_ATTR
from optuna_spikenas.space import Architecture
from optuna_spikenas.study_setup import study_dataset

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

import numpy as np
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
    assert_clean_code(root, [f"{case}/model.py" for case in CASES])


def assert_clean_code(root: Path, files: list[str]) -> None:
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
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


# --- the input contract: model.py's preprocess() is the package's data pipeline --------------

needs_tonic = pytest.mark.skipif(
    importlib.util.find_spec("tonic") is None, reason="event datasets need tonic"
)
PIPELINE_CASES = ["digits", "animal-mnist", "cifar10", pytest.param("dvs128", marks=needs_tonic)]

# In each case's folder: model.py's preprocess() on the raw samples, and its network (with the
# case's weights.pt) on the first two prepared samples; an "old" case whose document predates the
# contract.
PREPROCESS_CHECK = """\
import json

import numpy as np
import torch
results = {}
for case in json.load(open("cases.json")):
    model = runpy.run_path(f"{case}/model.py")
    raw = torch.load(f"{case}/raw.pt", weights_only=True)
    try:
        prepared = model["preprocess"](raw)
    except ValueError as error:
        results[case] = {"error": str(error)}
        continue
    with torch.no_grad():
        out = model["build_model"](f"{case}/weights.pt").eval()(prepared[:2])
    torch.save({"prepared": prepared, "out": out}, f"{case}/prepared.pt")
    results[case] = {"classes": model["CLASSES"], "dtype": str(prepared.dtype)}
json.dump(results, open("results.json", "w"))
"""


def raw_test_split(name: str, seed: int) -> torch.Tensor:
    """The raw pixels of a built-in dataset's test split, as stored (uint8 [N, H, W])."""
    images, labels, _ = data._load_raw(name)
    _, _, test = data._split_indices(labels, seed, 0.1, 0.1)  # the pipeline's own split
    return torch.from_numpy(images[test].copy())


def pipeline_cases(root: Path) -> dict[str, tuple[torch.Tensor, data.Dataset, list[str]]]:
    """Per case: raw samples (in a layout preprocess() must accept), the dataset the package's
    pipeline made of them (whose test split they are) and its known class names."""
    digits = data.load_dataset("digits", seed=3)
    animals = data.load_dataset("animal-mnist", seed=5)
    folder, written = write_cifar(root / "cifar", "cifar10", "python")
    cifar = data.load_dataset("cifar10", seed=0, val_fraction=0.2, path=folder)
    cases = {
        "digits": (raw_test_split("digits", 3), digits, [str(d) for d in range(10)]),
        "animal-mnist": (  # with its channel axis
            raw_test_split("animal-mnist", 5)[:, None],
            animals,
            list(data.ANIMAL_MNIST_CLASSES),
        ),
        "cifar10": (  # channels last, as images usually come
            torch.from_numpy(written["test_x"].reshape(-1, 3, 32, 32)).permute(0, 2, 3, 1),
            cifar,
            list(CIFAR10_CLASSES),
        ),
    }
    if importlib.util.find_spec("tonic") is not None:
        make_gesture(root / "DVSGesture")
        gesture = load_event_dataset("dvs128-gesture", root, 4, seed=0, val_fraction=0.25)
        files = sorted((root / "DVSGesture" / "ibmGestureTest").glob("*/*.npy"))  # its order
        counts = [events_to_frames(read_gesture_npy(f), 4, 64) for f in files]
        raw = torch.from_numpy(np.stack(counts).astype(np.int64))
        cases["dvs128"] = (raw, gesture, list(DVS_GESTURE_CLASSES))
    return cases


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory, one_thread):
    """Per case: what the package's pipeline and network gave, and what model.py computed from
    the raw samples in a process that cannot import optuna_spikenas."""
    root = tmp_path_factory.mktemp("preprocess")
    arch = Architecture.parse("0302 0030 3003 0000", 2, 4)
    expected = {}
    for case, (raw, dataset, classes) in pipeline_cases(root).items():
        folder = root / case
        folder.mkdir(exist_ok=True)
        timesteps = 4 if case == "dvs128" else 2
        macro = get_macro("light").for_data(
            dataset.in_channels, dataset.image_size, dataset.num_classes
        )
        document = architecture_record(
            arch, macro, timesteps, input_contract=dataset.input_contract
        )
        write_model_py(document, folder)
        torch.save(raw, folder / "raw.pt")
        network = build_from_document(document, seed=7)
        randomize_state(network)  # spikes reach the output
        torch.save(network.state_dict(), folder / "weights.pt")
        with torch.no_grad():
            out = network.eval()(dataset.test.images[:2])
        expected[case] = (dataset.test.images, out, classes, document)
    old = architecture_record(arch, get_macro("light").for_data(1, 8, 10), 2)
    old.pop("input")
    old["version"] = 1  # a document written before the input contract
    (root / "old").mkdir()
    write_model_py(old, root / "old")
    torch.save(torch.zeros(1, 8, 8, dtype=torch.uint8), root / "old" / "raw.pt")
    (root / "cases.json").write_text(json.dumps([*expected, "old"]))
    run_standalone(root, PREPROCESS_CHECK)
    return root, expected, json.loads((root / "results.json").read_text())


@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_preprocess_in_model_py_reproduces_the_package_pipeline(case, preprocessed):
    root, expected, results = preprocessed
    images, out, classes, document = expected[case]
    standalone = torch.load(root / case / "prepared.pt", weights_only=True)
    prepared = standalone["prepared"]
    assert results[case] == {"classes": classes, "dtype": "torch.float32"}
    assert document["input"]["classes"] == classes
    assert prepared.shape == images.shape and images.std() > 0
    if case == "dvs128":  # NumPy's float32 log1p (the pipeline) and PyTorch's differ in the
        # last bit for some counts; the counts themselves agree
        torch.testing.assert_close(prepared, images, rtol=2.5e-7, atol=0)
        assert torch.equal(
            torch.expm1(prepared.double()).round(), torch.expm1(images.double()).round()
        )
        return
    assert torch.equal(prepared, images)  # to the last bit
    assert torch.equal(standalone["out"], out)  # and the network computes the same from them
    assert out.std() > 0


def test_the_contract_records_the_normalisation_the_pipeline_used(preprocessed):
    """The numbers in architecture.json are the train split's own statistics (digits,
    animal-mnist) or SNASNet's constants (CIFAR), computed here independently."""
    _, expected, _ = preprocessed
    images, labels, _ = data._load_raw("digits")
    train, _, _ = data._split_indices(labels, 3, 0.1, 0.1)
    pixels = images[train].astype(np.float64) / 16.0
    digits = expected["digits"][3]["input"]
    assert digits["normalise"]["mean"] == [float(pixels.mean())]
    assert digits["normalise"]["std"] == [float(pixels.std())]
    assert digits["normalise"]["scale"] == 16.0 and digits["raw"]["max"] == 16
    assert digits["normalise"]["split"] == {
        "train_images": len(train),
        "seed": 3,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
    }
    assert (digits["shape"], digits["timesteps"], digits["encoding"]) == ([1, 8, 8], 2, "direct")
    cifar = expected["cifar10"][3]["input"]
    assert (cifar["normalise"]["mean"], cifar["normalise"]["std"]) == (
        [0.4913, 0.4821, 0.4465],
        [0.2470, 0.2434, 0.2615],
    )
    assert cifar["normalise"]["precision"] == "float32" and cifar["raw"]["max"] == 255


def test_model_py_with_or_without_an_input_contract_is_clean_code(preprocessed):
    root, expected, _ = preprocessed
    assert_clean_code(root, [f"{case}/model.py" for case in [*expected, "old"]])


def test_model_py_without_an_input_contract_says_why(preprocessed):
    _, _, results = preprocessed
    assert "records no input contract" in results["old"]["error"]
    assert "--config" in results["old"]["error"]


def test_an_artifact_that_predates_the_input_contract(tmp_path):
    """A trial whose architecture.json artifact was written before the contract: exported as it
    is, with a note; with --config the contract comes from the config's data."""
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_artifact_store(artifact_dir_for(storage))
    study = optuna.create_study(storage=storage, study_name="old", direction="maximize")
    arch = Architecture.parse("0302 0030 3003 0000", 2, 4)
    old = architecture_record(arch, get_macro("light").for_data(1, 8, 10), 2)
    old.pop("input")
    old["version"] = 1
    (tmp_path / "architecture.json").write_text(json.dumps(old))
    trial = study.ask()
    optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "architecture.json"), study_or_trial=trial
    )
    for key, value in {"architecture": str(arch), "feasible": True}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 1.0)

    plain = export_trial(storage, "old", tmp_path / "plain")
    assert "version 1 documents predate it" in plain.input_problem
    assert json.loads(plain.architecture_json.read_text()) == old

    config = small_config()
    given = export_trial(storage, "old", tmp_path / "given", config=config)
    document = json.loads(given.architecture_json.read_text())
    assert given.input_problem is None and document["version"] == 2
    assert read_input_contract(document) == study_dataset(config).input_contract.as_dict(2)
    assert {k: v for k, v in document.items() if k not in ("input", "version")} == {
        k: v for k, v in old.items() if k != "version"
    }


def test_a_damaged_input_contract_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'damaged.db'}"
    study = optuna.create_study(storage=storage, study_name="d", direction="maximize")
    arch = Architecture.parse("0302 0030 3003 0000", 2, 4)
    contract = data.load_dataset("digits", seed=3).input_contract
    document = architecture_record(arch, get_macro("light").for_data(1, 8, 10), 2)
    document["input"] = dict(contract.as_dict(2), shape=[1, 8])
    (tmp_path / "architecture.json").write_text(json.dumps(document))
    trial = study.ask()
    store = open_artifact_store(artifact_dir_for(storage))
    optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "architecture.json"), study_or_trial=trial
    )
    trial.set_user_attr("feasible", True)
    study.tell(trial, 1.0)
    with pytest.raises(ExportError, match="artifact of trial 0: input contract: shape must be"):
        export_trial(storage, "d", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_config_other_than_the_trials_is_refused(searched, tmp_path):
    storage, _, _ = searched
    other = replace(small_config(), seed=4)  # another split: other train-split statistics
    with pytest.raises(ExportError, match=r"--config is not the config trial \d+ was made with"):
        export_trial(storage, "s", tmp_path / "out", config=other)
    assert not (tmp_path / "out").exists()


# --- which trial: the search's own result ------------------------------------------------------


def test_an_evolutionary_search_exports_its_fittest_candidate(tmp_path, one_thread):
    """Not the best-scoring trial of the study: a trial the search did not make (added by hand,
    scoring higher) is not its result."""
    storage = f"sqlite:///{tmp_path / 'evolution.db'}"
    config = small_config()
    objective = SpikeNASObjective(config)
    sampler = EvolutionarySampler.for_cell_space(
        objective.space, population_size=4, num_parents=2, generations=3, seed=0
    )
    study = optuna.create_study(
        storage=storage, study_name="evo", direction="maximize", sampler=sampler
    )
    study.optimize(objective)  # stops by itself after 3 generations of 4
    fittest = sampler.best_trials(study, 1)[0]
    assert study.user_attrs[RESULT_ATTR] == fittest.number
    outsider = dict(fittest.user_attrs, feasible=True)
    study.add_trial(create_trial(value=fittest.value + 1.0, user_attrs=outsider))

    result = export_trial(storage, "evo", tmp_path / "out", config=config)
    assert result.trial_number == fittest.number != study.best_trial.number
    assert (
        result.why
        == "the fittest candidate of the evolutionary search: 12 evaluated over 3 generations"
    )
    document = json.loads(result.architecture_json.read_text())
    assert document["architecture"] == fittest.user_attrs["architecture"]
    asked = export_trial(storage, "evo", tmp_path / "asked", trial_number=12, config=config)
    assert (asked.trial_number, asked.why) == (12, "as asked")
