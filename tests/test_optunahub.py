"""The samplers as OptunaHub packages (optunahub/samplers/NAME): loadable with optunahub's
``load_local_module``, README front matter as the registry checks it, examples that run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import optunahub
import pytest
import yaml
from packaging.version import Version

from optuna_spikenas.samplers.cellbycell import CellByCellSampler
from optuna_spikenas.samplers.evolution import EvolutionarySampler

REGISTRY = Path(__file__).resolve().parents[1] / "optunahub"
PACKAGES = {"spikenas_cell_by_cell": CellByCellSampler, "autosnn_evolution": EvolutionarySampler}
FILES = ("__init__.py", "README.md", "LICENSE", "example.py", "requirements.txt")
# What each example prints last: a real result, not just an exit status.
RESULT = {
    "spikenas_cell_by_cell": r"grown network: (\d{4} ){3}\d{4}( / (\d{4} ){3}\d{4})+ "
    r"\(\d+ parameters, SAHD score -?\d+\.\d+\)",
    "autosnn_evolution": r"best: (\w+,){4}\w+ \(fitness \d\.\d+, accuracy \d\.\d+, "
    r"\d+\.\d spikes/image\)",
}


def load(name: str):
    return optunahub.load_local_module(package=f"samplers/{name}", registry_root=str(REGISTRY))


def front_matter(name: str) -> tuple[dict, str]:
    text = (REGISTRY / "samplers" / name / "README.md").read_text()
    match = re.fullmatch(r"---\n(.*?)\n---\n(.*)", text, re.DOTALL)
    assert match, f"{name}/README.md does not start with a --- front matter block"
    return yaml.safe_load(match.group(1)), match.group(2)


@pytest.mark.parametrize("name", PACKAGES)
def test_the_folder_is_laid_out_as_a_registry_package(name):
    folder = REGISTRY / "samplers" / name
    assert name.isidentifier() and name == name.lower()  # a Python module name, snake_case
    assert sorted(p.name for p in folder.iterdir() if p.name != "__pycache__") == sorted(FILES)
    licence = (folder / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) ")
    assert "<COPYRIGHT HOLDER>" not in licence and "optuna-spikenas developers" in licence
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("optuna-spikenas") for line in requirements)


@pytest.mark.parametrize("name, cls", PACKAGES.items())
def test_load_local_module_gives_the_package_class(name, cls):
    module = load(name)
    assert getattr(module, cls.__name__) is cls  # imported from optuna_spikenas, not a copy
    for exported in module.__all__:
        assert getattr(module, exported) is not None
    sampler = cls()
    assert isinstance(sampler, optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", PACKAGES)
def test_readme_front_matter_passes_the_registry_checks(name):
    # the checks of optunahub-registry's header_confirm.py, and its tutorial's rules
    header, body = front_matter(name)
    for key in ("author", "title", "description", "license"):
        assert isinstance(header[key], str) and header[key].strip(), key
    assert header["license"] == "MIT License"
    assert isinstance(header["tags"], list) and all(isinstance(t, str) for t in header["tags"])
    assert "sampler" in header["tags"]  # packages under package/samplers/
    versions = header["optuna_versions"]
    assert isinstance(versions, list) and versions and all(isinstance(v, str) for v in versions)
    assert all(Version("5.0") <= Version(v) < Version("6") for v in versions)  # pyproject's range
    assert not re.search(r"<[A-Za-z/!][^>]*>", body)  # the registry strips HTML tags
    for section in ("## Abstract", "## APIs", "## Installation", "## Example"):
        assert section in body
    assert "load_local_module" not in body  # README examples load from the registry


def python_blocks(name: str) -> list[str]:
    _, body = front_matter(name)
    return re.findall(r"```python\n(.*?)```", body, re.DOTALL)


@pytest.mark.parametrize("name", PACKAGES)
def test_readme_example_with_your_own_objective_runs(name, monkeypatch, capsys):
    # load_module would fetch the registry from GitHub: serve this folder instead
    monkeypatch.setattr(
        optunahub, "load_module", lambda package, **kw: load(package.removeprefix("samplers/"))
    )
    blocks = python_blocks(name)
    assert blocks
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for code in blocks:
        scope: dict = {}
        exec(compile(code, f"{name}/README.md", "exec"), scope)
        study, sampler = scope["study"], scope["sampler"]
        assert sampler.is_complete(study)
        assert study.trials and all(t.state.is_finished() for t in study.trials)
    assert "{" in capsys.readouterr().out  # the params it printed


@pytest.mark.parametrize("name", PACKAGES)
def test_example_runs_a_real_search(name, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny networks: one thread is fastest
    done = subprocess.run(
        [sys.executable, str(REGISTRY / "samplers" / name / "example.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "complete: True" in done.stdout, done.stdout
    assert re.search(RESULT[name], done.stdout), done.stdout
