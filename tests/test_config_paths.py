"""Paths in a config file are relative to the file, not to the folder a command runs in: the
dataset, the super-network's checkpoints and a hardware profile are found from anywhere, and one
config binds a study to the same settings wherever it is run from."""

from __future__ import annotations

import os
import shutil
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from optuna_spikenas.config import config_from_dict, load_config
from optuna_spikenas.study_binding import config_fingerprint, value_settings

STUDY = """\
seed = 3
[dataset]
name = "npz"
path = "../data/tiny.npz"
[space]
macro = "light"
[hardware]
profile = "chips/chip.toml"
[supernet]
checkpoint_dir = "ckpt"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """project/configs/study.toml with its data one folder up and its chip profile below it."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 12, 12), dtype=np.uint8)
    np.savez(root / "data" / "tiny.npz", images=images, labels=np.repeat(np.arange(3), 20))
    chips = root / "configs" / "chips"
    chips.mkdir(parents=True)
    shipped = resources.files("optuna_spikenas.hardware") / "profiles" / "spikesim-64.toml"
    (chips / "chip.toml").write_text(shipped.read_text(encoding="utf-8"))
    (root / "configs" / "study.toml").write_text(STUDY)
    (tmp_path / "elsewhere").mkdir()
    return root


def test_relative_paths_are_relative_to_the_config_file(project, monkeypatch):
    monkeypatch.chdir(project.parent / "elsewhere")
    config = load_config("../project/configs/study.toml")
    configs = project / "configs"
    assert Path(config.dataset.path).resolve() == project / "data" / "tiny.npz"
    assert Path(config.supernet.checkpoint_dir) == configs / "ckpt"
    assert Path(config.hardware.profile) == configs / "chips" / "chip.toml"
    assert config.base_dir == str(configs)
    # and the data is found from here: the split is the file's 60 images
    from optuna_spikenas.study_setup import study_dataset

    dataset = study_dataset(config)
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 60


def test_the_default_checkpoint_folder_is_beside_the_config_too(project, monkeypatch):
    study = project / "configs" / "study.toml"
    study.write_text(STUDY.replace('checkpoint_dir = "ckpt"\n', ""))
    monkeypatch.chdir(project.parent / "elsewhere")
    config = load_config(study)
    assert Path(config.supernet.checkpoint_dir) == project / "configs" / "checkpoints"


def test_absolute_and_home_paths_are_not_moved(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = project / "data" / "tiny.npz"
    (tmp_path / "home").mkdir()
    shutil.copy(data, tmp_path / "home" / "tiny.npz")
    study = project / "configs" / "study.toml"
    study.write_text(STUDY.replace("../data/tiny.npz", str(data)).replace('"ckpt"', '"~/ckpt"'))
    config = load_config(study)
    assert config.dataset.path == str(data)
    assert config.supernet.checkpoint_dir == str(tmp_path / "home" / "ckpt")
    assert config.hardware.profile == str(project / "configs" / "chips" / "chip.toml")


def test_a_shipped_profile_name_is_not_a_path(project):
    study = project / "configs" / "study.toml"
    study.write_text(STUDY.replace("chips/chip.toml", "neurosim-128"))
    assert load_config(study).hardware.profile == "neurosim-128"


def test_configs_built_in_code_keep_the_working_directory(project, monkeypatch):
    monkeypatch.chdir(project / "data")
    raw = {"dataset": {"name": "npz", "path": "tiny.npz"}, "supernet": {"checkpoint_dir": "c"}}
    config = config_from_dict(raw)
    assert (config.dataset.path, config.supernet.checkpoint_dir, config.base_dir) == (
        "tiny.npz",
        "c",
        "",
    )
    based = config_from_dict(raw, base_dir=project)
    assert based.dataset.path == str(project / "tiny.npz")
    assert based.supernet.checkpoint_dir == str(project / "c")


def test_one_config_binds_the_same_settings_from_any_folder(project, tmp_path, monkeypatch):
    study = project / "configs" / "study.toml"
    monkeypatch.chdir(project)
    here = load_config("configs/study.toml")
    monkeypatch.chdir(tmp_path / "elsewhere")
    there = load_config(study)
    assert here.dataset.path == there.dataset.path  # the same file
    assert config_fingerprint(here) == config_fingerprint(there)
    # The study keeps the paths as the file wrote them: a copy of the project elsewhere (another
    # worker's) binds the same settings, and so does a config made in code with those paths
    # (what studies bound before paths were relative to the file hold).
    settings = value_settings(there)
    assert settings["[dataset] path"] == "../data/tiny.npz"
    assert settings["[hardware] profile"] == "chips/chip.toml"
    copy = Path(shutil.copytree(project, tmp_path / "copy"))
    assert config_fingerprint(load_config(copy / "configs" / "study.toml")) == config_fingerprint(
        here
    )
    monkeypatch.chdir(project / "configs")
    in_code = config_from_dict(tomllib.loads(STUDY))
    assert config_fingerprint(in_code) == config_fingerprint(here)
    # another dataset file is another setting
    other = STUDY.replace("../data/tiny.npz", "../data/other.npz")
    (project / "configs" / "other.toml").write_text(other)
    assert config_fingerprint(load_config(project / "configs" / "other.toml")) != (
        config_fingerprint(here)
    )


def test_the_super_network_is_found_from_another_folder(tmp_path, monkeypatch, one_thread):
    """The first run (from the config's folder) trains and saves the super-network; a run from
    another folder finds it instead of training again."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (configs / "autosnn.toml").write_text(
        'seed = 1\n[dataset]\nname = "digits"\n[space]\nmacro = "autosnn-16"\nwidths = [4]\n'
        '[supernet]\nepochs = 1\ntimesteps = 2\nbatch_size = 32\nmax_train_batches = 2\n'
        'eval_images = 32\ncheckpoint_dir = "ckpt"\n'
    )
    from optuna_spikenas.autosnn_objective import AutoSNNObjective

    lines: list[str] = []
    monkeypatch.chdir(configs)
    AutoSNNObjective(load_config("autosnn.toml"), log=lines.append)
    (saved,) = (configs / "ckpt").glob("supernet-*.pt")
    assert lines[-1] == f"saved super-network checkpoint {saved}"
    lines.clear()
    monkeypatch.chdir(tmp_path / "elsewhere")
    AutoSNNObjective(load_config("../configs/autosnn.toml"), log=lines.append)
    assert lines == [f"reusing super-network checkpoint {saved}"]
    assert os.listdir(tmp_path / "elsewhere") == []
