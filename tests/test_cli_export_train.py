"""From a search to a deployable network, as a user runs it: `export`, the exported
`model.py`, then `train` on the exported architecture (and its errors, one line each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

BIN = Path(sys.executable).parent
CONFIG = """
seed = 1
[dataset]
name = "digits"
[space]
macro = "light"
widths = [4]
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 6000
[train]
batch_size = 32
max_train_batches = 4
[search]
n_trials = 6
"""


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
        env={"OMP_NUM_THREADS": "1", "PATH": str(BIN)},
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    url = f"sqlite:///{tmp / 'nas.db'}"
    config = tmp / "search.toml"
    config.write_text(CONFIG)
    assert run(BIN / "optuna", "create-study", "--storage", url, "--study-name", "s",
               "--direction", "maximize").returncode == 0
    done = run(BIN / "optuna-spikenas", "optimize", "--storage", url, "--study-name", "s",
               "--config", config, "--quiet")
    assert done.returncode == 0, done.stderr
    return tmp, url, config


def test_export_then_train_the_best_architecture(searched):
    tmp, url, config = searched
    out = tmp / "best"
    exported = run(BIN / "optuna-spikenas", "export", "--storage", url, "--study-name", "s",
                   "--out", out)
    assert exported.returncode == 0, exported.stderr
    document = json.loads((out / "architecture.json").read_text())
    best = optuna.load_study(study_name="s", storage=url).best_trial
    assert document["architecture"] == best.user_attrs["architecture"]
    shown = run(sys.executable, "model.py", cwd=out)  # the standalone module, as shipped
    assert shown.returncode == 0, shown.stderr
    assert "[1, 10]" in shown.stdout

    trained = run(BIN / "optuna-spikenas", "train", "--arch-json", out / "architecture.json",
                  "--config", config, "--epochs", "1", "--out", tmp / "trained", "--quiet")
    assert trained.returncode == 0, trained.stderr
    result = json.loads((tmp / "trained" / "result.json").read_text())
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (tmp / "trained" / "weights.pt").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "--study-name", "nope", "--out", "x"], "nope"),
        (["export", "--study-name", "s", "--trial", "999", "--out", "x"], "999"),
        (["train", "--arch-json", "missing.json"], "missing.json"),
        (["train", "--arch-json", "broken.json"], "not JSON"),
        (["train", "--arch-json", "other.json"], "not an architecture document"),
    ],
)
def test_bad_input_ends_in_one_line(searched, args, message):
    tmp, url, config = searched
    (tmp / "broken.json").write_text("{architecture")
    (tmp / "other.json").write_text('{"hello": 1}')
    command = args[0]
    extra = ["--storage", url] if command == "export" else ["--config", config]
    done = run(BIN / "optuna-spikenas", *args, *extra, cwd=tmp)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp / "x").exists()  # nothing half-written
