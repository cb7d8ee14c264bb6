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
