"""From a search to a deployable network, as a user runs it: `export` (of the best trial, or
of the network a cell-by-cell search grew), the exported `model.py`, then `train` on the exported
architecture (and its errors, one line each)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial
from study_configs import TINY_CELL_BY_CELL

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


def optimized(tmp: Path, name: str, config_text: str, *flags: str):
    """A study ``name`` in ``tmp/name.db`` created and searched by ``optimize`` with the config
    ``config_text`` (written to ``tmp/name.toml``): its URL, the config's path, what it printed."""
    url = f"sqlite:///{tmp / f'{name}.db'}"
    config = tmp / f"{name}.toml"
    config.write_text(config_text)
    assert run(BIN / "optuna", "create-study", "--storage", url, "--study-name", name,
               "--direction", "maximize").returncode == 0
    done = run(BIN / "optuna-spikenas", "optimize", "--storage", url, "--study-name", name,
               "--config", config, "--quiet", *flags)
    assert done.returncode == 0, done.stderr
    return url, config, done


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    url, config, _ = optimized(tmp, "s", CONFIG)
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


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """A complete cell-by-cell search (test_cellbycell's tiny one) and what optimize printed."""
    tmp = tmp_path_factory.mktemp("grown")
    url, config, done = optimized(tmp, "g", TINY_CELL_BY_CELL, "--threads", "1")
    return tmp, url, config, done.stdout


def sampler_result(url: str, config: Path) -> optuna.trial.FrozenTrial:
    """The grown network as the study's own sampler, built from the config, says it."""
    from optuna_spikenas.config import load_config
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.samplers import make_sampler

    settings = load_config(config)
    objective = SpikeNASObjective(settings)
    sampler = make_sampler("cellbycell", settings.seed, space=objective.space,
                           ops=settings.search.ops, fits_budget=objective.fits_budget)
    study = optuna.load_study(study_name="g", storage=url)
    assert sampler.is_complete(study)
    return sampler.result(study)


def test_export_takes_the_network_the_cell_by_cell_search_grew(grown):
    tmp, url, config, _ = grown
    final = sampler_result(url, config)
    trials = optuna.load_study(study_name="g", storage=url).trials
    assert final.params["num_cells"] == max(t.params["num_cells"] for t in trials) == 3
    out = tmp / "grown-network"
    exported = run(BIN / "optuna-spikenas", "export", "--storage", url, "--study-name", "g",
                   "--out", out)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines()[0] == (
        f"trial {final.number} exported to {out} "
        "(the network the cell-by-cell search grew: 3 cells)"
    )
    document = json.loads((out / "architecture.json").read_text())
    assert document["architecture"] == final.user_attrs["architecture"]
    assert document["input"]["dataset"] == "digits"


def test_the_summary_prints_the_grown_network_once(grown):
    """In this search the grown network is also the best-scoring trial: printed once, and the
    cell-by-cell lines point at it."""
    _, url, config, printed = grown
    final = sampler_result(url, config)
    assert f"best trial {final.number}: score" in printed
    assert printed.count(final.user_attrs["architecture"]) == 1
    assert printed.count(f"{final.user_attrs['parameters']:,}") == 1
    assert f"  grown network: trial {final.number}, the best trial above\n" in printed


def test_a_better_score_outside_the_search_does_not_change_what_is_exported(grown, tmp_path):
    """The export follows the search, not the study's best value: a trial added by hand that
    scores higher than the grown network is not exported."""
    tmp, url, config, _ = grown
    final = sampler_result(url, config)
    shutil.copyfile(tmp / "g.db", tmp_path / "copy.db")
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    study = optuna.load_study(study_name="g", storage=copy)
    study.add_trial(create_trial(value=final.value + 1.0, user_attrs=dict(final.user_attrs)))
    assert study.best_trial.number != final.number
    out = tmp_path / "out"
    exported = run(BIN / "optuna-spikenas", "export", "--storage", copy, "--study-name", "g",
                   "--out", out, "--config", config)  # no artifacts beside the copy: rebuilt
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"trial {final.number} exported to {out} (the network")
