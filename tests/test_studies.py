"""Every shipped study config is valid as written (paths are checked only when loading data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_spikenas.config import load_config, validate_compare

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.toml"))


def test_there_is_a_config_per_method():
    names = {p.stem for p in STUDIES}
    assert {"snasnet_random", "snasnet_cifar10", "spikenas_memory", "neuronas_imc", "autosnn",
            "compare_baselines", "quickstart"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_config_loads(path):
    config = load_config(path)
    text = path.read_text()
    assert text.startswith("#")  # commented: what it is and the command to run it
    assert "optuna-spikenas" in text.split("\n\n")[0]
    if path.stem == "compare_baselines":
        validate_compare(config)
        validate_compare(config, quick=True)


def test_snasnet_study_trains_with_snasnets_weight_decay():
    from optuna_spikenas.architecture_file import SNASNET_CELLS
    from optuna_spikenas.final_training import recipe

    config = load_config(Path(STUDIES[0]).parent / "snasnet_cifar10.toml")
    assert config.train.weight_decay == 5e-4
    settings = recipe(SNASNET_CELLS, config, epochs=1, weight_bits=None, timesteps=5)
    assert (settings.optimizer, settings.momentum, settings.weight_decay) == ("sgd", 0.9, 5e-4)
